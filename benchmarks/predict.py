r"""Score a large dataset with a saved guard through Lightning ``Trainer.predict`` (DDP-ready).

Lightning owns batching, devices and the distributed sampler; each rank writes its verdict
records with a ``BasePredictionWriter`` and rank 0 merges them (duplicates that the distributed
sampler pads in are dropped by global index).

CLI::

    python -m benchmarks.predict /path/to/scans --guard guards/mni152 --out preds \\
        [--devices 2 --strategy ddp] [--batch-size 64] [--split all|train|val|test]

Writes ``DIR/verdicts.jsonl`` (one ``Verdict.to_records()`` row per slice plus its ``index``)
and ``DIR/summary.json`` (count, share flagged, reasons).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from safegen_guard.console import plain_help, run_main
from safegen_guard.io import atomic_write_json, atomic_write_text
from safegen_guard.summary import summarize

__all__ = ["GuardPredictor", "VerdictWriter", "IndexedImages", "predict", "main"]


class IndexedImages(Dataset):
    """``[N,1,H,W]`` images served as ``{"index": i, "image": x_i}``."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "image": self.images[i]}


class GuardPredictor(L.LightningModule):
    """Wraps a fitted :class:`~safegen_guard.Guard`; ``predict_step`` returns verdict records.

    Args:
        guard: A fitted guard (every rank loads the same weights).
    """

    def __init__(self, guard: torch.nn.Module) -> None:
        super().__init__()
        self.guard = guard

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[dict]:
        """Verdicts of ``batch["image"]`` ``[B,1,H,W]`` as records tagged with their index."""
        verdict = self.guard.evaluate(batch["image"])
        records = verdict.to_records()
        for rec, idx in zip(records, batch["index"].tolist()):
            rec["index"] = int(idx)
        return records


class VerdictWriter(BasePredictionWriter):
    """Writes each rank's records to ``out/verdicts.rank{r}.jsonl`` at the end of predict."""

    def __init__(self, out: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.out = Path(out)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:  # noqa: ANN001
        """Write this rank's records, then wait for every rank."""
        rows = [r for batch in predictions for r in batch]
        self.out.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_text(self.out / f"verdicts.rank{trainer.global_rank}.jsonl", text)
        trainer.strategy.barrier("verdict_writer")


def _merge(out: Path) -> list[dict]:
    rows: dict[int, dict] = {}
    for part in sorted(out.glob("verdicts.rank*.jsonl")):
        for line in part.read_text().splitlines():
            rec = json.loads(line)
            rows.setdefault(rec["index"], rec)
        part.unlink()
    return [rows[i] for i in sorted(rows)]


def predict(
    guard: torch.nn.Module,
    images: torch.Tensor,
    out: str | Path,
    *,
    batch_size: int = 64,
    devices: int | str = 1,
    strategy: str = "auto",
    accelerator: str = "auto",
) -> dict | None:
    """Score ``images`` ``[N,1,H,W]`` with ``Trainer.predict``; write records and a summary.

    Returns:
        The summary on global rank 0 (``None`` on other ranks).
    """
    out = Path(out)
    loader = DataLoader(IndexedImages(images), batch_size=batch_size, shuffle=False)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        logger=False,
        callbacks=[VerdictWriter(out)],
        enable_progress_bar=True,
        enable_model_summary=False,
    )
    trainer.predict(GuardPredictor(guard), loader, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    rows = _merge(out)
    atomic_write_text(out / "verdicts.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    stats = summarize(rows)
    summary = {
        "n": len(rows),
        "n_unsafe": int(stats["num_unsafe"]),
        "unsafe_rate": stats["unsafe_rate"],
        "reasons": {k[7:]: int(v) for k, v in stats.items() if k.startswith("reason/")},
        "world_size": trainer.world_size,
        "guard_fingerprint": getattr(guard, "fingerprint", ""),
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _load_images(path: str, split: str, size: int) -> torch.Tensor:
    from safegen_guard.data import load_dataset
    from safegen_guard.errors import DataLoadError

    splits = ("train", "val", "test") if split == "all" else (split,)
    parts = []
    for s in splits:
        try:
            parts.append(load_dataset(path, s, size).images)
        except DataLoadError:
            if split != "all":
                raise
    if not parts:
        raise DataLoadError(f"no readable slices under {path}")
    return torch.cat(parts)


def main(argv: Sequence[str] | None = None) -> dict | None:
    """CLI entry point (see the module docstring)."""
    from safegen_guard import Guard

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.predict",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", help="folder/file of NIfTI, DICOM or PNG scans, or a dataset name")
    p.add_argument("--guard", required=True, help="directory written by Guard.save")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "val", "test"],
        help="split of a named data set (default all)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--devices", default="1", help="Lightning devices (default 1)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy (default auto)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator (default auto)")
    args = p.parse_args(argv)
    guard = Guard.load(args.guard)
    images = _load_images(args.path, args.split, guard.config.image_size)
    devices: int | str = int(args.devices) if args.devices.isdigit() else args.devices
    summary = predict(
        guard,
        images,
        args.out,
        batch_size=args.batch_size,
        devices=devices,
        strategy=args.strategy,
        accelerator=args.accelerator,
    )
    if summary is not None:
        print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.predict"))

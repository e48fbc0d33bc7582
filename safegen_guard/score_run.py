"""`safegen score` at scale: Lightning ``Trainer.predict`` over a streaming file dataset.

The data path of one run:

1. rank zero merges shards left by an earlier, killed run into ``verdicts.jsonl`` (nothing
   scored is lost), then every rank reads the keys already scored (``path`` + SHA-256 of the
   file's bytes) when resuming;
2. :class:`InputFiles` reads one file per item, in the data-loader (never all images in
   memory), hashes it and skips it when its key is already scored;
3. :class:`GuardScorer` (a ``LightningModule``) judges each file of a batch with the guard,
   each process on the CPU (per file, so verdicts do not depend on the sharding);
4. :class:`ShardWriter` appends each batch's records to the rank's shard
   (``shards/<run_id>.rank<r>.jsonl``) with a ``done`` line per file, in one durable append,
   and writes the evidence panels;
5. rank zero merges the shards into ``verdicts.jsonl`` atomically (temp file + rename; see
   :mod:`safegen_guard.score_shards`): a file counts only with its ``done`` line and is never
   added twice for one run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from safegen_guard.image_files import read_images
from safegen_guard.io import append_jsonl
from safegen_guard.score_shards import MergeResult, merge_shards, scored_keys, shard_path
from safegen_guard.validation import check_images
from safegen_guard.verdict import Verdict

__all__ = [
    "GuardScorer",
    "InputFiles",
    "ShardWriter",
    "evaluate_files",
    "file_sha256",
    "predict_files",
]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InputFiles(Dataset):
    """One item per input file, read when asked for (streaming).

    Items are dicts: ``position`` (index in ``paths``), ``path``, and either ``images``
    ``[N, C, S, S]`` with ``sha256``, or ``error`` (unreadable, wrong size), or ``done``
    (already scored, not decoded).

    Args:
        paths: the files, in the order of the run.
        channels: channels the guard scores.
        size: image size the guard scores.
        resize: resize other sizes to ``size`` (else they are an ``error``).
        done: keys ``(path, sha256)`` already scored (resume).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        channels: int,
        size: int,
        resize: bool = False,
        done: set[tuple[str, str]] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.channels, self.size, self.resize = channels, size, resize
        self.done = done or set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from safegen_guard.review.outputs import resize_to

        path = self.paths[i]
        item: dict[str, Any] = {"position": i, "path": str(path)}
        try:
            item["sha256"] = file_sha256(path)
            if (str(path), item["sha256"]) in self.done:
                return dict(item, done=True)
            x = read_images(path)
            x = resize_to(x, self.size) if self.resize else x
            check_images(x, channels=self.channels, size=self.size, allow_non_finite=True)
        except (ValueError, TypeError, OSError) as err:
            return dict(item, error=str(err))
        return dict(item, images=x)


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


class GuardScorer(pl.LightningModule):
    """Judges each batch of files with a guard (``predict_step``); the guard stays on the CPU.

    Args:
        guard: a fitted guard, identical on every rank.
        batch_size: images per ``guard.evaluate`` chunk.
        explain: add explanations to the unsafe images.
    """

    def __init__(self, guard: Any, batch_size: int, explain: bool = False) -> None:
        super().__init__()
        self._guard = (guard,)  # kept out of the module tree: Lightning must not move it
        self.batch_size, self.explain = batch_size, explain
        self.verdict_cls: type[Verdict] = Verdict

    @property
    def guard(self) -> Any:
        """The guard that judges the images."""
        return self._guard[0]

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> list[dict[str, Any]]:
        """Add ``verdicts`` (one-image verdicts) to every item that has ``images``.

        Each file is judged on its own (chunks of ``batch_size`` images), as a one-process run
        does: scores do not depend on which files share a batch or a rank, so any number of
        processes gives bit-identical verdicts.
        """
        for item in batch:
            if "images" in item:
                x = item["images"].cpu()
                item["verdicts"] = evaluate_files(self.guard, x, self.batch_size, self.explain)
                self.verdict_cls = type(item["verdicts"][0])
        return batch


def evaluate_files(guard: Any, x: torch.Tensor, batch_size: int, explain: bool) -> list:
    """One-image verdicts of ``x``; unsafe ones carry heatmap, Grad-CAM and SHAP if asked."""
    verdict = guard.evaluate(x, batch_size=batch_size)
    singles = [verdict.select([i]) for i in range(len(verdict))]
    unsafe = verdict.unsafe.nonzero().flatten().tolist()
    if explain and unsafe:
        explained = guard.evaluate(x[unsafe], batch_size=batch_size, explain=True)
        for j, i in enumerate(unsafe):
            singles[i] = explained.select([j])
    return singles


class ShardWriter(BasePredictionWriter):
    """Appends each batch's records to this rank's shard and writes the evidence panels.

    Args:
        out: the ``--out`` folder.
        run_id: this run's id (in every record, names the shard and the panel folder).
        overlays: ``"none"``, ``"unsafe"`` or ``"all"``: which images get a panel.
        labels: names of the memorization index's training images (or ``None``).
        progress: show a progress bar on global rank zero (stderr).
    """

    def __init__(
        self,
        out: Path,
        run_id: str,
        overlays: str,
        labels: Sequence[str] | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.out, self.run_id, self.overlays = Path(out), run_id, overlays
        self.labels, self.progress = labels, progress
        self._panels: Any = None
        self._bar: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Name this rank's panel folder (a sub-folder per rank when there are several)."""
        from safegen_guard.review.outputs import PanelWriter

        folder = Path("overlays") / self.run_id
        if trainer.world_size > 1:
            folder = folder / f"rank{trainer.global_rank}"
        self._folder = folder
        self._panels = PanelWriter(self.out / folder)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open the progress bar on global rank zero."""
        if self.progress and trainer.is_global_zero:
            from tqdm.auto import tqdm

            total = sum(trainer.num_predict_batches)
            self._bar = tqdm(total=total, desc="scoring", unit="batch")

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: list[dict[str, Any]],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append the batch's lines (records, skips, ``done`` markers) in one durable write."""
        lines: list[dict[str, Any]] = []
        for item in prediction:
            if "error" in item:
                lines.append({"skipped": {"path": item["path"], "error": item["error"]}})
            elif item.get("done"):
                lines.append({"already_scored": item["path"], "position": item["position"]})
            elif "verdicts" in item:
                lines += [{"record": r} for r in self._records(item)]
                key = [item["path"], item["sha256"]]
                lines.append({"done": key, "run_id": self.run_id, "position": item["position"]})
        append_jsonl(shard_path(self.out, self.run_id, trainer.global_rank), lines)
        if self._bar is not None:
            self._bar.update(1)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the bar and wait for every rank's last append."""
        if self._bar is not None:
            self._bar.close()
        trainer.strategy.barrier("safegen_score_shards")

    def _records(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        path, verdicts, images = Path(item["path"]), item["verdicts"], item["images"]
        records = []
        for i, v in enumerate(verdicts):
            r = {**v.to_records()[0], "index": i, "path": str(path), "run_id": self.run_id}
            r.update(input_sha256=item["sha256"], position=item["position"])
            if r.get("nearest_index") is not None and self.labels is not None:
                r["nearest_training_file"] = self.labels[r["nearest_index"]]
            if self.overlays == "all" or (self.overlays == "unsafe" and r["unsafe"]):
                name = self._panels.name_for(path, i, len(verdicts))
                self._panels.write(images[i].cpu(), v, name)
                r["overlay"] = str(self._folder / name)
            records.append(r)
        return records


def predict_files(
    guard: Any,
    paths: Sequence[Path],
    out: Path,
    run_id: str,
    *,
    overlays: str = "unsafe",
    explain: bool = False,
    resize: bool = False,
    resume: bool = False,
    batch_size: int = 64,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    num_workers: int = 0,
) -> tuple[pl.Trainer, GuardScorer, MergeResult]:
    """Score ``paths`` with ``Trainer.predict``; every rank appends to its shard.

    Call :func:`merge_shards` on global rank zero afterwards (the trainer says which rank
    this process is). Before scoring, rank zero merges the shards of an earlier killed run.
    Each process scores on the CPU (``devices`` processes per node).

    Returns:
        ``(trainer, scorer, recovered)``: the trainer (``is_global_zero``, ``world_size``),
        the module (``verdict_cls``) and what was recovered from a killed run's shards.
    """
    labels = guard.memorization.labels if guard.memorization is not None else None
    writer = ShardWriter(out, run_id, overlays, labels)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        inference_mode=False,  # Grad-CAM and SHAP need autograd
    )
    data = _ResumableFiles(paths, guard, out, resize, resume, batch_size, num_workers)
    scorer = GuardScorer(guard, batch_size, explain)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.predict(scorer, datamodule=data, return_predictions=False)
    return trainer, scorer, data.recovered


class _ResumableFiles(pl.LightningDataModule):
    """Recovers earlier shards (rank zero), then builds the dataset of this run on each rank."""

    def __init__(
        self,
        paths: Sequence[Path],
        guard: Any,
        out: Path,
        resize: bool,
        resume: bool,
        batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.paths, self.out, self.resize, self.resume = paths, Path(out), resize, resume
        self.channels, self.size = guard.config.channels, guard.config.image_size
        self.batch_size, self.num_workers = batch_size, num_workers
        self.recovered = MergeResult({}, [], 0)

    def setup(self, stage: str) -> None:
        """Merge a killed run's shards (rank zero), wait, read the scored keys if resuming."""
        if self.trainer.is_global_zero:
            self.recovered = merge_shards(self.out)
        self.trainer.strategy.barrier("safegen_score_recover")
        done = scored_keys(self.out) if self.resume else set()  # type: ignore[assignment]
        self.files = InputFiles(self.paths, self.channels, self.size, self.resize, done)

    def predict_dataloader(self) -> DataLoader:
        """Batches of files (lists of items), in input order."""
        return DataLoader(
            self.files,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=_as_list,
            num_workers=self.num_workers,
        )

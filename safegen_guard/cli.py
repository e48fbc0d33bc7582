"""`safegen` command line: fit a guard on real scans, score generated images.

Examples::

    safegen fit --data mni152 --out guard/                 # quick profile, ~minutes on CPU
    safegen score "samples/*.png" --guard guard/ --out results/
    safegen info guard/
    safegen datasets
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "build_parser", "read_images"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_ARRAY_SUFFIXES = (".npy", ".pt")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``safegen`` (sub-commands fit, score, info, datasets)."""
    p = argparse.ArgumentParser(
        prog="safegen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command")
    f = sub.add_parser("fit", help="train and calibrate a guard on real images")
    f.add_argument("--data", required=True, help="dataset name (mni152, ct_phantom) or path")
    f.add_argument("--out", required=True, help="folder to save the guard in")
    f.add_argument("--profile", default="quick", choices=["tiny", "quick", "full"])
    f.add_argument("--size", type=int, default=None, help="image size (default: profile's)")
    f.add_argument("--steps", type=int, default=None, help="training steps (default: profile's)")
    f.add_argument("--false-reject-rate", type=float, default=0.05)
    f.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="score images (PNG/JPG, .npy, .pt) with a fitted guard")
    s.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    s.add_argument("--guard", required=True, help="folder written by `safegen fit`")
    s.add_argument("--out", required=True, help="folder for verdicts.jsonl and overlays")
    s.add_argument("--overlays", default="unsafe", choices=["none", "unsafe", "all"])
    s.add_argument("--batch-size", type=int, default=64)
    i = sub.add_parser("info", help="describe a saved guard")
    i.add_argument("guard")
    sub.add_parser("datasets", help="list the embedded dataset names")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``safegen`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"fit": _fit, "score": _score, "info": _info, "datasets": _datasets}
    return handlers[args.command](args)


def _fit(args: argparse.Namespace) -> int:
    from safegen_guard import Guard, GuardConfig

    overrides = {"seed": args.seed, "false_reject_rate": args.false_reject_rate}
    if args.size:
        overrides["image_size"] = args.size
    if args.steps:
        overrides["max_steps"] = args.steps
    guard = Guard.fit(args.data, GuardConfig.profile(args.profile, **overrides))
    guard.save(args.out)
    print(f"saved guard {guard.fingerprint} to {args.out}")
    return 0


def _expand(inputs: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        matches = sorted(glob.glob(item)) or [item]
        for m in map(Path, matches):
            if m.is_dir():
                paths += sorted(
                    q for q in m.rglob("*") if q.suffix.lower() in _IMAGE_SUFFIXES + _ARRAY_SUFFIXES
                )
            else:
                paths.append(m)
    return paths


def read_images(path: Path) -> torch.Tensor:
    """Read one file as ``[N, 1, H, W]`` float32 in ``[0, 1]``.

    PNG/JPG (8- or 16-bit grey or colour, converted to grey), ``.npy`` arrays and ``.pt``
    tensors (loaded with ``weights_only=True``) of shape ``[H,W]``, ``[1,H,W]`` or
    ``[N,1,H,W]`` already in ``[0, 1]``.

    Raises:
        ValueError: unreadable file or unsupported shape/suffix.
    """
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("I;16") if im.mode.startswith("I;16") else im.convert("L"))
        scale = 65535.0 if arr.dtype == np.uint16 else 255.0
        t = torch.from_numpy(arr.astype(np.float32) / scale)
    elif suffix == ".npy":
        t = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    elif suffix == ".pt":
        t = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"expected a tensor in {path}, got {type(t).__name__}")
        t = t.float()
    else:
        raise ValueError(
            f"unsupported file type {suffix!r} ({path}); expected "
            f"{', '.join(_IMAGE_SUFFIXES + _ARRAY_SUFFIXES)}"
        )
    while t.ndim < 4:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"expected [H,W], [1,H,W] or [N,1,H,W] in {path}, got {tuple(t.shape)}")
    return t


def _score(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from safegen_guard import Guard
    from safegen_guard.io import append_jsonl, atomic_write_json

    guard = Guard.load(args.guard)
    out = Path(args.out)
    paths = _expand(args.inputs)
    if not paths:
        print(f"no input files matched {list(args.inputs)}", file=sys.stderr)
        return 2
    log_path = out / "verdicts.jsonl"
    n_images = n_unsafe = n_skipped = 0
    for path in tqdm(paths, desc="scoring", unit="file"):
        try:
            x = read_images(path)
            verdict = guard.evaluate(x, batch_size=args.batch_size)
        except (ValueError, TypeError, OSError) as err:
            warnings.warn(f"skipped {path}: {err}", stacklevel=1)
            n_skipped += 1
            continue
        records = verdict.to_records()
        for r in records:
            r["path"] = str(path)
        append_jsonl(log_path, records)
        _write_overlays(x, verdict, path, out / "overlays", args.overlays)
        n_images += len(verdict)
        n_unsafe += int(verdict.unsafe.sum())
    summary = {
        "images": n_images,
        "unsafe": n_unsafe,
        "skipped_files": n_skipped,
        "unsafe_rate": n_unsafe / max(n_images, 1),
        "guard": guard.fingerprint,
    }
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps(summary))
    return 0 if n_images else 2


def _write_overlays(x: torch.Tensor, verdict, path: Path, folder: Path, which: str) -> None:
    if which == "none":
        return
    from safegen_guard.viz import overlay, save_png

    for i in range(len(verdict)):
        if which == "unsafe" and not bool(verdict.unsafe[i]):
            continue
        img = torch.nan_to_num(x[i], nan=0.0).clamp(0, 1)
        heat = verdict.heatmap[i] if verdict.heatmap is not None else verdict.anomaly_map[i]
        name = f"{path.stem}_{i}.png" if len(verdict) > 1 else f"{path.stem}.png"
        save_png(overlay(img, heat, verdict.mask[i]), folder / name)


def _info(args: argparse.Namespace) -> int:
    from safegen_guard.checkpoint import read_checkpoint

    _, meta = read_checkpoint(args.guard)
    print(json.dumps({k: meta[k] for k in sorted(meta) if k != "weights_sha256"}, indent=2))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from safegen_guard.data import DATASETS

    for name in DATASETS:
        print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

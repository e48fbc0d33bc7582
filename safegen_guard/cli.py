"""`safegen` command line: fit a guard on real scans, score generated images, review them.

Examples:
  safegen fit --data mni152 --out guard/          fit a guard (quick profile, minutes on CPU)
  safegen score "samples/*.png" --guard guard/ --out results/ --explain --report
  safegen review results/                         accept/reject flagged images in the browser
  safegen info guard/                             what a saved guard is
  safegen datasets                                the embedded data sets
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "build_parser", "read_images"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_ARRAY_SUFFIXES = (".npy", ".pt")
_SUFFIXES = _IMAGE_SUFFIXES + _ARRAY_SUFFIXES
_EXPLAINER_STEPS = {"tiny": 100, "quick": 1500, "full": 3000}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``safegen`` (sub-commands fit, score, info, datasets, ...)."""
    from safegen_guard import __version__

    p = argparse.ArgumentParser(
        prog="safegen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"safegen {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_fit(sub)
    _add_score(sub)
    i = sub.add_parser("info", help="describe a saved guard", description="Describe a saved guard.")
    i.add_argument("guard", help="folder written by `safegen fit`")
    i.add_argument("--json", action="store_true", help="print the raw metadata as JSON")
    sub.add_parser("datasets", help="list the embedded data set names")
    from safegen_guard.review.commands import add_review_commands

    add_review_commands(sub)
    return p


def _add_fit(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fit",
        help="train and calibrate a guard on real images",
        description="Train a guard on real images, calibrate it, fit its explainer, save it.",
    )
    f.add_argument("--data", required=True, help="data set name (see `safegen datasets`) or path")
    f.add_argument("--out", required=True, help="folder to save the guard in")
    f.add_argument(
        "--profile",
        default="quick",
        choices=["tiny", "quick", "full"],
        help="size preset: tiny is for tests only, quick (default) for CPU, full for a GPU",
    )
    f.add_argument("--size", type=int, default=None, help="image size (default: the profile's)")
    f.add_argument("--steps", type=int, default=None, help="training steps (default: profile's)")
    f.add_argument(
        "--false-reject-rate",
        type=float,
        default=0.05,
        help="share of real images the guard may reject (default 0.05)",
    )
    f.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    f.add_argument(
        "--no-explainer",
        action="store_true",
        help="skip fitting the explainer (faster; the guard then cannot --explain)",
    )
    f.add_argument(
        "--training-set",
        default=None,
        help="the generator's training images, indexed for the memorization check (name or "
        "path; default: the train split of --data); its val split is the held-out null",
    )
    f.add_argument("--no-memorization", action="store_true", help="skip the memorization index")
    f.add_argument(
        "--explainer-steps",
        type=int,
        default=None,
        help="distillation steps of the explainer (default: tiny 100, quick 1500, full 3000)",
    )


def _add_score(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "score",
        help="score images (PNG/JPG, .npy, .pt) with a fitted guard",
        description="Score images with a fitted guard; write verdicts.jsonl, panels, a report.",
    )
    s.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    s.add_argument("--guard", required=True, help="folder written by `safegen fit`")
    s.add_argument("--out", required=True, help="folder for verdicts.jsonl and overlays")
    s.add_argument(
        "--overlays",
        default="unsafe",
        choices=["none", "unsafe", "all"],
        help="which images get an evidence panel in OUT/overlays (default: unsafe)",
    )
    s.add_argument(
        "--explain",
        action="store_true",
        help="add the combined heatmap, Grad-CAM and SHAP of every unsafe image",
    )
    s.add_argument(
        "--report",
        action="store_true",
        help="write OUT/report/index.html (self-contained; implies panels for every image)",
    )
    s.add_argument(
        "--resize",
        action="store_true",
        help="resize images whose size differs from the guard's (default: skip them)",
    )
    s.add_argument(
        "--batch-size", type=_positive_int, default=64, help="images per scoring chunk (>= 1)"
    )


def _positive_int(text: str) -> int:
    """Parse an int >= 1 for argparse (``0`` and negatives are usage errors, not defaults)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``safegen`` console script; returns the exit code.

    Errors SAFEGEN raises on purpose (missing guard folder, unknown data set, bad input) are
    printed as one line, ``safegen: error: ...``, with exit code 2; no traceback.
    """
    from safegen_guard.errors import SafeGenError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args) if hasattr(args, "handler") else _HANDLERS[args.command](args)
    except (SafeGenError, FileNotFoundError) as err:
        print(f"safegen: error: {err}", file=sys.stderr)
        return 2


def _fit(args: argparse.Namespace) -> int:
    from safegen_guard import Guard, GuardConfig
    from safegen_guard.guard_fit import load_fit_data
    from safegen_guard.io import atomic_write_json

    # progress bars on the command line whatever the profile (tiny turns them off for tests)
    overrides = {"seed": args.seed, "false_reject_rate": args.false_reject_rate, "progress": True}
    if args.size:
        overrides["image_size"] = args.size
    if args.steps:
        overrides["max_steps"] = args.steps
    config = GuardConfig.profile(args.profile, **overrides)
    train, cal, _ = load_fit_data(args.data, None, config)
    print(f"training on {len(train)} real images, calibrating on {len(cal)}", flush=True)
    guard = Guard.fit(train, config, calibration_data=cal)
    explainer = "none (--no-explainer)"
    if not args.no_explainer:
        from safegen_guard.explain import fit_explainer

        steps = args.explainer_steps or _EXPLAINER_STEPS[args.profile]
        print(f"fitting the explainer ({steps} steps)", flush=True)
        guard.attach_explainer(
            fit_explainer(guard, train, cal, seed=args.seed, steps=steps, progress=True)
        )
        explainer = f"fitted ({steps} steps)"
    memorization = "none (--no-memorization)"
    if not args.no_memorization:
        from safegen_guard.memorization import MemorizationConfig

        training_set = args.training_set or args.data
        print(f"indexing the training set {training_set} (memorization check)", flush=True)
        mcfg = MemorizationConfig.profile(args.profile, seed=args.seed)
        guard.fit_memorization(training_set, config=mcfg)
        memorization = f"{len(guard.memorization)} images of {training_set}"
    guard.save(args.out)
    provenance = {"data": str(args.data), "profile": args.profile, "explainer": explainer}
    provenance["memorization_index"] = memorization
    atomic_write_json(Path(args.out) / "provenance.json", provenance)
    print(f"saved guard {guard.fingerprint} to {args.out} (explainer: {explainer})")
    return 0


def _expand(inputs: Sequence[str]) -> tuple[list[Path], list[dict]]:
    """Files to score, and the inputs that gave none (``{"path", "error"}`` each).

    A glob pattern that matches nothing, a path that does not exist and a dangling symbolic
    link (given, or found in a folder) are reported, never read as a literal file name.
    """
    paths: list[Path] = []
    skipped: list[dict] = []
    for item in inputs:
        matches = sorted(glob.glob(item))
        if not matches:
            if glob.has_magic(item):
                reason = "the glob pattern matched no files"
            elif os.path.islink(item):
                reason = f"dangling symbolic link (to {os.readlink(item)!r})"
            else:
                reason = "no such file or folder"
            skipped.append({"path": item, "error": reason})
        for m in map(Path, matches):
            found = (
                sorted(q for q in m.rglob("*") if q.suffix.lower() in _SUFFIXES)
                if m.is_dir()
                else [m]
            )
            for q in found:
                if q.is_symlink() and not q.exists():
                    skipped.append(
                        {"path": str(q), "error": f"dangling symbolic link (to {os.readlink(q)!r})"}
                    )
                elif q.is_dir():
                    continue
                else:
                    paths.append(q)
    return paths, skipped


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
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise ValueError(
                f"{path} is not a plain tensor file: torch refused it with weights_only=True "
                f"({type(err).__name__}; it holds pickled Python objects or is damaged); not "
                "loaded, since loading it otherwise could run code"
            ) from err
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
    from safegen_guard.errors import NotFittedError
    from safegen_guard.integrations.audit import new_run_id
    from safegen_guard.io import append_jsonl, atomic_write_json
    from safegen_guard.review.outputs import PanelWriter, calibration_scores, resize_to
    from safegen_guard.summary import summarize
    from safegen_guard.verdict import Verdict

    out = _output_folder(args.out)  # before any work
    guard = Guard.load(args.guard)
    if args.explain and guard.explainer is None:
        raise NotFittedError(
            f"{args.guard} has no explainer; refit it with `safegen fit` (without --no-explainer)"
        )
    paths, skipped = _expand(args.inputs)
    run_id = new_run_id()  # tags this run's lines in verdicts.jsonl and names its panels
    which = "all" if args.report else args.overlays
    panels = PanelWriter(out / "overlays" / run_id)
    size, run_records, n_inputs = guard.config.image_size, [], len(paths) + len(skipped)
    schema = Verdict  # the class of the verdicts scored (its fields decide the summary)
    for path in tqdm(paths, desc="scoring", unit="file"):
        try:
            x = read_images(path)
            x = resize_to(x, size) if args.resize else x
            verdicts = _evaluate(guard, x, args.batch_size, args.explain)
        except (ValueError, TypeError, OSError) as err:
            skipped.append({"path": str(path), "error": str(err)})
            continue
        records = []
        for i, v in enumerate(verdicts):
            schema = type(v)
            r = {**v.to_records()[0], "index": i, "path": str(path), "run_id": run_id}
            if r.get("nearest_index") is not None and guard.memorization is not None:
                r["nearest_training_file"] = guard.memorization.labels[r["nearest_index"]]
            if which == "all" or (which == "unsafe" and r["unsafe"]):
                name = panels.name_for(path, i, len(verdicts))
                panels.write(x[i], v, name)
                r["overlay"] = f"overlays/{run_id}/{name}"
            records.append(r)
        append_jsonl(out / "verdicts.jsonl", records)
        run_records += records
    _report_skipped(skipped, n_inputs, size)
    stats = summarize(run_records, schema=schema)
    summary = {
        "run_id": run_id,
        "images": len(run_records),
        "unsafe": int(stats["num_unsafe"]),
        "skipped_files": len(skipped),
        "unsafe_rate": stats["unsafe_rate"],
        "memorized": [_copy_entry(r) for r in run_records if r.get("memorized")],
        "guard": guard.fingerprint,
        "skipped": skipped,
        "statistics": {k: None if math.isnan(v) else v for k, v in stats.items()},
    }
    atomic_write_json(out / "summary.json", summary)
    if args.report:
        from safegen_guard.review.report import write_report

        cal = calibration_scores(guard)
        index = write_report(out, run_records, summary, cal, threshold=guard.calibrator.alpha)
        print(f"report: {index}", file=sys.stderr)
    hidden = ("skipped", "memorized", "statistics")
    print(json.dumps({k: v for k, v in summary.items() if k not in hidden}))
    for c in summary["memorized"]:
        print(f"copy: {c['path']}[{c['index']}] ~ {c['nearest_training_file']}", file=sys.stderr)
    if not paths:
        print(f"safegen: error: no input files matched {list(args.inputs)}", file=sys.stderr)
    return 0 if run_records else 2


def _copy_entry(record: dict) -> dict:
    keys = ("path", "index", "nearest_training_file", "copy_p_value")
    return {k: record.get(k) for k in keys}


def _output_folder(out: str) -> Path:
    """The ``--out`` folder, created; an error before any work if it cannot be one."""
    from safegen_guard.errors import InputValidationError

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputValidationError(f"--out must be a folder, got the existing file {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputValidationError(f"--out {path} cannot be created: {err}") from err
    return path


def _evaluate(guard, x: torch.Tensor, batch_size: int, explain: bool) -> list:  # noqa: ANN001
    """One-image verdicts of ``x``; unsafe ones carry heatmap, Grad-CAM and SHAP if asked."""
    verdict = guard.evaluate(x, batch_size=batch_size)
    singles = [verdict.select([i]) for i in range(len(verdict))]
    unsafe = verdict.unsafe.nonzero().flatten().tolist()
    if explain and unsafe:
        explained = guard.evaluate(x[unsafe], batch_size=batch_size, explain=True)
        for j, i in enumerate(unsafe):
            singles[i] = explained.select([j])
    return singles


def _report_skipped(skipped: list[dict], n_files: int, size: int) -> None:
    """One line for the skipped files (all of them are listed in summary.json)."""
    if not skipped:
        return
    first = skipped[0]
    hint = ""
    if any("pixels, got" in s["error"] for s in skipped):
        hint = f"; pass --resize to resize them to {size}x{size}"
    print(
        f"safegen: skipped {len(skipped)} of {n_files} files (first: {first['path']}: "
        f"{first['error']}){hint}; all are listed in summary.json",
        file=sys.stderr,
    )


def _info(args: argparse.Namespace) -> int:
    from safegen_guard import Guard, __version__
    from safegen_guard.checkpoint import read_checkpoint

    _, meta = read_checkpoint(args.guard)
    if args.json:
        print(json.dumps({k: meta[k] for k in sorted(meta) if k != "weights_sha256"}, indent=2))
        return 0
    guard = Guard.load(args.guard)
    prov_path = Path(args.guard) / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    cal, cfg = guard.calibrator, guard.config
    thresholds = ", ".join(f"{t:.3g}" for t in cal.thresholds().tolist())
    expl = guard.explainer
    lines = [
        f"guard        {args.guard} (fingerprint {guard.fingerprint})",
        f"data set     {prov.get('data', 'not recorded')} (data fingerprint "
        f"{guard.data_fingerprint or 'none'})",
        f"images       {cfg.image_size}x{cfg.image_size}, {cfg.channels} channel(s)",
        f"calibration  {len(cal.cal_fused)} real reference images in {cal.n_bins} bin(s) "
        "by foreground fraction",
        f"thresholds   unsafe if p <= {cal.alpha:g} (false-reject rate); fused statistic "
        f"> [{thresholds}] per bin; pixel tau {float(cal.tau):.3g}",
        f"views        {', '.join(guard.detector.view_names)}",
        f"explainer    {'fitted' if expl is not None else 'none: --explain is unavailable'}"
        + (f", tau {float(expl.tau):.3g}" if expl is not None else ""),
        f"saved with   format {meta.get('format_version', '?')}; this is safegen {__version__}",
    ]
    print("\n".join(lines))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from safegen_guard.data import DATASETS

    for name in DATASETS:
        print(name)
    return 0


_HANDLERS = {"fit": _fit, "score": _score, "info": _info, "datasets": _datasets}

if __name__ == "__main__":
    raise SystemExit(main())

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
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from safegen_guard.image_files import expand_inputs, read_images

__all__ = ["main", "build_parser", "read_images"]

_RUN_ID_ENV = "SAFEGEN_SCORE_RUN_ID"
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
    sub.add_parser(
        "datasets",
        help="list the embedded data set names",
        description="List the embedded data set names (usable as --data NAME).",
    )
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
        "--modality",
        choices=("mri", "ct"),
        default=None,
        help="chooses the default detector views (default: the named data set's modality; "
        "for a folder of scans, the union of both modalities' views)",
    )
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


def _preparation(text: str) -> int:
    """``plain``/``augmented``/an integer -> a preparation-group label (argparse type)."""
    from safegen_guard.guard_fit import PREPARATION_GROUPS

    if text in PREPARATION_GROUPS:
        return PREPARATION_GROUPS[text]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected `plain`, `augmented` or an integer group label, got {text!r}"
        ) from None


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
        "--preparation",
        type=_preparation,
        default=None,
        help="decide with the calibration of one preparation group only: `plain` or "
        "`augmented` (a named data set's draws) or an integer label given to `Guard.fit`; "
        "use it when the images follow that preparation (default: every group)",
    )
    s.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="images per scoring chunk and files per data-loader batch (>= 1)",
    )
    s.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs already in OUT/verdicts.jsonl (same path and content hash)",
    )
    s.add_argument(
        "--devices", type=_positive_int, default=1, help="scoring processes per node (CPU)"
    )
    s.add_argument("--num-nodes", type=_positive_int, default=1, help="nodes (default 1)")
    s.add_argument(
        "--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: auto)"
    )
    s.add_argument(
        "--num-workers", type=int, default=0, help="data-loader processes reading files per rank"
    )
    s.add_argument(
        "--run-id",
        default=None,
        help="run id shared by every rank (default: a new one; set it for multi-node launches)",
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
    from safegen_guard.data import dataset_modality
    from safegen_guard.guard_fit import load_fit_data

    # progress bars on the command line whatever the profile (tiny turns them off for tests)
    overrides = {
        "seed": args.seed,
        "false_reject_rate": args.false_reject_rate,
        "progress": True,
        "modality": args.modality or dataset_modality(args.data),
    }
    if args.size:
        overrides["image_size"] = args.size
    if args.steps:
        overrides["max_steps"] = args.steps
    config = GuardConfig.profile(args.profile, **overrides)
    train, cal, groups, _ = load_fit_data(args.data, None, config)
    print(f"training on {len(train)} real images, calibrating on {len(cal)}", flush=True)
    guard = Guard.fit(train, config, calibration_data=cal, calibration_groups=groups)
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
    provenance = {"data": str(args.data), "profile": args.profile, "explainer": explainer}
    provenance["memorization_index"] = memorization
    guard.save(args.out, provenance=provenance)  # in guard.json: verified like the rest
    (Path(args.out) / "provenance.json").unlink(missing_ok=True)  # an unverified older copy
    print(f"saved guard {guard.fingerprint} to {args.out} (explainer: {explainer})")
    return 0


def _score(args: argparse.Namespace) -> int:
    """Score files through Lightning ``Trainer.predict`` (see :mod:`safegen_guard.score_run`)."""
    from safegen_guard import Guard
    from safegen_guard.errors import NotFittedError
    from safegen_guard.integrations.audit import new_run_id
    from safegen_guard.io import atomic_write_json
    from safegen_guard.score_run import predict_files
    from safegen_guard.score_shards import merge_shards, run_records
    from safegen_guard.summary import summarize

    out = _output_folder(args.out)  # before any work
    guard = Guard.load(args.guard)
    if args.preparation is not None:
        try:
            guard = guard.for_preparation(args.preparation)
        except ValueError as err:  # a group the guard was not calibrated with
            print(f"safegen: error: --preparation: {err}", file=sys.stderr)
            return 2
    if args.explain and guard.explainer is None:
        raise NotFittedError(
            f"{args.guard} has no explainer; refit it with `safegen fit` (without --no-explainer)"
        )
    paths, skipped = expand_inputs(args.inputs)
    # one run id for every rank: DDP re-launches this command with this environment
    run_id = args.run_id or os.environ.get(_RUN_ID_ENV) or new_run_id()
    inherited = os.environ.get(_RUN_ID_ENV)
    os.environ[_RUN_ID_ENV] = run_id
    try:
        trainer, scorer, recovered = predict_files(
            guard, paths, out, run_id,
            overlays="all" if args.report else args.overlays, explain=args.explain,
            resize=args.resize, resume=args.resume, batch_size=args.batch_size,
            devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
            num_workers=args.num_workers,
        )  # fmt: skip
    finally:  # a later run in this process gets its own id
        if inherited is None:
            os.environ.pop(_RUN_ID_ENV, None)
        else:
            os.environ[_RUN_ID_ENV] = inherited
    if not trainer.is_global_zero:
        return 0
    merged = merge_shards(out)
    size, n_inputs = guard.config.image_size, len(paths) + len(skipped)
    skipped += merged.skipped
    _report_skipped(skipped, n_inputs, size)
    copies: list[dict] = []

    def this_run():  # streamed: verdicts.jsonl is never loaded whole for the summary
        for r in run_records(out, run_id):
            if r.get("memorized"):
                copies.append(_copy_entry(r))
            yield r

    stats = summarize(this_run(), schema=scorer.verdict_cls)
    summary = {
        "run_id": run_id,
        "images": int(stats["num_samples"]),
        "unsafe": int(stats["num_unsafe"]),
        "skipped_files": len(skipped),
        "already_scored_files": merged.already_scored,
        "recovered_images": sum(recovered.added.values()),
        "unsafe_rate": stats["unsafe_rate"],
        "memorized": copies,
        "guard": guard.fingerprint,
        "world_size": trainer.world_size,
        "skipped": skipped,
        "statistics": {k: None if math.isnan(v) else v for k, v in stats.items()},
    }
    atomic_write_json(out / "summary.json", summary)
    if args.report:
        from safegen_guard.review.outputs import calibration_scores
        from safegen_guard.review.report import write_report

        cal = calibration_scores(guard)
        records = list(run_records(out, run_id))
        index = write_report(out, records, summary, cal, threshold=guard.calibrator.alpha)
        print(f"report: {index}", file=sys.stderr)
    hidden = ("skipped", "memorized", "statistics")
    print(json.dumps({k: v for k, v in summary.items() if k not in hidden}))
    for c in summary["memorized"]:
        print(f"copy: {c['path']}[{c['index']}] ~ {c['nearest_training_file']}", file=sys.stderr)
    if not paths:
        print(f"safegen: error: no input files matched {list(args.inputs)}", file=sys.stderr)
    return 0 if summary["images"] or merged.already_scored else 2


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
    prov = guard.provenance
    cal, cfg = guard.calibrator, guard.config
    thresholds = ", ".join(f"{t:.3g}" for t in cal.thresholds().tolist())
    expl = guard.explainer
    lines = [
        f"guard        {args.guard} (fingerprint {guard.fingerprint})",
        f"data set     {prov.get('data', 'not recorded')} (data fingerprint "
        f"{guard.data_fingerprint or 'none'})",
        f"images       {cfg.image_size}x{cfg.image_size}, {cfg.channels} channel(s)",
        f"calibration  {len(cal.cal_fused)} real reference images in {cal.n_bins} bin(s) "
        f"by foreground fraction, {cal.n_groups} preparation group(s) "
        f"{cal.groups}, deciding with {cal.decision_groups}",
        f"thresholds   unsafe if p <= {cal.alpha:g} (false-reject rate); fused statistic "
        f"> [{thresholds}] per bin; pixel tau {float(cal.tau):.3g} (mask: {cal.pixel_fpr:g} "
        f"of real foreground pixels, maps averaged over radius {int(cal.map_radius)})",
        f"views        {', '.join(guard.detector.view_names)} (modality "
        f"{cfg.modality or 'not given: union of the MRI and CT defaults'})",
        f"memorization {_memorization_line(guard)}",
        f"explainer    {'fitted' if expl is not None else 'none: --explain is unavailable'}"
        + (f", tau {float(expl.tau):.3g}" if expl is not None else ""),
        f"saved with   format {meta.get('format_version', '?')}; this is safegen {__version__}",
    ]
    print("\n".join(lines))
    return 0


def _memorization_line(guard: object) -> str:
    index = guard.memorization
    if index is None:
        return "none: copies of training images are not checked (refit without --no-memorization)"
    return (
        f"{len(index)} training images indexed; memorized if copy p <= {index.config.alpha:g} "
        f"(similarity > {index.threshold:.3g})"
    )


def _datasets(args: argparse.Namespace) -> int:
    from safegen_guard.data import DATASETS

    for name in DATASETS:
        print(name)
    return 0


_HANDLERS = {"fit": _fit, "score": _score, "info": _info, "datasets": _datasets}

if __name__ == "__main__":
    raise SystemExit(main())

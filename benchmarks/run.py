"""`python -m benchmarks.run`: SAFEGEN vs baselines, offline, on the embedded data or yours.

Every method is trained on the same real training slices with the same step budget and batch,
calibrated the same way on the same real validation slices (5% false-reject rate, the guard's
pixel false-positive rate: 10% MRI, 5% CT), and scored on the same test sets:

- clean real test slices (negatives; false-reject rate);
- every artifact kind x ``mild``/``strong`` injected into copies of them, with ground-truth masks;
- samples of briefly trained StyleGAN2 / DDPM generators (verdict distributions, overlays).

Outputs in ``--out`` (default ``results/``), written atomically: ``results.json`` (schema in
``benchmarks/README.md``), ``results.md``, ``report.html`` (self-contained), ``roc_*.png``,
``overlays_*.png``, ``generated_*.png``; with ``--protocol leave-one-out`` also
``leave_one_out.md`` (unseen families beside seen ones) and a ``leave_one_out`` entry per data
set in ``results.json``.

Examples::

    python -m benchmarks.run                          # quick suite, MRI, ~20 min on 2 cores
    python -m benchmarks.run --modality all --suite full --out results_full
    python -m benchmarks.run --data /path/to/scans    # your NIfTI/DICOM/PNG folder
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.dataset_run import run_dataset
from benchmarks.report import summary_table, write_outputs
from safegen_guard.console import plain_help, run_main
from safegen_guard.io import atomic_write_text

__all__ = ["main", "SUITES"]

SUITES: dict[str, dict] = {
    "quick": {
        "profile": "quick",
        # every method gets 400 steps (the guard's own quick profile trains 1000): five
        # methods at 1000 steps took 27 min on 2 CPU cores, over the 15-min budget
        "steps": 400,
        "test_variants": 8,
        "n_insdel": 8,
        "n_boot": 1000,
        "generated": {"n": 32, "seconds": 45, "max_steps": 400, "preset": "tiny"},
    },
    "full": {
        "profile": "full",
        "test_variants": 16,
        "n_insdel": 32,
        "n_boot": 2000,
        "generated": {"n": 64, "seconds": 600, "max_steps": 5000, "preset": "cpu"},
    },
    # miniature suite for tests and CI smoke runs (not a benchmark)
    "tiny": {
        "profile": "tiny",
        "test_variants": 1,
        "n_insdel": 2,
        "n_boot": 50,
        "guard_overrides": {"calibration_bins": 1},
        "generated": {"n": 4, "seconds": 5, "max_steps": 2, "preset": "tiny"},
    },
}
MODALITIES = {"mri": "mni152", "ct": "ct_phantom"}


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m benchmarks.run``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--suite",
        default="quick",
        choices=["quick", "full", "tiny"],
        help="quick (default, CPU), full (GPU), tiny (tests only)",
    )
    p.add_argument(
        "--modality",
        default="mri",
        choices=["mri", "ct", "all"],
        help="embedded data: mri (mni152, default), ct (ct_phantom) or all",
    )
    p.add_argument("--data", default=None, help="a path to your scans instead of the embedded data")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps of every method (default: the suite's, else the profile's)",
    )
    p.add_argument("--size", type=int, default=None, help="override the image size")
    p.add_argument(
        "--test-variants",
        type=int,
        default=None,
        help="acquisition draws per test slice (default: the suite's)",
    )
    p.add_argument("--kinds", default=None, help="comma-separated artifact kinds (default: all)")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated baselines (default: plain_ae,dae,phanes,dia)",
    )
    p.add_argument("--no-generated", action="store_true", help="skip the generated-sample set")
    p.add_argument(
        "--protocol",
        default="standard",
        choices=["standard", "leave-one-out"],
        help="leave-one-out also fits a guard with every candidate view and writes the "
        "leave-one-family-out table (unseen families beside seen ones; benchmarks.loo)",
    )
    p.add_argument("--quiet", action="store_true", help="no Lightning progress bars")
    p.add_argument(
        "--save-scores",
        action="store_true",
        help="also write every method's raw image scores (scores_<data>.npz)",
    )
    return p


@contextmanager
def phase(phases: dict, name: str):
    """Time a block into ``phases[name]`` (seconds) and print a one-line progress note."""
    print(f"[benchmark] {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - t0, 2)
    print(f"[benchmark] {name} done in {phases[name]:.1f} s", file=sys.stderr, flush=True)


def _sources(args: argparse.Namespace) -> list[str]:
    if args.data:
        return [str(args.data)]
    if args.modality == "all":
        return list(MODALITIES.values())
    return [MODALITIES[args.modality]]


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the results dict (also written to ``--out``)."""
    from benchmarks.provenance import provenance

    args = build_parser().parse_args(argv)
    suite = SUITES[args.suite]
    t0 = time.perf_counter()
    results = {
        "schema_version": 2,
        "suite": args.suite,
        "seed": args.seed,
        "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        **provenance(),
        "datasets": {},
    }
    figures: dict[str, bytes] = {}
    loo_tables = []
    for source in _sources(args):
        res, figs = run_dataset(source, args, suite, phase)
        if args.protocol == "leave-one-out":
            with phase(res["phase_seconds"], "leave_one_out"):
                res["leave_one_out"], md = _leave_one_out(source, args, res["config"])
            loo_tables.append(md)
        results["datasets"][res["data"]["name"]] = res
        figures.update(figs)
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    write_outputs(results, figures, out)
    print(summary_table(results))
    if loo_tables:
        text = "\n".join(loo_tables)
        atomic_write_text(out / "leave_one_out.md", text)
        print(text)
    print(f"wrote {out / 'results.json'}, results.md, report.html and {len(figures)} figures")
    return results


def _leave_one_out(source: str, args: argparse.Namespace, config: dict) -> tuple[dict, str]:
    """Fit a guard with every registered view and run the leave-one-family-out protocol."""
    from benchmarks import loo
    from benchmarks.families import families_for
    from safegen_guard import Guard, GuardConfig
    from safegen_guard.detector.registry import list_views

    cfg = GuardConfig.from_dict({**_guard_fields(config), "views": list(list_views())})
    guard = Guard.fit(source, cfg)
    clean, fg = loo.load_test(source, cfg.image_size, config["test_variants"], args.seed)
    modality = "ct" if "ct" in str(source) else "mri"
    table = loo.build_table(guard, clean, fg, families_for(modality), args.seed)
    result = loo.run_protocol(guard, table)
    return result, loo.loo_markdown(result, f"({Path(str(source)).name}, {cfg.image_size} px)")


def _guard_fields(config: dict) -> dict:
    from dataclasses import fields

    from safegen_guard import GuardConfig

    names = {f.name for f in fields(GuardConfig)}
    return {k: v for k, v in config.items() if k in names}


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.run"))

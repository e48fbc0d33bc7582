"""One dataset of the benchmark: load, fit every method, calibrate, score, measure, compare."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tqdm.auto import tqdm

from benchmarks import evaluate as ev
from benchmarks.baselines import BASELINES
from benchmarks.baselines.base import Baseline
from benchmarks.guard_eval import Calibrated, SafegenMethod, artifact_suite, calibrate
from safegen_guard.config import GuardConfig
from safegen_guard.seeds import TEST_SUITE_SEED

__all__ = ["run_dataset", "build_methods", "GROUPS"]

GROUPS = ("overall", "mild", "strong", "local", "global")


def build_methods(cfg: GuardConfig, names: str | None) -> list[Baseline]:
    """SAFEGEN first, then the requested baselines (default: all, in registry order)."""
    chosen = list(BASELINES) if not names else [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}: expected some of {list(BASELINES)}")
    return [SafegenMethod(cfg)] + [BASELINES[n](cfg) for n in chosen]


def _load(source: str, cfg: GuardConfig, test_variants: int, seed: int) -> tuple:
    from safegen_guard.data import load_dataset

    size = cfg.image_size
    train = load_dataset(
        source, "train", size, variants=cfg.train_variants, augment=True, seed=seed
    )
    # every real split gets the same augmentation: it stands in for the subject-to-subject
    # variation one template cannot show, and "real" must mean the same thing in training,
    # calibration and test (as in Guard.fit)
    val = load_dataset(
        source, "val", size, variants=cfg.calibration_variants, augment=True, seed=seed + 1
    )
    test = load_dataset(source, "test", size, variants=test_variants, augment=True, seed=seed + 2)
    return train, val, test


def _suite(test, kinds: str | None, seed: int) -> list[dict]:  # noqa: ANN001
    from safegen_guard.artifacts import ARTIFACTS

    chosen = [k.strip() for k in kinds.split(",")] if kinds else None
    cells = artifact_suite(test.images, test.masks, TEST_SUITE_SEED + 100 * seed, chosen)
    for c in cells:
        c["local"] = bool(ARTIFACTS[c["kind"]].local)
        c["clean"] = test.images
    return cells


def _groups(suite: list[dict]) -> dict[str, list[int]]:
    idx = range(len(suite))
    groups = {
        "overall": list(idx),
        "mild": [i for i in idx if suite[i]["severity"] == "mild"],
        "strong": [i for i in idx if suite[i]["severity"] == "strong"],
        "local": [i for i in idx if suite[i]["local"]],
        "global": [i for i in idx if not suite[i]["local"]],
    }
    return {k: v for k, v in groups.items() if v}


def _config(args: argparse.Namespace, suite: dict, source: str) -> GuardConfig:
    from safegen_guard.data import dataset_modality

    overrides = {
        "modality": dataset_modality(source),
        **suite.get("guard_overrides", {}),
        "seed": args.seed,
        "progress": not args.quiet,
    }
    steps = args.steps or suite.get("steps")
    if steps:
        overrides["max_steps"] = steps
    if args.size:
        overrides["image_size"] = args.size
    return GuardConfig.profile(suite["profile"], **overrides)


def _measure(methods, scored, cals, suite, n_insdel) -> tuple[list, dict]:  # noqa: ANN001
    cells = []
    per_method = {m.name: [] for m in methods}
    for i, cell in enumerate(tqdm(suite, desc="metrics per cell")):
        row = {
            "kind": cell["kind"],
            "severity": cell["severity"],
            "local": cell["local"],
            "n": len(cell["images"]),
            "methods": {},
        }
        for m in methods:
            vals = ev.cell_metrics(m, scored[m.name], cals[m.name], cell, i, n_insdel)
            row["methods"][m.name] = vals
            per_method[m.name].append(vals)
        cells.append(row)
    pooled = {
        g: {
            m.name: ev.pooled_metrics(scored[m.name], cals[m.name], idx, per_method[m.name])
            for m in methods
        }
        for g, idx in _groups(suite).items()
    }
    return cells, pooled


def run_dataset(
    source: str, args: argparse.Namespace, suite_cfg: dict, phase: Callable
) -> tuple[dict, dict[str, bytes]]:
    """Run every phase on ``source``; returns its ``results.json`` entry and PNG figures."""
    from benchmarks import plots as figs

    phases: dict[str, float] = {}
    cfg = _config(args, suite_cfg, source)
    with phase(phases, "load_data"):
        train, val, test = _load(
            source, cfg, args.test_variants or suite_cfg["test_variants"], args.seed
        )
        suite = _suite(test, args.kinds, args.seed)
    methods = build_methods(cfg, args.methods)
    cals: dict[str, Calibrated] = {}
    info: dict[str, dict] = {}
    for m in tqdm(methods, desc="fit + calibrate methods"):
        with phase(phases, f"fit_{m.name}"):
            m.fit(train.images, val.images, cfg.max_steps, args.seed)
        with phase(phases, f"calibrate_{m.name}"):
            cals[m.name] = calibrate(
                m, val.images, val.masks, cfg.false_reject_rate, cfg.pixel_fpr, args.seed
            )
        info[m.name] = {
            **m.describe(),
            "fit_seconds": phases[f"fit_{m.name}"],
            "threshold": cals[m.name].threshold,
            "pixel_threshold": cals[m.name].pixel_threshold,
        }
    scored = {}
    with phase(phases, "score_test"):
        for m in tqdm(methods, desc="score test sets"):
            scored[m.name] = ev.score_all(m, test.images, suite)
            info[m.name]["images_per_s"] = round(scored[m.name].images_per_s, 1)
    with phase(phases, "metrics"):
        cells, pooled = _measure(methods, scored, cals, suite, suite_cfg["n_insdel"])
    with phase(phases, "paired_tests"):
        comps = ev.comparisons(scored, suite, _groups(suite), args.seed, suite_cfg["n_boot"])
    with phase(phases, "generated"):
        generated, gen_figs = figs.generated_section(
            methods, cals, train.images, suite_cfg["generated"], args, skip=args.no_generated
        )
    with phase(phases, "figures"):
        name = test.name if isinstance(test.name, str) else str(source)
        tag = "".join(ch if ch.isalnum() else "_" for ch in name)[-40:]
        figures = {
            f"roc_{tag}.png": figs.roc_figure(scored, suite, info, name),
            f"overlays_{tag}.png": figs.overlay_figure(methods, scored, cals, suite),
        }
        figures.update({f"generated_{tag}_{k}": v for k, v in gen_figs.items()})
        if getattr(args, "save_scores", False):
            figures[f"scores_{tag}.npz"] = _scores_npz(scored, suite)
    res = {
        "data": {
            "name": name,
            "source": str(source),
            "fingerprint": _fingerprint(train, val, test),
            "image_size": cfg.image_size,
            "n_train": len(train),
            "n_val": len(val),
            "n_test_clean": len(test),
        },
        "config": {
            **cfg.to_dict(),
            "budget_steps": cfg.max_steps,
            "test_variants": args.test_variants or suite_cfg["test_variants"],
        },
        "methods": info,
        "cells": cells,
        "pooled": pooled,
        "comparisons": comps,
        "generated": generated,
        "phase_seconds": phases,
        "figures": sorted(figures),
    }
    return res, figures


def _scores_npz(scored: dict, suite: list[dict]) -> bytes:
    """Every method's raw image scores: ``<method>/clean`` and ``<method>/<kind>/<severity>``."""
    import io

    import numpy as np

    arrays = {}
    for name, s in scored.items():
        arrays[f"{name}/clean"] = s.clean.double().numpy()
        for c, cell in zip(s.cells, suite):
            arrays[f"{name}/{cell['kind']}/{cell['severity']}"] = c.double().numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _fingerprint(*datasets) -> str:  # noqa: ANN002
    import hashlib

    h = hashlib.sha256()
    for d in datasets:
        h.update(d.fingerprint().encode())
    return h.hexdigest()[:16]

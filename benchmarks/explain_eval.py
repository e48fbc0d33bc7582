"""Measure explanations: localisation of A_map, Grad-CAM, SHAP and the combined heatmap.

Run: ``python -m benchmarks.explain_eval --guard /tmp/explain_guard`` (a guard saved with
``guard.save``; fitted with ``GuardConfig.profile("quick", max_steps=600)`` when missing).

Honesty: Grad-CAM settings, ``alpha`` and ``tau`` (and each single map's own threshold) are
chosen on ``mni152`` *val* slices with the artifact streams ``EXPLAINER_SELECT`` /
``BENCH_EXPLAIN_SELECT`` of :mod:`safegen_guard.seeds`; the predictor is distilled on *train*
slices (stream ``EXPLAINER_DISTIL``). Test = ``test`` slices with the suite of
:func:`benchmarks.guard_eval.artifact_suite` (``TEST_SUITE_SEED``). The artifact *kinds* are
the same registry in all three (as the issue asks), only slices and random draws differ.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from benchmarks import metrics as bm
from benchmarks.guard_eval import artifact_suite
from safegen_guard import metrics, seeds
from safegen_guard.artifacts import ARTIFACTS, list_artifacts
from safegen_guard.console import plain_help, run_main
from safegen_guard.data import load_dataset
from safegen_guard.explain.combine import fit_combination
from safegen_guard.explain.explainer import (
    COMPONENTS,
    _foreground,
    fit_explainer,
    inject_mix,
)
from safegen_guard.explain.gradcam import GRADCAM_LAYERS, GRADCAM_TARGETS, AnomalyGradCam
from safegen_guard.seeds import derive_seed

__all__ = ["main", "explore_gradcam", "localisation_table"]

LOCAL = [k for k in list_artifacts() if ARTIFACTS[k].local]


def _load_guard(path: str, profile: str, max_steps: int):  # noqa: ANN202
    from safegen_guard import Guard, GuardConfig

    if Path(path, "guard.json").exists():
        return Guard.load(path)
    cfg = GuardConfig.profile(
        profile, modality="mri", max_steps=max_steps, accelerator="cpu", progress=False
    )
    guard = Guard.fit("mni152", cfg)
    guard.save(path)
    return guard


def explore_gradcam(guard, x_val: torch.Tensor, gt_val: torch.Tensor) -> list[dict]:  # noqa: ANN001
    """Pixel AUROC on *validation* images for every layer x target x sign."""
    fg = _foreground(guard.explain_context(), x_val)
    rows = []
    for layer, target, sign in itertools.product(GRADCAM_LAYERS, GRADCAM_TARGETS, ("relu", "abs")):
        cam = AnomalyGradCam(guard.detector.autoencoder, layer, target, sign).attribute(x_val) * fg
        rows.append(
            {
                "layer": layer,
                "target": target,
                "sign": sign,
                "val_pixel_auroc": round(metrics.pixel_auroc(cam, gt_val, fg), 3),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _single_map_taus(expl, guard, x_val, gt_val) -> dict[str, float]:  # noqa: ANN001
    """Each component's own Dice-optimal threshold on validation (fair single-map baseline)."""
    amap = guard.evaluate(x_val).anomaly_map
    comp = expl.components(guard.explain_context(), x_val, amap, COMPONENTS)
    one = torch.ones(1, 1)
    return {n: fit_combination(comp[n], gt_val, alphas=one)[1] for n in COMPONENTS}


def localisation_table(guard, suite, taus, n_id: int, clean: torch.Tensor) -> list[dict]:  # noqa: ANN001
    """Per cell and map: pixel AUROC, Dice, IoU, pointing game, top-k, insertion/deletion.

    Insertion/deletion move pixels between the corrupted image and its *clean* original
    (``clean``, ``[N, 1, H, W]``, same order as every cell), the exact healthy counterpart,
    with the benchmark's protocol (:func:`benchmarks.metrics.insertion_deletion`).
    The detector's own reconstruction is no substitute here: it is smooth, and the noise and
    sharpness views score it as more anomalous than the artifact (measured: normalised AUCs of
    -170 and +25, meaningless).
    """
    rows = []
    sub = clean[:n_id]
    for cell in suite:
        x, gt = cell["images"], cell["masks"]
        v = guard.evaluate(x, explain=True)
        fg = _foreground(guard.explain_context(), x)
        maps = {
            "anomaly_map": v.anomaly_map,
            "gradcam": v.gradcam,
            "shap": v.shap,
            "heatmap": v.heatmap,
        }
        masks = {n: maps[n] > taus[n] for n in COMPONENTS}
        masks["heatmap"], masks["anomaly_map_calibrated"] = v.heatmap_mask, v.mask
        has = gt.flatten(1).any(1)
        for name, m in masks.items():
            s = maps["anomaly_map" if name == "anomaly_map_calibrated" else name]
            row = {
                "kind": cell["kind"],
                "severity": cell["severity"],
                "map": name,
                "pixel_auroc": metrics.pixel_auroc(s, gt, fg),
                "dice": float(metrics.dice(m, gt)[has].mean()),
                "iou": float(metrics.iou(m, gt)[has].mean()),
                "pointing_game": float(metrics.pointing_game(s, gt)[has].float().mean()),
                "top_k_intersection": float(metrics.top_k_intersection(s, gt)[has].mean()),
            }
            if name != "anomaly_map_calibrated":
                r = bm.insertion_deletion(guard.fused_statistic, sub, x[:n_id], s[:n_id], gt[:n_id])
                row["insertion_auc"], row["deletion_auc"] = r["insertion_auc"], r["deletion_auc"]
            rows.append({k: round(v_, 3) if isinstance(v_, float) else v_ for k, v_ in row.items()})
    return rows


def timings(guard, x: torch.Tensor) -> dict[str, float]:  # noqa: ANN001
    """Milliseconds per image: scoring alone, + Grad-CAM, + SHAP, + everything."""
    out = {}
    for name, explain in (
        ("score", False),
        ("score+gradcam", ("gradcam",)),
        ("score+shap", ("shap",)),
        ("score+all", True),
    ):
        guard.evaluate(x[:4], explain=explain)  # warm-up
        t0 = time.perf_counter()
        guard.evaluate(x, explain=explain)
        out[name] = round(1000 * (time.perf_counter() - t0) / len(x), 2)
    return out


def _summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    keys = (
        "pixel_auroc",
        "dice",
        "iou",
        "pointing_game",
        "top_k_intersection",
        "insertion_auc",
        "deletion_auc",
    )
    out = {}
    for name in sorted({r["map"] for r in rows}):
        sel = [r for r in rows if r["map"] == name]
        out[name] = {k: round(sum(r[k] for r in sel) / len(sel), 3) for k in keys if k in sel[0]}
    return out


def main(argv: list[str] | None = None) -> dict:
    """Fit the explainer on train/val, measure on test, print and optionally save JSON."""
    p = argparse.ArgumentParser(
        description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--guard", default="/tmp/explain_guard")
    p.add_argument("--profile", default="quick")
    p.add_argument("--guard-steps", type=int, default=600)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--test-variants", type=int, default=2)
    p.add_argument("--n-insertion", type=int, default=8)
    p.add_argument("--explore", action="store_true", help="search Grad-CAM settings on val")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    guard = _load_guard(a.guard, a.profile, a.guard_steps)
    size = guard.config.image_size
    # the same augmented real splits as Guard.fit and benchmarks.run
    train = load_dataset("mni152", "train", size, variants=2, augment=True, seed=0).images
    val = load_dataset("mni152", "val", size, variants=4, augment=True, seed=1).images
    test = load_dataset("mni152", "test", size, variants=a.test_variants, augment=True, seed=2)
    x_val, gt_val = inject_mix(
        val[1::2].repeat(2, 1, 1, 1), LOCAL, derive_seed(0, seeds.BENCH_EXPLAIN_SELECT)
    )
    res: dict = {"guard_config": guard.config.to_dict()}
    cfg = {}
    if a.explore:
        res["gradcam_search_val"] = explore_gradcam(guard, x_val, gt_val)
        best = max(res["gradcam_search_val"], key=lambda r: r["val_pixel_auroc"])
        cfg = {
            "gradcam_layer": best["layer"],
            "gradcam_target": best["target"],
            "gradcam_sign": best["sign"],
        }
    t0 = time.time()
    expl = fit_explainer(guard, train, val, steps=a.steps, progress=True, **cfg)
    res["fit_seconds"], res["fit_report"], res["explainer"] = time.time() - t0, expl.fit_report, cfg
    guard.attach_explainer(expl)
    taus = _single_map_taus(expl, guard, x_val, gt_val)
    res["single_map_tau_val"] = taus
    suite = artifact_suite(test.images, test.masks, seeds.TEST_SUITE_SEED, kinds=LOCAL)
    res["rows"] = localisation_table(guard, suite, taus, a.n_insertion, test.images)
    res["summary"] = _summary(res["rows"])
    res["ms_per_image"] = timings(guard, test.images[:32])
    print(
        json.dumps(
            {k: res[k] for k in ("fit_report", "single_map_tau_val", "summary", "ms_per_image")},
            indent=1,
        )
    )
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.explain_eval"))

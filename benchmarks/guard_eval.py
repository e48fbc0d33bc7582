"""Measure a fitted guard, and put SAFEGEN and the baselines behind one calibrated interface.

Run: ``python -m benchmarks.guard_eval --data mni152 --profile quick`` (fits, then measures the
fit time, the false-reject rate on clean test slices, per-kind AUROC/detection/Dice and the
scoring throughput); ``--guard DIR`` measures a saved guard instead.
Used by the benchmark suite (:mod:`benchmarks.run`) and to produce the figures quoted in issue
notes. :func:`artifact_suite` builds the artifact test cells (also used by the explanation
benchmark); :class:`SafegenMethod` adapts a :class:`~safegen_guard.Guard` to the baseline
interface; :func:`calibrate` gives every method its threshold and pixel threshold from the
same real validation images.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import torch
from sklearn.metrics import roc_auc_score

from benchmarks import metrics as bm
from benchmarks.baselines.base import Baseline
from safegen_guard.artifacts import inject, list_artifacts
from safegen_guard.calibration import conformal_threshold
from safegen_guard.config import GuardConfig
from safegen_guard.console import plain_help, run_main
from safegen_guard.data import load_dataset
from safegen_guard.seeds import TEST_SUITE_SEED, derive_seed

__all__ = [
    "Calibrated",
    "SafegenMethod",
    "artifact_suite",
    "calibrate",
    "evaluate_detection",
    "main",
    "throughput",
    "autoencoder_throughput",
]


def artifact_suite(
    images: torch.Tensor, masks: torch.Tensor, seed: int, kinds: list[str] | None = None
) -> list[dict]:
    """Inject every kind at ``mild`` and ``strong`` into copies of ``images``.

    Each cell draws from its own generator, seeded by ``seed`` and the kind's and severity's
    names (:func:`~safegen_guard.seeds.derive_seed`), so registering a kind never changes
    another kind's cells.

    Returns:
        list of dicts with ``kind``, ``severity``, ``images`` ``[N,1,H,W]``, ``masks`` (GT).
    """
    suite = []
    for kind in kinds or list_artifacts():
        for severity in ("mild", "strong"):
            g = torch.Generator().manual_seed(derive_seed(seed, "artifact_suite", kind, severity))
            x, gt = inject(images, kind, severity, g, foreground=masks)
            suite.append({"kind": kind, "severity": severity, "images": x, "masks": gt})
    return suite


class SafegenMethod(Baseline):
    """SAFEGEN's guard behind the baseline interface, through its public ``Verdict`` only.

    Image score: ``verdict.score``, the guard's severity (``inf`` for non-finite images): a
    continuous, monotone version of ``-log10(p_value)`` that keeps ranking beyond the
    calibration range (:mod:`safegen_guard.calibration`, step 3b); map:
    ``verdict.anomaly_map``. Its thresholds are the guard's own decisions: ``unsafe`` iff
    ``p <= alpha`` iff ``score > -log10(alpha)`` (:meth:`own_calibration`), and the mask is
    ``anomaly_map > 0.5``.
    """

    name = "safegen"
    label = "SAFEGEN (this library)"
    reference = "SAFEGEN guard: multi-view autoencoder detector + conformal calibration"

    def __init__(self, guard_config: GuardConfig, guard: object | None = None) -> None:
        super().__init__(guard_config)
        self.guard = guard

    def fit(
        self, train: torch.Tensor, val: torch.Tensor, budget_steps: int, seed: int
    ) -> SafegenMethod:
        """``Guard.fit(train, config, calibration_data=val)`` with ``max_steps=budget_steps``."""
        from dataclasses import replace

        from safegen_guard import Guard

        cfg = replace(self.guard_config, max_steps=budget_steps, seed=seed)
        self.guard = Guard.fit(train, cfg, calibration_data=val)
        return self

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` severity scores and ``[B,1,H,W]`` anomaly maps in ``[0, 1)``."""
        v = self.guard.evaluate(x)
        return v.score.double(), v.anomaly_map

    def own_calibration(self) -> Calibrated:
        """``score > -log10(alpha)`` (i.e. ``unsafe``, ``p <= alpha``) and ``anomaly_map > 0.5``."""
        alpha = float(self.guard.config.false_reject_rate)
        return Calibrated(-math.log10(alpha) + 1e-9, 0.5)


@dataclass(frozen=True)
class Calibrated:
    """Calibrated thresholds of one method.

    Attributes:
        threshold: Image threshold: flag iff ``score > threshold``.
        pixel_threshold: Pixel threshold: mask iff ``map > pixel_threshold`` (``None``
            for image-level methods).
    """

    threshold: float
    pixel_threshold: float | None


def calibrate(
    method: Baseline,
    val_images: torch.Tensor,
    val_foreground: torch.Tensor,
    false_reject_rate: float,
    pixel_fpr: float,
    seed: int = 0,
) -> Calibrated:
    """Calibrate a method on real validation images, identically for every baseline.

    Image threshold: :func:`~safegen_guard.calibration.conformal_threshold` of the method's
    scores on ``val_images`` ``[M,1,H,W]`` at ``false_reject_rate``. Pixel threshold: the
    ``1 - pixel_fpr`` quantile of its maps on real foreground pixels (``val_foreground``
    ``[M,1,H,W]`` bool; at most 2M pixels, fixed-seed subsample). SAFEGEN keeps its own
    calibration, which is the same rule on (half of) the same images.
    """
    if isinstance(method, SafegenMethod):
        return method.own_calibration()
    scores, maps = method.score_chunked(val_images)
    threshold = conformal_threshold(scores.float(), false_reject_rate)
    if maps is None:
        return Calibrated(threshold, None)
    pix = maps[val_foreground.expand_as(maps)]
    if pix.numel() > 2_000_000:
        g = torch.Generator().manual_seed(seed)
        pix = pix[torch.randperm(pix.numel(), generator=g)[:2_000_000]]
    return Calibrated(threshold, float(torch.quantile(pix.float(), 1.0 - pixel_fpr)))


def evaluate_detection(guard, clean: torch.Tensor, suite: list[dict]) -> dict:
    """AUROC (clean vs corrupted), per-view AUROC, Dice, and false-reject rate."""
    v0 = guard.evaluate(clean)
    out = {"false_reject_rate": float(v0.unsafe.float().mean()), "n_clean": len(clean), "cells": []}
    for cell in suite:
        v1 = guard.evaluate(cell["images"])
        y = [0] * len(clean) + [1] * len(v1)
        fused = torch.cat([v0.score, v1.score]).clamp_max(1e6).numpy()
        views = {
            n: round(roc_auc_score(y, torch.cat([v0.view_scores[n], v1.view_scores[n]]).numpy()), 3)
            for n in v0.view_scores
        }
        out["cells"].append(
            {
                "kind": cell["kind"],
                "severity": cell["severity"],
                "auroc": round(roc_auc_score(y, fused), 3),
                "detected": round(float(v1.unsafe.float().mean()), 3),
                "dice": round(bm.mask_overlap(v1.mask, cell["masks"])["dice"], 3),
                "view_auroc": views,
            }
        )
    return out


def throughput(guard, images: torch.Tensor, n: int = 512, repeats: int = 3) -> float:  # noqa: ANN001
    """Median images/s of ``guard.evaluate`` (no explanations) on ``n`` images, after a warm-up.

    Args:
        guard: A fitted :class:`~safegen_guard.Guard`.
        images: ``[N, 1, H, W]`` images, tiled to ``n``.
        n: Images per timed call.
        repeats: Timed calls; the median is reported.
    """
    x = images.repeat(-(-n // len(images)), 1, 1, 1)[:n]
    guard.evaluate(x[:64])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        guard.evaluate(x)
        rates.append(n / (time.perf_counter() - t0))
    return round(sorted(rates)[len(rates) // 2], 1)


def autoencoder_throughput(  # noqa: ANN001
    guard, images: torch.Tensor, n: int = 512, repeats: int = 3
) -> float:
    """Median images/s of one forward pass of the guard's autoencoder.

    Timed like :func:`throughput`: the same images, in chunks of ``config.score_batch_size``.

    ``evaluate`` runs the encoder once and the decoder twice (bottleneck and skip paths), plus
    the views; the ratio of the two rates says what the guard costs beyond its network.
    """
    x = images.repeat(-(-n // len(images)), 1, 1, 1)[:n].contiguous()
    ae, size = guard.detector.autoencoder.eval(), guard.config.score_batch_size

    def run() -> None:
        with torch.inference_mode():
            for chunk in x.split(size):
                ae(chunk)

    run()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - t0))
    return round(sorted(rates)[len(rates) // 2], 1)


def main(argv: list[str] | None = None) -> dict:
    """Fit a guard on ``--data`` with ``--profile`` and print the measurements."""
    from safegen_guard import Guard, GuardConfig

    p = argparse.ArgumentParser(
        description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="mni152")
    p.add_argument("--profile", default="quick")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--test-variants", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the measurements to this JSON file")
    p.add_argument("--save-guard", default=None, help="also save the fitted guard here")
    p.add_argument("--guard", default=None, help="measure a saved guard instead of fitting one")
    p.add_argument(
        "--throughput-only",
        action="store_true",
        help="only time evaluate and one autoencoder forward pass (skips the artifact cells)",
    )
    args = p.parse_args(argv)
    t0 = time.time()
    if args.guard:
        guard = Guard.load(args.guard)
        cfg = guard.config
    else:
        overrides = {"image_size": args.size} if args.size else {}
        from safegen_guard.data import dataset_modality

        overrides["modality"] = dataset_modality(args.data)
        cfg = GuardConfig.profile(args.profile, seed=args.seed, **overrides)
        guard = Guard.fit(args.data, cfg)
        if args.save_guard:
            guard.save(args.save_guard)
    fit_s = time.time() - t0
    test = load_dataset(
        args.data,
        "test",
        cfg.image_size,
        variants=args.test_variants,
        augment=True,
        seed=args.seed + 2,
    )
    res: dict = {}
    if not args.throughput_only:
        cells = artifact_suite(test.images, test.masks, TEST_SUITE_SEED)
        res = evaluate_detection(guard, test.images, cells)
    res["images_per_s"] = throughput(guard, test.images)
    res["autoencoder_images_per_s"] = autoencoder_throughput(guard, test.images)
    res["evaluate_cost_in_forward_passes"] = round(
        res["autoencoder_images_per_s"] / res["images_per_s"], 2
    )
    res["threads"] = torch.get_num_threads()
    res["fit_seconds"] = None if args.guard else round(fit_s, 1)
    speed, ratio = res["images_per_s"], res["evaluate_cost_in_forward_passes"]
    frr = f"  FRR {res['false_reject_rate']:.3f}" if "false_reject_rate" in res else ""
    print(
        f"fit {res['fit_seconds']} s{frr}  evaluate {speed} img/s = "
        f"{ratio}x one autoencoder forward ({res['autoencoder_images_per_s']} img/s), "
        f"{res['threads']} thread(s)"
    )
    for c in res.get("cells", []):
        best = max(c["view_auroc"], key=c["view_auroc"].get)
        print(
            f"{c['kind']:20s} {c['severity']:6s} auroc {c['auroc']:.3f} det {c['detected']:.2f}"
            f" dice {c['dice']:.2f}  best view {best} {c['view_auroc'][best]:.3f}"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.guard_eval"))

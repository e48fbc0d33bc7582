"""Detection and localisation metrics of the benchmark, aggregated over a test cell.

Per-image definitions live in :mod:`safegen_guard.metrics` (one definition per metric name);
this module only chooses the images that count and averages.

Image level (clean test images are negatives, artifact-injected copies positives):
AUROC, AUPRC, and precision / recall / F1 of the calibrated decision ``score > threshold``.
Pixel level (on the artifact-injected images, against the injection's ground-truth mask):
IoU and Dice of the calibrated mask (mean over images with a non-empty ground truth), pooled
pixel AUROC / AUPRC, pointing game, top-k intersection, and insertion / deletion AUC.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from safegen_guard import metrics as pm

__all__ = [
    "image_metrics",
    "mask_overlap",
    "pixel_ranking",
    "pointing_game",
    "topk_intersection",
    "insertion_deletion",
]

_MAX_PIXELS = 500_000


def image_metrics(clean: torch.Tensor, anomalous: torch.Tensor, threshold: float) -> dict:
    """Image-level metrics of one method on one test cell.

    Args:
        clean: ``[n0]`` scores of clean real test images (label 0).
        anomalous: ``[n1]`` scores of corrupted images (label 1); higher = more anomalous.
        threshold: Calibrated threshold; an image is flagged iff ``score > threshold``.

    Returns:
        ``auroc``, ``auprc``, ``precision``, ``recall`` (= share detected), ``f1`` in ``[0,1]``.
    """
    y = np.r_[np.zeros(len(clean)), np.ones(len(anomalous))]
    s = np.nan_to_num(torch.cat([clean, anomalous]).double().numpy(), nan=np.inf, posinf=1e300)
    pred = s > threshold
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0.0)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
    }


def _has_gt(gt: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: images whose ground truth is non-empty (the ones pixel metrics average)."""
    return gt.flatten(1).any(1)


def mask_overlap(pred: torch.Tensor, gt: torch.Tensor) -> dict:
    """Mean IoU and Dice over images whose ground truth is non-empty.

    Args:
        pred: ``[B,1,H,W]`` bool predicted masks.
        gt: ``[B,1,H,W]`` bool ground-truth masks.
    """
    keep = _has_gt(gt)
    if not bool(keep.any()):
        return {"iou": float("nan"), "dice": float("nan")}
    return {
        "iou": float(pm.iou(pred[keep], gt[keep]).double().mean()),
        "dice": float(pm.dice(pred[keep], gt[keep]).double().mean()),
    }


def pixel_ranking(maps: torch.Tensor, gt: torch.Tensor, seed: int = 0) -> dict:
    """Pooled pixel AUROC / AUPRC of ``maps`` ``[B,1,H,W]`` against bool ``gt``.

    Past 500k pixels a fixed-seed random subsample is used. NaN when ``gt`` is all one class.
    """
    kw = {"max_pixels": _MAX_PIXELS, "seed": seed}
    return {
        "pixel_auroc": pm.pixel_auroc(maps, gt, **kw),
        "pixel_auprc": pm.pixel_auprc(maps, gt, **kw),
    }


def pointing_game(maps: torch.Tensor, gt: torch.Tensor) -> float:
    """Share of images (non-empty ``gt``) whose map maximum lies inside the ground truth."""
    keep = _has_gt(gt)
    if not bool(keep.any()):
        return float("nan")
    return float(pm.pointing_game(maps[keep], gt[keep]).double().mean())


def topk_intersection(maps: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean share of the ``k = |gt|`` highest-map pixels that lie in ``gt`` (non-empty ``gt``)."""
    keep = _has_gt(gt)
    if not bool(keep.any()):
        return float("nan")
    return float(pm.top_k_intersection(maps[keep], gt[keep]).double().mean())


def insertion_deletion(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    anomalous: torch.Tensor,
    maps: torch.Tensor,
    gt: torch.Tensor,
    steps: int = 8,
) -> dict:
    """Mean insertion / deletion AUC of a map, with the clean original as the substrate.

    :func:`safegen_guard.metrics.insertion_deletion` over ``2 |gt|`` pixels per image (the
    artifact's scale) in ``steps`` steps; both AUCs lie in ``[0, 1]``. Images that do not
    score above their clean original are left out.

    Args:
        score_fn: ``[B,1,H,W] -> [B]`` image scores of the method.
        clean: ``[B,1,H,W]`` clean originals.
        anomalous: ``[B,1,H,W]`` artifact-injected copies.
        maps: ``[B,1,H,W]`` the method's maps of ``anomalous``.
        gt: ``[B,1,H,W]`` bool ground truth (sets the range, ``2 |gt|`` pixels).
        steps: Curve points minus one.

    Returns:
        ``insertion_auc``, ``deletion_auc`` (NaN if no image qualifies) and ``n`` images used.
    """
    area = 2 * gt.flatten(1).sum(1)
    res = pm.insertion_deletion(score_fn, anomalous, clean, maps, n_pixels=area, steps=steps)
    ok = ~res["insertion"].isnan()
    if not bool(ok.any()):
        return {"insertion_auc": float("nan"), "deletion_auc": float("nan"), "n": 0}
    return {
        "insertion_auc": float(res["insertion"][ok].double().mean()),
        "deletion_auc": float(res["deletion"][ok].double().mean()),
        "n": int(ok.sum()),
    }

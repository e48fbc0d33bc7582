"""Detection and localisation metrics of the benchmark, checked against scikit-learn.

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


def mask_overlap(pred: torch.Tensor, gt: torch.Tensor) -> dict:
    """Mean IoU and Dice over images whose ground truth is non-empty.

    Args:
        pred: ``[B,1,H,W]`` bool predicted masks.
        gt: ``[B,1,H,W]`` bool ground-truth masks.
    """
    keep = gt.flatten(1).any(1)
    if not bool(keep.any()):
        return {"iou": float("nan"), "dice": float("nan")}
    p, g = pred[keep].flatten(1), gt[keep].flatten(1)
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    size = (p.sum(1) + g.sum(1)).double()
    return {
        "iou": float((inter / union.clamp_min(1)).mean()),
        "dice": float((2 * inter / size.clamp_min(1)).mean()),
    }


def pixel_ranking(maps: torch.Tensor, gt: torch.Tensor, seed: int = 0) -> dict:
    """Pooled pixel AUROC / AUPRC of ``maps`` ``[B,1,H,W]`` against bool ``gt``.

    Past 500k pixels a fixed-seed random subsample is used. NaN when ``gt`` is all one class.
    """
    m, g = maps.flatten().double(), gt.flatten()
    if m.numel() > _MAX_PIXELS:
        idx = torch.randperm(m.numel(), generator=torch.Generator().manual_seed(seed))
        m, g = m[idx[:_MAX_PIXELS]], g[idx[:_MAX_PIXELS]]
    if bool(g.all()) or not bool(g.any()):
        return {"pixel_auroc": float("nan"), "pixel_auprc": float("nan")}
    y, s = g.numpy(), np.nan_to_num(m.numpy(), nan=0.0)
    return {
        "pixel_auroc": float(roc_auc_score(y, s)),
        "pixel_auprc": float(average_precision_score(y, s)),
    }


def pointing_game(maps: torch.Tensor, gt: torch.Tensor) -> float:
    """Share of images (non-empty ``gt``) whose map maximum lies inside the ground truth."""
    keep = gt.flatten(1).any(1)
    if not bool(keep.any()):
        return float("nan")
    arg = maps[keep].flatten(1).argmax(1)
    return float(gt[keep].flatten(1).gather(1, arg[:, None]).double().mean())


def topk_intersection(maps: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean share of the ``k = |gt|`` highest-map pixels that lie in ``gt`` (per image)."""
    vals = []
    for m, g in zip(maps.flatten(1), gt.flatten(1)):
        k = int(g.sum())
        if k:
            vals.append(float(g[m.topk(k).indices].double().mean()))
    return float(np.mean(vals)) if vals else float("nan")


def insertion_deletion(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    anomalous: torch.Tensor,
    maps: torch.Tensor,
    gt: torch.Tensor,
    steps: int = 8,
) -> dict:
    """Insertion / deletion AUC of a map, with the clean original as the "removed" state.

    Pixels are ranked by the map; the first ``t * 2|gt|`` (``t`` in ``[0, 1]``, ``steps + 1``
    points) are **deleted** (set to their clean value in the anomalous image) or **inserted**
    (set to their anomalous value in the clean image). Scores are normalised per image to
    ``(s - s_clean) / (s_anomalous - s_clean)``; images with ``s_anomalous <= s_clean`` are
    skipped. Good maps give a high insertion AUC and a low deletion AUC (both in ~[0, 1]).

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
    area = (2 * gt.flatten(1).sum(1)).clamp_min(1)
    rank = maps.flatten(1).argsort(1, descending=True).argsort(1)  # 0 = most salient
    fractions = torch.linspace(0, 1, steps + 1)
    batch = [clean, anomalous]
    for t in fractions:  # one batch for every curve point: a single scoring call
        sel = (rank < (t * area)[:, None]).view_as(clean)
        batch += [torch.where(sel, anomalous, clean), torch.where(sel, clean, anomalous)]
    scores = score_fn(torch.cat(batch)).double().view(len(batch), -1)
    s0, s1 = scores[0], scores[1]
    ok = s1 > s0
    if not bool(ok.any()):
        return {"insertion_auc": float("nan"), "deletion_auc": float("nan"), "n": 0}
    ins, dele = list(scores[2::2]), list(scores[3::2])
    span = (s1 - s0).clamp_min(1e-12)
    norm = [(torch.stack(c, 1) - s0[:, None]) / span[:, None] for c in (ins, dele)]
    auc = [np.trapezoid(c[ok].numpy(), dx=1.0 / steps, axis=1).mean() for c in norm]
    return {"insertion_auc": float(auc[0]), "deletion_auc": float(auc[1]), "n": int(ok.sum())}

"""Localisation and explanation metrics for pixel maps (plain functions, batched).

Names follow the literature:

- **pixel AUROC**: area under the ROC curve of map values vs ground-truth pixels, pooled over
  all (optionally foreground) pixels of the batch (as in MVTec AD / anomalib's pixel AUROC).
- **IoU** (Jaccard index) and **Dice** (F1 / Sorensen-Dice) of binary masks, per image.
- **Pointing Game** (Zhang et al., ECCV 2016): a hit when the map's maximum falls inside the
  ground truth (optionally dilated by ``tolerance`` pixels; the original used 15 px at 224 px).
- **Top-k intersection** (Theiner et al. 2022, as in Quantus ``TopKIntersection``): the share
  of the ``k`` highest-ranked pixels that lie inside the ground truth.
- **Insertion / Deletion AUC** (Petsiuk et al., RISE, BMVC 2018), adapted to a scalar anomaly
  score and a *healthy substrate*: pixels are moved, most salient first, between the image and
  its healthy version (the detector's reconstruction, not black, since a black patch is itself
  anomalous). Deletion replaces image pixels by the substrate (a good map makes the score fall
  fast: low AUC); insertion starts from the substrate and restores image pixels (a good map
  makes the score rise fast: high AUC). Curves are normalised per image to
  ``(s - s_substrate) / (s_image - s_substrate)`` so that both start/end at 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

__all__ = [
    "pixel_auroc",
    "iou",
    "dice",
    "pointing_game",
    "top_k_intersection",
    "insertion_deletion",
]


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must both be [B, 1, H, W] of one shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if b.dtype != torch.bool:
        raise ValueError(f"`{names[1]}` must be a bool mask, got {b.dtype}")


def pixel_auroc(
    scores: torch.Tensor, gt: torch.Tensor, region: torch.Tensor | None = None
) -> float:
    """Pooled pixel AUROC (Mann-Whitney U with average ranks for ties).

    Args:
        scores: ``[B, 1, H, W]`` float maps (higher = more anomalous).
        gt: ``[B, 1, H, W]`` bool ground truth.
        region: Optional ``[B, 1, H, W]`` bool; only these pixels count (e.g. foreground).

    Returns:
        AUROC in ``[0, 1]``; ``nan`` if only one class is present.
    """
    _check_pair(scores, gt, ("scores", "gt"))
    keep = torch.ones_like(gt) if region is None else region
    s = scores[keep].double().numpy()
    y = gt[keep].numpy()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _overlap(
    pred: torch.Tensor, gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_pair(pred, gt, ("pred", "gt"))
    if pred.dtype != torch.bool:
        raise ValueError(f"`pred` must be a bool mask, got {pred.dtype}")
    inter = (pred & gt).flatten(1).sum(1).double()
    return inter, pred.flatten(1).sum(1).double(), gt.flatten(1).sum(1).double()


def iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image IoU ``|P & G| / |P | G|``, bool ``[B, 1, H, W]`` -> ``[B]`` (1 if both empty)."""
    inter, p, g = _overlap(pred, gt)
    union = p + g - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).float()


def dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image Dice ``2|P & G| / (|P| + |G|)`` ``[B, 1, H, W]`` -> ``[B]`` (1 if both empty)."""
    inter, p, g = _overlap(pred, gt)
    total = p + g
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total)).float()


def pointing_game(maps: torch.Tensor, gt: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Pointing Game hits ``[B]`` bool: the (first) maximum of each map lies in ``gt``.

    Args:
        maps: ``[B, 1, H, W]`` float maps.
        gt: ``[B, 1, H, W]`` bool ground truth (images with empty ``gt`` should be excluded).
        tolerance: Dilate ``gt`` by this many pixels (square neighbourhood) first.
    """
    _check_pair(maps, gt, ("maps", "gt"))
    if tolerance < 0:
        raise ValueError(f"`tolerance` must be >= 0, got {tolerance}")
    if tolerance:
        gt = F.max_pool2d(gt.float(), 2 * tolerance + 1, stride=1, padding=tolerance) > 0
    top = maps.flatten(1).argmax(1)
    return gt.flatten(1).gather(1, top[:, None])[:, 0]


def top_k_intersection(maps: torch.Tensor, gt: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Share of the ``k`` top-ranked pixels inside ``gt`` -> ``[B]`` in ``[0, 1]``.

    Args:
        maps: ``[B, 1, H, W]`` float maps.
        gt: ``[B, 1, H, W]`` bool ground truth.
        k: Pixels per image; ``None`` uses ``|gt|`` of each image (then the score is also the
            recall at ``|gt|``, 1 for a perfect ranking).
    """
    _check_pair(maps, gt, ("maps", "gt"))
    n = maps[0].numel()
    if k is not None and not 1 <= k <= n:
        raise ValueError(f"`k` must be in [1, {n}], got {k}")
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    hits = gt.flatten(1).gather(1, order).double().cumsum(1)
    ks = gt.flatten(1).sum(1).clamp_min(1) if k is None else torch.full((len(maps),), k)
    return (hits.gather(1, (ks - 1)[:, None])[:, 0] / ks).float()


def insertion_deletion(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    substrate: torch.Tensor,
    saliency: torch.Tensor,
    *,
    region: torch.Tensor | None = None,
    steps: int = 16,
    max_fraction: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Insertion and deletion AUCs of a saliency map for a scalar anomaly score.

    Args:
        score_fn: ``[B, C, H, W] -> [B]`` anomaly score (higher = more anomalous).
        images: ``[B, C, H, W]`` images.
        substrate: ``[B, C, H, W]`` healthy versions (e.g. the detector's reconstruction).
        saliency: ``[B, 1, H, W]`` maps ranking pixels (most salient first).
        region: Optional ``[B, 1, H, W]`` bool pixels eligible to move (default all).
        steps: Curve points after the start (positive).
        max_fraction: Largest share of eligible pixels moved, in ``(0, 1]``; the AUC is taken
            over ``[0, max_fraction]`` rescaled to ``[0, 1]``.

    Returns:
        dict with ``insertion``, ``deletion`` ``[B]`` normalised AUCs (``nan`` where
        ``|s_image - s_substrate| < 1e-8``) and ``curves_ins``/``curves_del`` ``[B, steps+1]``
        raw scores.
    """
    if steps < 1 or not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"need steps >= 1 and max_fraction in (0, 1], got {steps}, {max_fraction}")
    if images.shape != substrate.shape or saliency.shape[0] != images.shape[0]:
        raise ValueError(
            f"shapes differ: {tuple(images.shape)}, {tuple(substrate.shape)}, "
            f"{tuple(saliency.shape)}"
        )
    region = torch.ones_like(saliency, dtype=torch.bool) if region is None else region
    s = torch.where(region, saliency, torch.full_like(saliency, -torch.inf)).flatten(1)
    rank = s.argsort(dim=1, descending=True, stable=True).argsort(dim=1).view_as(saliency)
    n_eligible = region.flatten(1).sum(1).double()
    ins, dele = [], []
    for t in np.linspace(0.0, max_fraction, steps + 1):
        moved = (rank < (t * n_eligible).round()[:, None, None, None]) & region
        dele.append(score_fn(torch.where(moved, substrate, images)))
        ins.append(score_fn(torch.where(moved, images, substrate)))
    c_ins, c_del = torch.stack(ins, 1).double(), torch.stack(dele, 1).double()
    s_img, s_sub = c_del[:, :1], c_ins[:, :1]
    span = s_img - s_sub
    ok = span.abs() >= 1e-8
    x = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    auc = lambda c: torch.trapezoid(((c - s_sub) / torch.where(ok, span, 1.0)), x)  # noqa: E731
    nan = torch.full_like(span[:, 0], float("nan"))
    return {
        "insertion": torch.where(ok[:, 0], auc(c_ins), nan).float(),
        "deletion": torch.where(ok[:, 0], auc(c_del), nan).float(),
        "curves_ins": c_ins.float(),
        "curves_del": c_del.float(),
    }

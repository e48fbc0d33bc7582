"""Localisation and explanation metrics for pixel maps (plain functions, batched).

Names follow the literature:

- **pixel AUROC / AUPRC**: area under the ROC / precision-recall curve of map values vs
  ground-truth pixels, pooled over all (optionally foreground) pixels of the batch (as in
  MVTec AD / anomalib's pixel AUROC), computed by scikit-learn.
- **IoU** (Jaccard index) and **Dice** (F1 / Sorensen-Dice) of binary masks, per image. One
  empty-mask rule: an image whose predicted and true masks are both empty scores 1 (nothing to
  find, nothing found); reports average over images with a non-empty ground truth.
- **Pointing Game** (Zhang et al., ECCV 2016): a hit when the map's maximum falls inside the
  ground truth (optionally dilated by ``tolerance`` pixels; the original used 15 px at 224 px).
- **Top-k intersection** (Theiner et al. 2022, as in Quantus ``TopKIntersection``): the share
  of the ``k`` highest-ranked pixels that lie inside the ground truth.
- **Insertion / Deletion AUC** (Petsiuk et al., RISE, BMVC 2018), adapted to a scalar anomaly
  score and a *healthy substrate*: pixels are moved, most salient first, between the image and
  its healthy version (the detector's reconstruction, not black, since a black patch is itself
  anomalous). Deletion replaces image pixels by the substrate (a good map makes the score fall
  fast: low AUC); insertion starts from the substrate and restores image pixels (a good map
  makes the score rise fast: high AUC). Curves are normalised per image to the share of the
  score change reached, ``(s - s_substrate) / (s_image - s_substrate)`` clipped to ``[0, 1]``
  (an anomaly score is unbounded: a partly restored image can score beyond the full image),
  so both AUCs lie in ``[0, 1]``; images no more anomalous than their substrate are ``nan``.

Every report (benchmarks, explanation benchmark, explainer fitting) uses these definitions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "pixel_auroc",
    "pixel_auprc",
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


def _pooled_pixels(
    scores: torch.Tensor,
    gt: torch.Tensor,
    region: torch.Tensor | None,
    max_pixels: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Pixel values and labels pooled over the batch (``None`` if one class is missing)."""
    _check_pair(scores, gt, ("scores", "gt"))
    keep = torch.ones_like(gt) if region is None else region
    s, y = scores[keep].double(), gt[keep]
    if max_pixels is not None and s.numel() > max_pixels:
        idx = torch.randperm(s.numel(), generator=torch.Generator().manual_seed(seed))
        s, y = s[idx[:max_pixels]], y[idx[:max_pixels]]
    if bool(y.all()) or not bool(y.any()):
        return None
    return np.nan_to_num(s.numpy(), nan=0.0), y.numpy()


def pixel_auroc(
    scores: torch.Tensor,
    gt: torch.Tensor,
    region: torch.Tensor | None = None,
    *,
    max_pixels: int | None = None,
    seed: int = 0,
) -> float:
    """Pooled pixel AUROC (scikit-learn ``roc_auc_score``; ties count one half).

    Args:
        scores: ``[B, 1, H, W]`` float maps (higher = more anomalous; NaN ranks as 0).
        gt: ``[B, 1, H, W]`` bool ground truth.
        region: Optional ``[B, 1, H, W]`` bool; only these pixels count (e.g. foreground).
        max_pixels: Past this many pixels, a fixed-seed random subsample is used.
        seed: Seed of that subsample.

    Returns:
        AUROC in ``[0, 1]``; ``nan`` if only one class is present.
    """
    pooled = _pooled_pixels(scores, gt, region, max_pixels, seed)
    return float("nan") if pooled is None else float(roc_auc_score(pooled[1], pooled[0]))


def pixel_auprc(
    scores: torch.Tensor,
    gt: torch.Tensor,
    region: torch.Tensor | None = None,
    *,
    max_pixels: int | None = None,
    seed: int = 0,
) -> float:
    """Pooled pixel average precision (scikit-learn ``average_precision_score``).

    Arguments as :func:`pixel_auroc`. Returns a value in ``[0, 1]``; ``nan`` if only one
    class is present.
    """
    pooled = _pooled_pixels(scores, gt, region, max_pixels, seed)
    return float("nan") if pooled is None else float(average_precision_score(pooled[1], pooled[0]))


def _overlap(
    pred: torch.Tensor, gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if pred.ndim < 4 or pred.shape[-3:] != gt.shape[-3:]:
        raise ValueError(
            "`pred` and `gt` must be [..., B, 1, H, W] masks of one image shape, got "
            f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    for name, t in (("pred", pred), ("gt", gt)):
        if t.dtype != torch.bool:
            raise ValueError(f"`{name}` must be a bool mask, got {t.dtype}")
    inter = (pred & gt).flatten(-3).sum(-1).double()
    p = pred.flatten(-3).sum(-1).double().expand_as(inter)
    return inter, p, gt.flatten(-3).sum(-1).double().expand_as(inter)


def iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image IoU ``|P & G| / |P | G|``: bool ``[..., B, 1, H, W]`` -> ``[..., B]``.

    Leading dimensions broadcast (e.g. ``[T, B, 1, H, W]`` masks at ``T`` thresholds against
    ``[1, B, 1, H, W]`` ground truth). Both masks empty: 1.
    """
    inter, p, g = _overlap(pred, gt)
    union = p + g - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).float()


def dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image Dice ``2|P & G| / (|P| + |G|)``: bool ``[..., B, 1, H, W]`` -> ``[..., B]``.

    Leading dimensions broadcast as in :func:`iou`. Both masks empty: 1.
    """
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
    n_pixels: torch.Tensor | None = None,
    steps: int = 8,
) -> dict[str, torch.Tensor]:
    """Insertion and deletion AUCs of a saliency map for a scalar anomaly score.

    Pixels of ``region`` are ranked by ``saliency`` (most salient first, ties by position).
    At ``t = 0, 1/steps, ..., 1`` the first ``round(t * n_pixels)`` are moved: **deleted**
    (image pixels replaced by the substrate's) and **inserted** (substrate pixels replaced by
    the image's). All curve points are scored in one ``score_fn`` call.

    Args:
        score_fn: ``[B', C, H, W] -> [B']`` anomaly score (higher = more anomalous).
        images: ``[B, C, H, W]`` images.
        substrate: ``[B, C, H, W]`` healthy versions (the clean original, or the detector's
            reconstruction).
        saliency: ``[B, 1, H, W]`` maps ranking pixels.
        region: Optional ``[B, 1, H, W]`` bool pixels eligible to move (default all).
        n_pixels: Optional ``[B]`` pixels moved at ``t = 1`` (default: all of ``region``;
            capped at it).
        steps: Curve points after the start (positive).

    Returns:
        dict with ``insertion``, ``deletion`` ``[B]`` AUCs in ``[0, 1]`` (``nan`` where the
        image does not score above its substrate), ``curves_ins`` / ``curves_del``
        ``[B, steps + 1]`` raw scores and ``s_image`` / ``s_substrate`` ``[B]``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}")
    b = images.shape[0]
    if images.shape != substrate.shape or saliency.shape != (b, 1, *images.shape[2:]):
        raise ValueError(
            "`images`, `substrate` [B, C, H, W] and `saliency` [B, 1, H, W] must agree, got "
            f"{tuple(images.shape)}, {tuple(substrate.shape)} and {tuple(saliency.shape)}"
        )
    region = torch.ones_like(saliency, dtype=torch.bool) if region is None else region
    s = torch.where(region, saliency.double(), torch.full_like(saliency, -torch.inf, dtype=float))
    order = s.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1).view_as(saliency)
    n_eligible = region.flatten(1).sum(1).double()
    n = n_eligible if n_pixels is None else torch.minimum(n_pixels.double(), n_eligible)
    batch = [images, substrate]
    for t in np.linspace(0.0, 1.0, steps + 1).tolist():  # Python floats: no numpy operands
        moved = (rank < (n * t).round()[:, None, None, None]) & region
        batch += [torch.where(moved, images, substrate), torch.where(moved, substrate, images)]
    scores = score_fn(torch.cat(batch)).double().view(len(batch), b)
    s_img, s_sub = scores[0], scores[1]
    c_ins, c_del = scores[2::2].T, scores[3::2].T
    span = s_img - s_sub
    ok = torch.isfinite(span) & (span > 1e-8)
    x = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)

    def auc(curve: torch.Tensor) -> torch.Tensor:
        share = ((curve - s_sub[:, None]) / torch.where(ok, span, 1.0)[:, None]).clamp(0, 1)
        return torch.where(ok, torch.trapezoid(share, x), torch.nan).float()

    return {
        "insertion": auc(c_ins),
        "deletion": auc(c_del),
        "curves_ins": c_ins.float(),
        "curves_del": c_del.float(),
        "s_image": s_img.float(),
        "s_substrate": s_sub.float(),
    }

"""Combine per-pixel evidence maps into one heatmap and a mask; choose ``alpha``/``tau``.

Every component map is first brought to ``[0, 1)`` with a scale calibrated on *real* images
(:func:`calibrated_unit`, the same squashing the calibrator applies to the anomaly map):
``u = m / (m + s)`` with ``s`` the 99.5th percentile of ``m`` on real foreground pixels, so
``u = 0.5`` means "as extreme as the 0.5% most extreme real pixels". A per-image max
normalisation is deliberately avoided: it would give every clean image a bright spot.

The heatmap is the convex combination ``H = sum_i alpha_i u_i`` (``alpha`` on the simplex, so
``H`` is in ``[0, 1]`` without a further normalisation) and the mask is ``H > tau``.
"""

from __future__ import annotations

import itertools

import torch

from safegen_guard import metrics

__all__ = ["calibrated_unit", "combine_maps", "simplex_grid", "fit_combination", "mean_dice"]


def calibrated_unit(maps: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``m / (m + s)``: non-negative maps ``[B, 1, H, W]`` -> ``[0, 1)``; ``s > 0``."""
    scale = torch.as_tensor(scale, dtype=maps.dtype)
    if bool((scale <= 0).any()):
        raise ValueError(f"`scale` must be > 0, got {scale.tolist()}")
    if bool((maps < 0).any()):
        raise ValueError("`maps` must be non-negative")
    return maps / (maps + scale)


def combine_maps(maps: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Convex combination of ``K`` maps.

    Args:
        maps: ``[B, K, H, W]`` maps in ``[0, 1]``.
        alpha: ``[K]`` non-negative weights summing to 1.

    Returns:
        ``[B, 1, H, W]`` heatmap in ``[0, 1]``.
    """
    alpha = torch.as_tensor(alpha, dtype=maps.dtype)
    if maps.ndim != 4 or alpha.shape != (maps.shape[1],):
        raise ValueError(
            f"`maps` [B, K, H, W] and `alpha` [K] must agree, got {tuple(maps.shape)} and "
            f"{tuple(alpha.shape)}"
        )
    if bool((alpha < 0).any()) or abs(float(alpha.sum()) - 1.0) > 1e-4:
        raise ValueError(f"`alpha` must be non-negative and sum to 1, got {alpha.tolist()}")
    return torch.einsum("bkhw,k->bhw", maps, alpha)[:, None]


def simplex_grid(k: int, step: float = 0.1) -> torch.Tensor:
    """Weight vectors on the ``k``-simplex with coordinates multiple of ``step`` ``[G, k]``."""
    n = round(1.0 / step)
    if k < 1 or abs(n * step - 1.0) > 1e-9:
        raise ValueError(f"need k >= 1 and 1/step an integer, got k={k}, step={step}")
    rows = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
    return torch.tensor(rows, dtype=torch.float32) / n


def mean_dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """:func:`safegen_guard.metrics.dice` of bool masks ``[..., B, 1, H, W]`` averaged over ``B``.

    Returns:
        ``[...]`` mean Dice (an image where both masks are empty scores 1).
    """
    return metrics.dice(pred, gt).mean(-1)


def fit_combination(
    maps: torch.Tensor,
    gt: torch.Tensor,
    *,
    alphas: torch.Tensor | None = None,
    taus: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float, float]:
    """Choose ``alpha`` and ``tau`` maximising mean Dice on validation images.

    Args:
        maps: ``[B, K, H, W]`` component maps in ``[0, 1]`` of artifact-injected *validation*
            images (never test images).
        gt: ``[B, 1, H, W]`` bool ground-truth artifact masks.
        alphas: ``[G, K]`` candidate weights (default :func:`simplex_grid` with step 0.1).
        taus: ``[T]`` candidate thresholds (default 0.05, 0.0625, ..., 0.95).

    Returns:
        ``(alpha [K], tau, dice)``: the best weights, threshold and their validation Dice.
    """
    if maps.shape[0] != gt.shape[0] or gt.dtype != torch.bool:
        raise ValueError(
            f"`gt` must be bool with {maps.shape[0]} images, got {gt.dtype} {tuple(gt.shape)}"
        )
    alphas = simplex_grid(maps.shape[1]) if alphas is None else alphas
    taus = torch.arange(0.05, 0.951, 0.0125) if taus is None else taus
    best = (-1.0, 0, 0)
    for i, a in enumerate(alphas):
        h = combine_maps(maps, a)
        dice = mean_dice(h[None] > taus[:, None, None, None, None], gt[None])
        j = int(dice.argmax())
        if float(dice[j]) > best[0] + 1e-9:
            best = (float(dice[j]), i, j)
    return alphas[best[1]].clone(), float(taus[best[2]]), best[0]

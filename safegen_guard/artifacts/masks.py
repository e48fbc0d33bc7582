"""Foreground estimation, artifact support regions and the ground-truth mask rule.

Every length here is expressed at a 64-pixel reference and scaled with the image side ``H``
(``scale(H) = max(1, round(H / 64))``), so a 32x32 and a 256x256 slice get comparable masks.

Ground-truth mask rule (the same for every kind, see :func:`change_mask`):

1. ``d = |corrupted - clean|`` (after clamping the corrupted image to [0, 1]);
2. ``d`` is averaged with a ``k x k`` box filter, ``k = 2 * scale(H) + 1`` (3 at 64 px, 5 at
   128 px), so texture changes such as added noise count as a change even where a single
   pixel's difference happens to be small;
3. ``mask = (box(d) > 0.02) & support``, where 0.02 on the [0, 1] scale is about a visible
   change, and ``support`` is the artifact's own region dilated by ``scale(H)`` pixels: the
   patch for local kinds, the foreground (head / body) for global kinds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from safegen_guard.artifacts import _random
from safegen_guard.detector import ops

__all__ = [
    "CHANGE_THRESHOLD",
    "change_mask",
    "dilate",
    "erode",
    "estimate_foreground",
    "sample_ellipse",
    "size_scale",
]

CHANGE_THRESHOLD = 0.02
"""Minimum box-averaged absolute change (on the [0, 1] scale) for a pixel to be in the mask."""


def size_scale(side: int) -> int:
    """Return the pixel scale factor ``max(1, round(side / 64))`` used for all lengths."""
    return max(1, round(side / 64))


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a bool mask ``[B, 1, H, W]`` with a ``(2r+1)`` square; ``radius=0`` is a copy."""
    if radius <= 0:
        return mask.clone()
    k = 2 * radius + 1
    return F.max_pool2d(mask.float(), k, stride=1, padding=radius) > 0.5


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Erode a bool mask ``[B, 1, H, W]`` with a ``(2r+1)`` square; ``radius=0`` is a copy.

    Pixels beyond the frame count as inside (the detector's rule,
    :func:`safegen_guard.detector.ops.erode`, which this calls).
    """
    return mask.clone() if radius <= 0 else ops.erode(mask, radius)


def estimate_foreground(images: torch.Tensor) -> torch.Tensor:
    """Estimate the head / body region of each image, where artifacts may act.

    Rule: the detector's foreground (:func:`safegen_guard.detector.ops.estimate_foreground`,
    the one intensity rule of the package), holes filled (ventricles, lungs), dilated by
    ``2 * scale(H)`` pixels. An image with no foreground gets the whole frame.

    Args:
        images: ``[B, 1, H, W]`` float in [0, 1].

    Returns:
        ``[B, 1, H, W]`` bool on the device of ``images``.
    """
    raw = ops.estimate_foreground(images.float()).cpu().numpy()
    filled = np.stack([ndimage.binary_fill_holes(m[0])[None] for m in raw])
    fg = torch.from_numpy(filled).to(images.device)
    fg = dilate(fg, 2 * size_scale(images.shape[-1]))
    empty = ~fg.flatten(1).any(1)
    fg[empty] = True
    return fg


def _sample_centres(
    foreground: torch.Tensor, margin: int, generator: torch.Generator
) -> torch.Tensor:
    """Draw one pixel index per image, inside the foreground eroded by ``margin`` if possible."""
    b = foreground.shape[0]
    inner = erode(foreground, margin).flatten(1)
    fg = foreground.flatten(1)
    weights = torch.where(inner.any(1, keepdim=True), inner, fg).float()
    weights[~weights.bool().any(1)] = 1.0
    weights = weights.to(generator.device)
    return torch.multinomial(weights, 1, generator=generator).view(b).to(foreground.device)


def sample_ellipse(
    foreground: torch.Tensor,
    generator: torch.Generator,
    *,
    min_frac: float = 0.05,
    max_frac: float = 0.125,
    feather: float = 0.25,
) -> torch.Tensor:
    """Draw one random soft ellipse per image, centred inside the foreground.

    Semi-axes are drawn in ``[min_frac, max_frac] * H`` (so the diameter is 10-25% of the frame
    side by default), the orientation uniformly, and the centre uniformly among foreground
    pixels at least ``min_frac * H`` from its border (any foreground pixel if none is).

    Args:
        foreground: ``[B, 1, H, W]`` bool.
        generator: Source of randomness.
        min_frac: Smallest semi-axis as a fraction of ``H``.
        max_frac: Largest semi-axis as a fraction of ``H``.
        feather: Width of the linear edge ramp as a fraction of the ellipse radius.

    Returns:
        ``[B, 1, H, W]`` float32 weights in [0, 1]: 1 in the core, a linear ramp to 0 at the
        ellipse border, 0 outside the ellipse and outside the foreground.
    """
    b, _, h, w = foreground.shape
    dev = foreground.device
    idx = _sample_centres(foreground, max(1, round(min_frac * h)), generator)
    cy = (idx // w).float().view(b, 1, 1, 1)
    cx = (idx % w).float().view(b, 1, 1, 1)
    axes = _random.uniform(generator, (2, b), min_frac * h, max_frac * h, dev)
    theta = _random.uniform(generator, (b,), 0.0, float(np.pi), dev).view(b, 1, 1, 1)
    yy = torch.arange(h, device=dev, dtype=torch.float32).view(1, 1, h, 1)
    xx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, 1, w)
    dy, dx = yy - cy, xx - cx
    u = dx * torch.cos(theta) + dy * torch.sin(theta)
    v = -dx * torch.sin(theta) + dy * torch.cos(theta)
    rho = torch.sqrt((u / axes[0].view(b, 1, 1, 1)) ** 2 + (v / axes[1].view(b, 1, 1, 1)) ** 2)
    weights = ((1.0 - rho) / feather).clamp(0.0, 1.0)
    return weights * foreground.float()


def change_mask(
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    support: torch.Tensor,
    threshold: float = CHANGE_THRESHOLD,
) -> torch.Tensor:
    """Ground-truth mask: pixels the artifact meaningfully changed, inside its support.

    Args:
        clean: ``[B, 1, H, W]`` float in [0, 1], the input images.
        corrupted: ``[B, 1, H, W]`` float in [0, 1], the images after injection.
        support: ``[B, 1, H, W]`` bool, where the artifact acts (patch or foreground); it is
            dilated by ``scale(H)`` pixels before use.
        threshold: Minimum box-averaged absolute change.

    Returns:
        ``[B, 1, H, W]`` bool.
    """
    r = size_scale(clean.shape[-1])
    k = 2 * r + 1
    diff = (corrupted.float() - clean.float()).abs()
    smooth = F.avg_pool2d(diff, k, stride=1, padding=r, count_include_pad=False)
    return (smooth > threshold) & dilate(support, r)

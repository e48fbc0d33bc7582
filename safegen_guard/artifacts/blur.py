"""Linear motion blur at a random angle, in a random patch or over the whole frame.

Severity ``s`` maps to the blur length ``L = 0.13 * s * H`` pixels (at least 2): 3.3 px at
``"mild"`` and 8.3 px at ``"strong"`` for a 64-pixel slice (6.7 / 16.6 px at 128). The real data's
resolution loss (zoom 0.7-1.0, isotropic, <= ~1.5 px) is far shorter and not directional.
``blur_local`` uses ``L = 0.2 * s * H`` (5.1 / 12.8 px at 64): a short blur confined to a small
patch would otherwise change too little to be a meaningful anomaly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from safegen_guard.artifacts import _random, masks
from safegen_guard.artifacts.registry import register_artifact

__all__ = ["blur_global", "blur_local", "motion_blur", "motion_kernels", "blur_length"]


def blur_length(severity: float, side: int, factor: float = 0.13) -> float:
    """Motion blur length ``max(2, factor * severity * side)`` in pixels."""
    return max(2.0, factor * severity * side)


def motion_kernels(length: float, angles: torch.Tensor) -> torch.Tensor:
    """Build one normalised line kernel per angle.

    Args:
        length: Line length in pixels (> 0).
        angles: ``[B]`` angles in radians.

    Returns:
        ``[B, 1, K, K]`` float32 kernels summing to 1, ``K`` odd and ``>= length``.
    """
    size = 2 * math.ceil(length / 2) + 1
    centre = size // 2
    t = torch.linspace(-0.5, 0.5, 4 * size, device=angles.device) * length
    px = centre + t.view(1, -1) * torch.cos(angles).view(-1, 1)  # [B, n]
    py = centre + t.view(1, -1) * torch.sin(angles).view(-1, 1)
    grid = torch.arange(size, device=angles.device, dtype=torch.float32)
    wx = (1 - (px.unsqueeze(-1) - grid).abs()).clamp(min=0)  # [B, n, K] bilinear splat
    wy = (1 - (py.unsqueeze(-1) - grid).abs()).clamp(min=0)
    kernel = torch.einsum("bny,bnx->byx", wy, wx)
    kernel = kernel / kernel.sum(dim=(1, 2), keepdim=True)
    return kernel.unsqueeze(1)


def motion_blur(images: torch.Tensor, length: float, angles: torch.Tensor) -> torch.Tensor:
    """Blur each image ``[B, 1, H, W]`` along its own angle (reflect padding, one grouped conv)."""
    b = images.shape[0]
    kernels = motion_kernels(length, angles.to(images.device))
    pad = kernels.shape[-1] // 2
    x = F.pad(images.view(1, b, *images.shape[-2:]), (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(x, kernels, groups=b).view_as(images)


def _blur(
    images: torch.Tensor, severity: float, generator: torch.Generator, factor: float
) -> torch.Tensor:
    angles = _random.uniform(generator, (images.shape[0],), 0.0, math.pi, images.device)
    return motion_blur(images, blur_length(severity, images.shape[-1], factor), angles)


@register_artifact("blur_local", local=True, modality="any")
def blur_local(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Motion blur (length 0.2 * s * H, random angle) inside a random foreground ellipse.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool.

    Returns:
        Corrupted images ``[B, 1, H, W]`` and the patch support (bool).
    """
    weights = masks.sample_ellipse(foreground, generator, min_frac=0.08, max_frac=0.15)
    blurred = _blur(images, severity, generator, 0.2)
    return images + weights * (blurred - images), weights > 0


@register_artifact("blur_global", local=False, modality="any")
def blur_global(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """Motion blur (length 0.13 * s * H, random angle) of the whole image.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool (unused).

    Returns:
        Corrupted images ``[B, 1, H, W]`` and ``None`` (support = foreground).
    """
    return _blur(images, severity, generator, 0.13), None

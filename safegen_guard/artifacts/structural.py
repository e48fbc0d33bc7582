"""Structural artifacts: tissue dropout and GAN-like checkerboard patterns.

Severity mappings (``s`` in (0, 1]):

* ``dropout``: inside a random foreground ellipse (semi-axes 8-15% of the side), tissue is
  blended towards a background-like fill (background median + Gaussian noise with the
  background's std) with weight ``s`` (60% of the tissue kept at ``"mild"``, none at
  ``"strong"``).
* ``checkerboard`` / ``checkerboard_global``: an additive +-``0.12 * s`` pattern (0.048 mild,
  0.12 strong) of period 2 or 4 pixels (random, with random phase), like the uneven overlap of
  transposed convolutions; in a random foreground ellipse (semi-axes 8-15% of the side) or over
  the whole foreground.
"""

from __future__ import annotations

import torch

from safegen_guard.artifacts import _random, masks
from safegen_guard.artifacts.registry import register_artifact

__all__ = ["checkerboard", "checkerboard_global", "checkerboard_pattern", "dropout"]


def _background_stats(images: torch.Tensor, foreground: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-image median and std of the background ``[B, 1, 1, 1]`` (zeros if none)."""
    medians, stds = [], []
    for img, fg in zip(images, foreground):
        bg = img[~fg]
        medians.append(bg.median() if bg.numel() > 0 else img.new_zeros(()))
        stds.append(bg.std() if bg.numel() > 1 else img.new_zeros(()))
    shape = (-1, 1, 1, 1)
    return torch.stack(medians).view(shape), torch.stack(stds).view(shape)


@register_artifact("dropout", local=True, modality="any")
def dropout(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tissue dropout: a foreground ellipse blended (weight s) towards a background-like fill.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool.

    Returns:
        Corrupted images ``[B, 1, H, W]`` and the patch support (bool).
    """
    weights = masks.sample_ellipse(foreground, generator, min_frac=0.08, max_frac=0.15)
    level, spread = _background_stats(images, foreground)
    fill = level + spread * _random.normal(generator, tuple(images.shape), images.device)
    alpha = severity * weights
    return images * (1 - alpha) + alpha * fill.clamp(min=0), weights > 0


def checkerboard_pattern(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Draw a +-1 checkerboard per image, period 2 or 4 pixels, random phase.

    Args:
        shape: ``(B, 1, H, W)``.
        generator: Source of randomness.
        device: Device of the result.

    Returns:
        ``[B, 1, H, W]`` float32 with values -1 and +1.
    """
    b, _, h, w = shape
    half = 1 + _random.choice(generator, b, 2, device).view(b, 1, 1, 1)  # cell side 1 or 2 px
    shift = _random.choice(generator, 2 * b, 2, device).view(2, b, 1, 1, 1)
    yy = torch.arange(h, device=device).view(1, 1, h, 1) + shift[0]
    xx = torch.arange(w, device=device).view(1, 1, 1, w) + shift[1]
    parity = (
        torch.div(yy, half, rounding_mode="floor") + torch.div(xx, half, rounding_mode="floor")
    ) % 2
    return parity.float() * 2 - 1


@register_artifact("checkerboard", local=True, modality="any")
def checkerboard(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Checkerboard (period 2 or 4 px, amplitude 0.12 * s) in a random foreground ellipse.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool.

    Returns:
        Corrupted images ``[B, 1, H, W]`` and the patch support (bool).
    """
    weights = masks.sample_ellipse(foreground, generator, min_frac=0.08, max_frac=0.15)
    pattern = checkerboard_pattern(tuple(images.shape), generator, images.device)
    return images + 0.12 * severity * weights * pattern, weights > 0


@register_artifact("checkerboard_global", local=False, modality="any")
def checkerboard_global(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """Checkerboard (period 2 or 4 px, amplitude 0.12 * s) over the whole foreground.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool.

    Returns:
        Corrupted images ``[B, 1, H, W]`` and ``None`` (support = foreground).
    """
    pattern = checkerboard_pattern(tuple(images.shape), generator, images.device)
    return images + 0.12 * severity * foreground.float() * pattern, None

"""Additive Gaussian noise, in a random patch or over the whole frame.

Severity ``s`` maps to the noise standard deviation ``sigma = 0.15 * s`` on the [0, 1] scale:
0.06 at ``"mild"`` (clearly above the Rician noise of real scans, std up to ~0.035) and 0.15 at
``"strong"``.
"""

from __future__ import annotations

import torch

from safegen_guard.artifacts import _random, masks
from safegen_guard.artifacts.registry import register_artifact

__all__ = ["noise_global", "noise_local", "noise_sigma"]


def noise_sigma(severity: float) -> float:
    """Noise standard deviation (on [0, 1]) for a severity in (0, 1]."""
    return 0.15 * severity


@register_artifact("noise_local", local=True, modality="any")
def noise_local(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise (std 0.15 * s) inside a random ellipse (10-25% of the side) in the foreground.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool.

    Returns:
        Corrupted images ``[B, 1, H, W]`` (unclamped) and the patch support (bool).
    """
    weights = masks.sample_ellipse(foreground, generator)
    noise = _random.normal(generator, tuple(images.shape), images.device)
    return images + weights * noise_sigma(severity) * noise, weights > 0


@register_artifact("noise_global", local=False, modality="any")
def noise_global(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """Gaussian noise (std 0.15 * s) over the whole frame.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool (unused: the noise covers the frame).

    Returns:
        Corrupted images ``[B, 1, H, W]`` (unclamped) and ``None`` (support = foreground).
    """
    noise = _random.normal(generator, tuple(images.shape), images.device)
    return images + noise_sigma(severity) * noise, None

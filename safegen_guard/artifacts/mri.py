"""MRI artifacts: k-space spike (herringbone), Gibbs ringing, strong bias field.

Severity mappings (``s`` in (0, 1]):

* ``kspace_spike``: one spike in k-space whose image-domain stripe amplitude is
  ``a = 0.12 * s`` (0.048 mild, 0.12 strong), at a random frequency ``|k|`` in
  ``[0.12, 0.4] * H`` cycles per frame (stripe period 2.5-8 px), random direction and phase;
  the magnitude image ``|ifft(k-space)|`` is returned, as an MRI scanner would.
* ``gibbs``: k-space truncated to a disc keeping a fraction ``f = 0.75 - 0.45 * s`` of the
  half-width (0.57 mild, 0.30 strong), via MONAI ``GibbsNoise``.
* ``bias_field``: multiplicative field ``exp(A * g)``, ``g`` a random degree-3 Legendre
  polynomial scaled to ``max |g| = 1`` over the foreground, ``A = 0.6 * s`` (intensity factor up
  to x/0.79 mild, x/0.55 strong). The real data uses MONAI ``RandBiasField`` with coefficients
  up to 0.15, whose log-field half-range is ~0.1 (90th percentile) in the head.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import GibbsNoise
from numpy.polynomial import legendre

from safegen_guard.artifacts import _random
from safegen_guard.artifacts.registry import register_artifact

__all__ = ["bias_field", "gibbs", "kspace_spike"]


@register_artifact("kspace_spike", local=False, modality="mri")
def kspace_spike(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """One k-space spike: a herringbone stripe pattern (amplitude 0.12 * s) over the frame.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool (unused).

    Returns:
        Corrupted magnitude images ``[B, 1, H, W]`` and ``None`` (support = foreground).
    """
    b, _, h, w = images.shape
    dev = images.device
    radius = _random.uniform(generator, (b,), 0.12 * h, 0.4 * h, dev)
    direction = _random.uniform(generator, (b,), 0.0, 2 * math.pi, dev)
    phase = _random.uniform(generator, (b,), 0.0, 2 * math.pi, dev)
    ky = torch.round(radius * torch.sin(direction)).long() % h
    kx = torch.round(radius * torch.cos(direction)).long() % w
    kspace = torch.fft.fft2(images.to(torch.float64))
    amplitude = 0.12 * severity * h * w
    spike = amplitude * torch.polar(torch.ones(b, dtype=torch.float64, device=dev), phase.double())
    kspace[torch.arange(b, device=dev), 0, ky, kx] += spike
    return torch.fft.ifft2(kspace).abs().float(), None


def gibbs_alpha(severity: float) -> float:
    """MONAI ``GibbsNoise`` alpha keeping a fraction ``0.75 - 0.45 * s`` of the k-space radius."""
    kept = 0.75 - 0.45 * severity
    return 1.0 - kept / math.sqrt(2.0)


@register_artifact("gibbs", local=False, modality="mri", stochastic=False)
def gibbs(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """Gibbs ringing: k-space truncated to a disc (MONAI ``GibbsNoise``); deterministic.

    The batch is passed to MONAI as one ``[B, H, W]`` image with ``B`` channels, which is
    exact here because ``GibbsNoise`` transforms each channel independently.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Unused (the truncation is deterministic).
        foreground: ``[B, 1, H, W]`` bool (unused).

    Returns:
        Corrupted images ``[B, 1, H, W]`` and ``None`` (support = foreground).
    """
    out = GibbsNoise(alpha=gibbs_alpha(severity))(images[:, 0])
    return torch.as_tensor(out, dtype=torch.float32, device=images.device).unsqueeze(1), None


def _legendre_fields(coeffs: np.ndarray, side: int) -> np.ndarray:
    """Evaluate ``[B, 4, 4]`` 2-D Legendre coefficients on a ``side x side`` grid in [-1, 1]."""
    grid = np.linspace(-1.0, 1.0, side)
    return np.stack([legendre.leggrid2d(grid, grid, c) for c in coeffs])


@register_artifact("bias_field", local=False, modality="mri")
def bias_field(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """Smooth multiplicative bias field ``exp(A * g)``, ``A = 0.6 * s``, ``g`` degree-3 Legendre.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness.
        foreground: ``[B, 1, H, W]`` bool; ``g`` is centred and scaled over it.

    Returns:
        Corrupted images ``[B, 1, H, W]`` and ``None`` (support = foreground).
    """
    b, _, h, _ = images.shape
    coeffs = _random.normal(generator, (b, 4, 4), torch.device("cpu")).double().numpy()
    coeffs[:, 0, 0] = 0.0
    coeffs[:, 2:, 2:] = 0.0  # keep total degree <= 3 (drops x^2y^2, x^2y^3, ...)
    coeffs[:, 1, 3] = coeffs[:, 3, 1] = 0.0
    g = torch.from_numpy(_legendre_fields(coeffs, h)).float().unsqueeze(1).to(images.device)
    fg = foreground.float()
    mean = (g * fg).sum((2, 3), keepdim=True) / fg.sum((2, 3), keepdim=True).clamp(min=1)
    g = g - mean
    peak = (g.abs() * fg).amax((2, 3), keepdim=True).clamp(min=1e-6)
    return images * torch.exp(0.6 * severity * g / peak), None

"""Copy-preserving perturbations: what does not make a copy of a training scan less of a copy.

A generator that memorised a training slice rarely returns it bit for bit: its sample carries
fresh noise, may sit a few pixels off, be rotated by a few degrees, mirrored, or have a slightly
different contrast. :func:`perturb_copies` draws exactly these changes; the copy encoder is
trained to be invariant to them and the benchmark's near-copy set is made with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from safegen_guard.artifacts._random import uniform
from safegen_guard.data.acquisition import AcquisitionConfig

__all__ = ["CopyPerturbation", "perturb_copies", "rotate_shift"]

_NOISE = AcquisitionConfig().noise_std_range


@dataclass(frozen=True)
class CopyPerturbation:
    """Ranges of the perturbations that keep a copy a copy.

    Attributes:
        max_shift: Largest translation per axis, in pixels (continuous, bilinear).
        max_rotation: Largest rotation in degrees.
        flip_prob: Probability of a left-right mirror.
        gamma_range: Gamma exponent range, drawn log-uniformly (intensity jitter).
        noise_std_range: Rician noise std as a fraction of the 99th percentile intensity;
            the default is the MRI acquisition range of
            :class:`~safegen_guard.data.acquisition.AcquisitionConfig` (0.01-0.035), which
            also covers the CT phantom's noise in its display window.
    """

    max_shift: float = 3.0
    max_rotation: float = 5.0
    flip_prob: float = 0.5
    gamma_range: tuple[float, float] = (0.8, 1.25)
    noise_std_range: tuple[float, float] = _NOISE

    def __post_init__(self) -> None:
        for name in ("max_shift", "max_rotation"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"`flip_prob` must be in [0, 1], got {self.flip_prob}")
        lo, hi = self.gamma_range
        if not 0 < lo <= hi:
            raise ValueError(f"`gamma_range` must satisfy 0 < low <= high, got {self.gamma_range}")
        lo, hi = self.noise_std_range
        if not 0 <= lo <= hi <= 0.5:
            raise ValueError(
                "`noise_std_range` must satisfy 0 <= low <= high <= 0.5, got "
                f"{self.noise_std_range}"
            )


def rotate_shift(
    x: torch.Tensor, degrees: torch.Tensor, shift: torch.Tensor, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Mirror (optional), rotate about the centre and translate a batch (bilinear, zero fill).

    Args:
        x: ``[B, C, H, W]`` images.
        degrees: ``[B]`` rotation angles in degrees (counter-clockwise).
        shift: ``[B, 2]`` translation ``(dx, dy)`` in pixels.
        flip: ``[B]`` bool, mirror left-right before rotating; ``None`` for no mirror.

    Returns:
        ``[B, C, H, W]`` transformed images.
    """
    b, _, h, w = x.shape
    theta = torch.deg2rad(degrees.to(x))
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx = torch.ones_like(cos) if flip is None else 1.0 - 2.0 * flip.to(x)
    mat = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    mat[:, 0, 0], mat[:, 0, 1] = cos * sx, -sin
    mat[:, 1, 0], mat[:, 1, 1] = sin * sx, cos
    mat[:, 0, 2] = -2.0 * shift[:, 0].to(x) / w
    mat[:, 1, 2] = -2.0 * shift[:, 1].to(x) / h
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perturb_copies(
    x: torch.Tensor, generator: torch.Generator, config: CopyPerturbation | None = None
) -> torch.Tensor:
    """Draw one copy-preserving perturbation of every image.

    Order: mirror, rotation and shift, gamma, then Rician noise over the whole frame (as in a
    new acquisition), clipped to ``[0, 1]``.

    Args:
        x: ``[B, C, H, W]`` images in ``[0, 1]``.
        generator: Source of every random draw (CPU generator).
        config: Ranges; default :class:`CopyPerturbation`.

    Returns:
        ``[B, C, H, W]`` float32 perturbed copies in ``[0, 1]`` (a new tensor).
    """
    cfg = config or CopyPerturbation()
    b, dev = x.shape[0], x.device
    flip = uniform(generator, (b,), 0.0, 1.0, dev) < cfg.flip_prob
    degrees = uniform(generator, (b,), -cfg.max_rotation, cfg.max_rotation, dev)
    shift = uniform(generator, (b, 2), -cfg.max_shift, cfg.max_shift, dev)
    lg = [math.log(v) for v in cfg.gamma_range]
    gamma = torch.exp(uniform(generator, (b,), lg[0], lg[1], dev))
    std_frac = uniform(generator, (b,), *cfg.noise_std_range, dev)
    n1 = torch.randn(x.shape, generator=generator).to(dev)
    n2 = torch.randn(x.shape, generator=generator).to(dev)
    y = rotate_shift(x.float(), degrees, shift, flip).clamp(0.0, 1.0)
    y = y.pow(gamma[:, None, None, None])
    ref = torch.quantile(y.flatten(1), 0.99, dim=1).clamp_min(1e-3)
    std = (std_frac * ref)[:, None, None, None]
    y = torch.sqrt((y + std * n1) ** 2 + (std * n2) ** 2)
    return y.clamp(0.0, 1.0)

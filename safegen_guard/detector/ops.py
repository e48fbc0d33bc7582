"""Small batched image operations the detector views are built from.

All functions take and return ``[B, 1, H, W]`` float tensors unless stated otherwise and work
on any device. They are deterministic and differentiable where that makes sense.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_blur",
    "box_mean",
    "laplacian_residual",
    "local_noise_std",
    "estimate_foreground",
    "radial_index",
    "erode",
]

# Immerkaer (1996) fast noise-variance estimator: the difference of two Laplacians cancels
# linear intensity ramps, so mostly noise (and sharp structure) passes.
_IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_IMMERKAER_GAIN = math.sqrt(math.pi / 2.0) / 6.0  # E|N*x| -> sigma for Gaussian noise


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding.

    Args:
        x: ``[B, 1, H, W]`` images.
        sigma: Standard deviation in pixels (``<= 0`` returns ``x``).

    Returns:
        ``[B, 1, H, W]`` blurred images.
    """
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1))


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Local mean over a ``size x size`` window (odd ``size``), same output size."""
    pad = size // 2
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), size, stride=1)


def laplacian_residual(x: torch.Tensor) -> torch.Tensor:
    """Immerkaer high-pass response scaled so that ``E|r| = sigma`` for white Gaussian noise.

    Returns:
        ``[B, 1, H, W]`` signed response (same size, reflect padding).
    """
    k = _IMMERKAER.to(x.device, x.dtype).view(1, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k) * _IMMERKAER_GAIN


# median / mean of a half-normal distribution: rescales a median of |r| to sigma
_MEDIAN_TO_MEAN = 0.67449 / math.sqrt(2.0 / math.pi)


def local_noise_std(x: torch.Tensor, window: int) -> torch.Tensor:
    """Edge-robust local noise standard deviation map.

    The Immerkaer high-pass magnitude is first reduced by a 5x5 *median* (anatomical edges
    covering less than half of the 5x5 patch do not count as noise), then averaged over a
    ``window x window`` box. The median is taken on every second pixel and the box-averaged
    result is upsampled bilinearly: the median is most of the detector's non-network cost, and
    the map is smoothed over ``window`` pixels anyway.

    Args:
        x: ``[B, 1, H, W]`` images in ``[0, 1]``.
        window: Odd window size of the final box average, in pixels.

    Returns:
        ``[B, 1, H, W]`` non-negative local noise estimates (intensity units); unbiased for
        white Gaussian noise.
    """
    b, _, h, w = x.shape
    r = F.pad(laplacian_residual(x).abs(), (2, 2, 2, 2), mode="reflect")
    patches = F.unfold(r, 5, stride=2)  # [B, 25, ceil(H/2) * ceil(W/2)]
    med = patches.transpose(1, 2).median(dim=-1).values.view(b, 1, (h + 1) // 2, (w + 1) // 2)
    med = box_mean(med / _MEDIAN_TO_MEAN, max(1, window // 2) | 1)
    return F.interpolate(med, size=(h, w), mode="bilinear", align_corners=False)


def estimate_foreground(
    x: torch.Tensor, threshold: float = 0.08, sigma: float = 1.5
) -> torch.Tensor:
    """Rough head/body mask: smoothed intensity above ``threshold``, then one dilation.

    Args:
        x: ``[B, 1, H, W]`` images in ``[0, 1]`` (non-finite values treated as 0).
        threshold: Intensity threshold on the smoothed image.
        sigma: Smoothing before thresholding, in pixels.

    Returns:
        ``[B, 1, H, W]`` bool masks.
    """
    x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
    fg = gaussian_blur(x, sigma) > threshold
    return F.max_pool2d(fg.float(), 3, stride=1, padding=1) > 0


def radial_index(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Integer distance (pixels) to the pixel ``(H // 2, W // 2)``, ``[H, W]`` long.

    That pixel is the rotation centre of CT reconstruction (``skimage.transform.radon``), so
    detector ring artifacts are concentric around it.
    """
    yy = torch.arange(height, device=device, dtype=torch.float32) - height // 2
    xx = torch.arange(width, device=device, dtype=torch.float32) - width // 2
    r = torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    return r.round().long()


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion by a ``(2 radius + 1)``-square; pixels beyond the frame count as inside.

    Args:
        mask: ``[B, 1, H, W]`` bool.
        radius: Erosion radius in pixels (``<= 0`` returns ``mask``).

    Returns:
        ``[B, 1, H, W]`` bool, a subset of ``mask``.
    """
    if radius <= 0:
        return mask
    return -F.max_pool2d(-mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0.5

"""CT ring artifacts simulated in the sinogram.

Physical model: a few detector channels (bins) with a miscalibrated gain ``1 + delta`` at every
projection angle. The image's sinogram is computed with ``skimage.transform.radon``
(``max(H, 64)`` angles over 180 degrees), the gain error is applied to ``2-4`` random bands of
``scale(H)`` adjacent bins inside the object's projection (each band together with its mirror
band on the other side of the centre, as one detector element sees both sides of the centre
over a full 360-degree rotation, which closes the rings), and only the *difference* sinogram
is reconstructed (filtered back-projection, ramp filter) and added to the image, so the image
itself is not blurred by the reconstruction. The result is concentric rings around the
rotation centre (the image centre). Works for any image (MRI too), which is what a detector
test needs. Severity: ``|delta| = 0.05 * s * U(0.6, 1)`` with a random sign per band.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.transform import iradon, radon

from safegen_guard.artifacts import _random, masks
from safegen_guard.artifacts.registry import register_artifact

__all__ = ["ring", "ring_image"]


def ring_image(image: np.ndarray, gain_error: float, rng: np.random.Generator) -> np.ndarray:
    """Return the ring pattern for one ``[H, W]`` image (to be added to it).

    Args:
        image: ``[H, W]`` float in [0, 1].
        gain_error: Maximum relative gain error ``|delta|`` of the faulty detector bands.
        rng: NumPy generator seeded from the caller's torch generator.

    Returns:
        ``[H, W]`` float64 ring pattern.
    """
    side = image.shape[0]
    theta = np.linspace(0.0, 180.0, max(side, 64), endpoint=False)
    sino = radon(image, theta, circle=False)
    profile = sino.mean(axis=1)
    centre = sino.shape[0] // 2
    offsets = np.abs(np.arange(sino.shape[0]) - centre)
    usable = (offsets >= 2) & (offsets < 0.45 * side) & (np.arange(offsets.size) > centre)
    eligible = np.flatnonzero(usable & (profile > 0.25 * profile.max()))
    if eligible.size == 0:
        eligible = np.flatnonzero(usable)
    n_bands = int(rng.integers(2, 5))
    starts = rng.choice(eligible, size=min(n_bands, eligible.size), replace=False)
    width = masks.size_scale(side)
    diff = np.zeros_like(sino)
    for start in starts:
        delta = gain_error * rng.uniform(0.6, 1.0) * rng.choice([-1.0, 1.0])
        for band in (
            slice(start, start + width),
            slice(2 * centre - start - width + 1, 2 * centre - start + 1),
        ):
            diff[band] = sino[band] * delta
    return iradon(diff, theta, output_size=side, circle=False, filter_name="ramp")


@register_artifact("ring", local=False, modality="ct")
def ring(
    images: torch.Tensor, severity: float, generator: torch.Generator, foreground: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """CT ring artifacts: detector-gain errors in the sinogram, reconstructed as rings.

    Args:
        images: ``[B, 1, H, W]`` float32 in [0, 1].
        severity: In (0, 1].
        generator: Source of randomness (one NumPy seed drawn per image).
        foreground: ``[B, 1, H, W]`` bool (unused).

    Returns:
        Corrupted images ``[B, 1, H, W]`` and ``None`` (support = foreground).
    """
    seeds = _random.seeds(generator, images.shape[0])
    clean = images[:, 0].detach().cpu().double().numpy()
    rings = np.stack(
        [ring_image(img, 0.05 * severity, np.random.default_rng(s)) for img, s in zip(clean, seeds)]
    )
    pattern = torch.from_numpy(rings).float().unsqueeze(1).to(images.device)
    return images + pattern, None

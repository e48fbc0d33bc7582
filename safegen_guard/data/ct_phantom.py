"""The embedded CT dataset: a physically simulated thorax CT (parametric phantom + FBP).

No real CT volume ships inside an installable package, so thorax slices are simulated:

1. **Anatomy** (:func:`render_phantom_hu`): per subject id, a seeded draw of body size and
   shape, fat thickness, lung size/asymmetry and heart size; per slice position ``z`` in
   ``[0, 1]`` (0 = lung apex, 1 = lung base) an axial section with body (+40 HU muscle),
   subcutaneous fat (-100 HU), two lungs (-850 HU) whose size follows ``z``, mediastinal fat,
   heart (+40 HU, from ``z`` ~0.35), aorta (ascending + arch high, descending throughout),
   trachea/main bronchi (air, high ``z``), vertebra (cortical 700 HU, cancellous 250 HU) with
   spinal canal and spinous process, ribs, and small pulmonary vessels. Rendered at 2x and
   area-averaged to the output size (partial-volume edges).
2. **Acquisition** (the CT acquisition variation): HU -> linear attenuation
   (``mu = mu_water (1 + HU / 1000)``, field of view 500 mm), parallel-beam forward projection
   (``skimage.transform.radon``, ``ceil(1.5 * size)`` views over 180 deg), Poisson noise on the
   transmitted counts ``I = I0 exp(-line integral)`` with ``I0`` drawn log-uniformly per slice
   in ``AcquisitionConfig.ct_photons_range`` (internally scaled with the size so 1e5 photons
   give ~20 HU noise per output pixel), ``-log``, filtered back-projection (``iradon``, ramp
   filter). Without acquisition variation the noiseless sinogram is reconstructed.
3. **Display**: window [-1000, 400] HU -> [0, 1], clipped. Optional augmentation is applied
   after reconstruction.

Splits are disjoint subject sets: train 0-59, val 60-79 and 100-139, test 80-99, with
``SLICES_PER_SUBJECT`` (4) slices per subject at stratified random ``z`` (one per quarter of
the thorax), so every split covers apex to base: 240 / 240 / 80 slices per variant. The val
split is the guard's calibration set, and conformal calibration covers only the subject
variation it has seen: the images of one subject are correlated, so the calibration's
effective sample is its subjects, not its images. With 10 subjects (70-79) a quick-profile
guard rejected 8 % of clean test slices (other subjects) but 4 % of new draws of its own; with
20 (60-79) a 32 px guard rejected augmented test draws at 0.093 (another 20 subjects:
0.064) and 100 never-seen subjects at 0.072; recalibrated on 60 subjects, 0.051 and 0.044
(docs/realism.md). Hence 60 val subjects; the test subjects 80-99 are unchanged.
``positions`` is ``z``; masks are the body region.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import torch

from safegen_guard.data.acquisition import AcquisitionConfig, augment_slice, resolve_acquisition
from safegen_guard.data.dataset import SliceDataset
from safegen_guard.data.mni152 import check_common_args, make_generator

__all__ = [
    "load_ct_phantom",
    "render_phantom_hu",
    "simulate_ct",
    "split_subjects",
    "SUBJECT_SPLITS",
]

SUBJECT_SPLITS: dict[str, tuple[tuple[int, int], ...]] = {
    "train": ((0, 60),),
    "val": ((60, 80), (100, 140)),
    "test": ((80, 100),),
}
"""Split -> half-open subject-id ranges (disjoint across splits)."""
SLICES_PER_SUBJECT: int = 4
WINDOW_HU: tuple[float, float] = (-1000.0, 400.0)
MU_WATER_PER_MM: float = 0.0193
FOV_MM: float = 500.0


def _ellipse(xx: np.ndarray, yy: np.ndarray, c: tuple, r: tuple, angle: float = 0.0) -> np.ndarray:
    ca, sa = math.cos(angle), math.sin(angle)
    dx, dy = xx - c[0], yy - c[1]
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    return (u / r[0]) ** 2 + (v / r[1]) ** 2 <= 1.0


def _subject_params(subject: int) -> dict[str, float]:
    rng = np.random.default_rng(zlib.crc32(f"ct_phantom|subject|{subject}".encode()))
    return {
        "body_a": rng.uniform(0.68, 0.82),
        "body_b": rng.uniform(0.44, 0.56),
        "fat": rng.uniform(0.03, 0.11),
        "lung": rng.uniform(0.88, 1.08),
        "lung_asym": rng.uniform(0.95, 1.1),
        "heart": rng.uniform(0.85, 1.15),
        "phase": rng.uniform(0.0, 2 * math.pi),
    }


def _draw_lungs(hu: np.ndarray, xx: np.ndarray, yy: np.ndarray, p: dict, z: float) -> np.ndarray:
    a, b = p["body_a"], p["body_b"]
    profile = p["lung"] * (0.45 + 0.55 * math.sin(math.pi * (0.12 + 0.8 * z)))
    lungs = np.zeros_like(hu, dtype=bool)
    for side, scale in ((-1.0, p["lung_asym"]), (1.0, 1.0)):
        r = (0.27 * a * profile * scale, 0.62 * b * profile * scale)
        lungs |= _ellipse(xx, yy, (side * 0.42 * a, 0.02), r, side * 0.12)
    hu[lungs] = -850.0
    return lungs


def _draw_mediastinum(hu: np.ndarray, xx: np.ndarray, yy: np.ndarray, p: dict, z: float) -> None:
    a, b = p["body_a"], p["body_b"]
    hu[_ellipse(xx, yy, (0.0, -0.05 * b), (0.16 * a, 0.45 * b))] = -90.0
    heart = p["heart"] * float(np.clip((z - 0.3) / 0.25, 0.0, 1.0)) * (1.1 - 0.3 * z)
    if heart > 0.05:
        hu[_ellipse(xx, yy, (0.1 * a, -0.15 * b), (0.3 * a * heart, 0.42 * b * heart), 0.5)] = 40.0
    hu[_ellipse(xx, yy, (0.07 * a, 0.38 * b), (0.055, 0.055))] = 45.0  # descending aorta
    if z < 0.35:
        hu[_ellipse(xx, yy, (-0.03 * a, -0.3 * b), (0.06, 0.06))] = 45.0  # ascending aorta
        hu[_ellipse(xx, yy, (0.0, 0.05 * b), (0.045, 0.04))] = -1000.0  # trachea
    elif z < 0.45:
        for side in (-1.0, 1.0):  # main bronchi
            hu[_ellipse(xx, yy, (side * 0.07, 0.08 * b), (0.035, 0.03))] = -1000.0


def _draw_bones(hu: np.ndarray, xx: np.ndarray, yy: np.ndarray, p: dict, z: float) -> None:
    a, b = p["body_a"], p["body_b"]
    cy = 0.5 * b
    hu[_ellipse(xx, yy, (0.0, cy), (0.085, 0.075))] = 700.0
    hu[_ellipse(xx, yy, (0.0, cy), (0.065, 0.055))] = 250.0
    hu[_ellipse(xx, yy, (0.0, cy + 0.1), (0.03, 0.03))] = 10.0  # spinal canal
    hu[_ellipse(xx, yy, (0.0, cy + 0.17), (0.022, 0.035))] = 650.0  # spinous process
    n_ribs = 10
    for k in range(n_ribs):
        t = p["phase"] * 0.1 + 2 * math.pi * (k + 0.5) / n_ribs + 0.6 * z
        if abs(math.sin(t)) > 0.97:  # no ribs in front of the sternum / on the spine
            continue
        cx, cyr = 0.88 * a * math.cos(t), 0.86 * b * math.sin(t)
        hu[_ellipse(xx, yy, (cx, cyr), (0.045, 0.018), t + math.pi / 2)] = 700.0


def _draw_vessels(hu: np.ndarray, xx: np.ndarray, yy: np.ndarray, lungs: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(lungs)
    if len(xs) == 0:
        return
    for i in rng.integers(0, len(xs), size=24):
        r = rng.uniform(0.008, 0.02)
        hu[_ellipse(xx, yy, (xx[0, xs[i]], yy[ys[i], 0]), (r, r)) & lungs] = 30.0


def render_phantom_hu(subject: int, z: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one clean axial thorax section of a subject.

    Args:
        subject: Subject id; fixes body, lung and heart shape.
        z: Slice position in ``[0, 1]`` (0 = lung apex, 1 = lung base).
        size: Output side in pixels (rendered at ``2 * size`` and area-averaged).

    Returns:
        ``(hu [size, size] float64 in HU, body [size, size] bool)``.
    """
    fine = 2 * size
    coords = (np.arange(fine) + 0.5) / fine * 2.0 - 1.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    p = _subject_params(subject)
    a, b = p["body_a"] * (0.97 + 0.06 * z), p["body_b"] * (0.97 + 0.06 * z)
    hu = np.full((fine, fine), -1000.0)
    body = _ellipse(xx, yy, (0.0, 0.0), (a, b))
    hu[body] = -100.0
    hu[_ellipse(xx, yy, (0.0, 0.0), (a - p["fat"], b - p["fat"]))] = 40.0
    _draw_bones(hu, xx, yy, p, z)
    lungs = _draw_lungs(hu, xx, yy, p, z)
    _draw_vessels(hu, xx, yy, lungs, zlib.crc32(f"vessels|{subject}|{z:.6f}".encode()))
    _draw_mediastinum(hu, xx, yy, p, z)
    hu = hu.reshape(size, 2, size, 2).mean(axis=(1, 3))
    return hu, body.reshape(size, 2, size, 2).mean(axis=(1, 3)) >= 0.5


def simulate_ct(
    hu: np.ndarray, photons: float | None, generator: torch.Generator | None = None
) -> np.ndarray:
    """Forward-project, add Poisson noise at ``photons`` per ray (None: noiseless), reconstruct.

    Args:
        hu: ``[S, S]`` attenuation map in HU (content inside the inscribed circle).
        photons: Unattenuated photons per ray before size scaling, or ``None``.
        generator: Source of the Poisson draws (required when ``photons`` is given).

    Returns:
        ``[S, S]`` reconstructed HU.
    """
    from skimage.transform import iradon, radon  # lazy: keeps `import safegen_guard.data` light

    size = hu.shape[0]
    pixel_mm = FOV_MM / size
    mu = np.clip(MU_WATER_PER_MM * (1.0 + hu / 1000.0), 0.0, None) * pixel_mm
    theta = np.linspace(0.0, 180.0, math.ceil(1.5 * size), endpoint=False)
    sinogram = radon(mu, theta=theta, circle=True)
    if photons is not None:
        i0 = photons * 1.66 * size / 64.0  # equal noise per output pixel across sizes
        expected = torch.from_numpy(i0 * np.exp(-sinogram))
        counts = torch.poisson(expected, generator=generator).numpy()
        sinogram = -np.log(np.maximum(counts, 1.0) / i0)
    recon = iradon(sinogram, theta=theta, filter_name="ramp", circle=True, output_size=size)
    return (recon / pixel_mm / MU_WATER_PER_MM - 1.0) * 1000.0


def _window(hu: np.ndarray) -> torch.Tensor:
    lo, hi = WINDOW_HU
    return torch.from_numpy(np.clip((hu - lo) / (hi - lo), 0.0, 1.0)).float()


def split_subjects(split: str) -> list[int]:
    """Subject ids of ``split`` (``"train"``, ``"val"`` or ``"test"``), ascending.

    Example:
        >>> len(split_subjects("val")), split_subjects("test")[0]
        (60, 80)
    """
    return [s for lo, hi in SUBJECT_SPLITS[split] for s in range(lo, hi)]


def _slice_plan(split: str) -> list[tuple[int, float]]:
    plan = []
    for subject in split_subjects(split):
        rng = np.random.default_rng(zlib.crc32(f"ct_phantom|z|{subject}".encode()))
        offsets = rng.uniform(0.0, 1.0, size=SLICES_PER_SUBJECT)
        plan += [(subject, (k + offsets[k]) / SLICES_PER_SUBJECT) for k in range(len(offsets))]
    return plan


@lru_cache(maxsize=8)
def _clean(split: str, size: int) -> tuple[tuple[np.ndarray, ...], torch.Tensor]:
    rendered = [render_phantom_hu(s, z, size) for s, z in _slice_plan(split)]
    masks = torch.from_numpy(np.stack([m for _, m in rendered]))[:, None]
    return tuple(h for h, _ in rendered), masks


@lru_cache(maxsize=16)
def _generate(
    split: str, size: int, variants: int, config: AcquisitionConfig | None, augment: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    hus, clean_masks = _clean(split, size)
    g = make_generator("ct_phantom", split, seed)
    images, masks = [], []
    for hu, mask in zip(hus, clean_masks):
        for _ in range(variants):
            photons = None
            if config is not None:
                lo, hi = (math.log(v) for v in config.ct_photons_range)
                photons = math.exp(lo + (hi - lo) * float(torch.rand((), generator=g)))
            x, m = _window(simulate_ct(hu, photons, g))[None], mask
            if augment:
                x, m = augment_slice(x, m, g)
            images.append(x)
            masks.append(m)
    return torch.stack(images), torch.stack(masks)


def load_ct_phantom(
    split: str = "train",
    size: int = 64,
    *,
    variants: int = 1,
    acquisition: object = "default",
    augment: bool = False,
    seed: int = 0,
) -> SliceDataset:
    """Simulated thorax CT slices (see module docstring for anatomy, physics and splits).

    Args:
        split: ``"train"`` (subjects 0-59), ``"val"`` (60-79 and 100-139) or ``"test"``
            (80-99).
        size: Output side ``H = W`` in pixels (>= 16).
        variants: Independent dose/noise (and augmentation) draws per slice.
        acquisition: ``"default"``, ``None``/``"none"`` (noiseless projections) or an
            ``AcquisitionConfig`` (only ``ct_photons_range`` applies).
        augment: Light geometric + intensity augmentation after reconstruction.
        seed: Seed of the local generator (anatomy depends only on the subject ids).

    Returns:
        ``SliceDataset``: images ``[N, 1, size, size]`` float32 in ``[0, 1]`` (window
        [-1000, 400] HU), body masks, positions = ``z`` in ``[0, 1]``.
    """
    check_common_args(split, size, variants, seed)
    config = resolve_acquisition(acquisition)
    images, masks = _generate(split, size, variants, config, bool(augment), seed)
    plan = _slice_plan(split)
    positions = torch.tensor([z for _, z in plan], dtype=torch.float32)
    info = {
        "source": "simulated thorax CT phantom (radon / Poisson / filtered back-projection)",
        "modality": "ct",
        "subjects": [s for s, _ in plan],
        "z": [round(z, 6) for _, z in plan],
        "subject_ranges": [list(r) for r in SUBJECT_SPLITS[split]],
        "window_hu": list(WINDOW_HU),
        "variants": variants,
        "acquisition": None if config is None else asdict(config),
        "augment": bool(augment),
        "seed": seed,
    }
    return SliceDataset(
        images=images.clone(),
        masks=masks.clone(),
        positions=positions.repeat_interleave(variants),
        name="ct_phantom",
        split=split,
        info=info,
    )

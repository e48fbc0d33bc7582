"""The embedded brain MRI dataset: axial slices of the MNI152 T1 template shipped by nilearn.

Slices (1 mm isotropic template, 197 x 233 x 189, axial = last axis):

* kept when the head foreground covers >= 10 % of the square-padded frame
  (:data:`~safegen_guard.data.foreground.MIN_FOREGROUND_FRACTION`), which keeps 114 slices (28-141)
  from the skull base to the upper convexity;
* split by interleaved blocks of 3 slices, pattern ``train train val train test`` repeated,
  the lowest and the highest block going to val (51 / 24 / 18 slices), with 1 slice dropped
  between blocks of different splits
  (:func:`~safegen_guard.data.foreground.interleaved_split`). Every split covers the whole
  brain extent, every test slice lies between val slices, and no two splits contain adjacent
  slices.

Each kept slice is centre-padded to square, resized with area averaging, then turned into
``variants`` acquisitions (:mod:`safegen_guard.data.acquisition`). The foreground mask is
computed on the clean template, before any noise. ``positions`` is the slice index normalised
over the kept extent (0 = lowest kept slice, 1 = highest).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import torch

from safegen_guard.data.acquisition import realise_variants, resolve_acquisition
from safegen_guard.data.dataset import SPLITS, SliceDataset
from safegen_guard.data.foreground import (
    BLOCK_PATTERN,
    BLOCK_SIZE,
    GUARD_GAP,
    MIN_FOREGROUND_FRACTION,
    axial_to_display,
    foreground_mask,
    interleaved_split,
    kept_slices,
    pad_to_square,
    resize_images,
    resize_masks,
)
from safegen_guard.validation import check_choice, check_positive_int

__all__ = ["load_mni152", "make_generator", "check_common_args"]

_FOREGROUND_THRESHOLD = 0.1


def make_generator(name: str, split: str, seed: int) -> torch.Generator:
    """A local ``torch.Generator`` seeded from ``(name, split, seed)`` (stable across runs)."""
    return torch.Generator().manual_seed(zlib.crc32(f"{name}|{split}|{seed}".encode()))


def check_common_args(split: object, size: object, variants: object, seed: object) -> None:
    """Validate the arguments every loader shares.

    Raises:
        ValueError: ``split`` not in ``SPLITS``, ``size < 16``, ``variants < 1``.
        TypeError: ``size``, ``variants`` or ``seed`` not an int.
    """
    check_choice(split, "split", SPLITS)
    check_positive_int(size, "size")
    if size < 16:  # type: ignore[operator]
        raise ValueError(f"`size` must be >= 16 pixels, got {size}")
    check_positive_int(variants, "variants")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__} ({seed!r})")


@lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(volume [X,Y,Z] float32 in [0,1], mask [X,Y,Z] bool, kept slice indices)``."""
    from nilearn.datasets import load_mni152_template

    volume = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    volume = np.clip(volume / max(float(volume.max()), 1e-8), 0.0, 1.0)
    mask = foreground_mask(volume, threshold=_FOREGROUND_THRESHOLD)
    return volume, mask, kept_slices(mask)


@lru_cache(maxsize=16)
def _clean_split(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
    volume, mask, kept = _template()
    indices = interleaved_split(kept, split)
    images = torch.stack([axial_to_display(volume[..., z]) for z in indices])[:, None]
    masks = torch.stack([axial_to_display(mask[..., z]) for z in indices])[:, None]
    images = resize_images(pad_to_square(images), size).clamp(0.0, 1.0)
    masks = resize_masks(pad_to_square(masks.float()) > 0.5, size)
    span = max(int(kept[-1] - kept[0]), 1)
    positions = torch.tensor((indices - kept[0]) / span, dtype=torch.float32)
    return images, masks, positions, tuple(int(i) for i in indices)


def load_mni152(
    split: str = "train",
    size: int = 64,
    *,
    variants: int = 1,
    acquisition: object = "default",
    augment: bool = False,
    seed: int = 0,
) -> SliceDataset:
    """Axial slices of the MNI152 T1 template with simulated acquisition variation.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (interleaved, disjoint slice blocks).
        size: Output side ``H = W`` in pixels (>= 16).
        variants: Independent acquisition/augmentation draws per slice.
        acquisition: ``"default"``, ``None``/``"none"`` (clean template) or an
            ``AcquisitionConfig``.
        augment: Light geometric + intensity augmentation before the acquisition.
        seed: Seed of the local generator (combined with the split name).

    Returns:
        ``SliceDataset`` with images ``[N, 1, size, size]`` float32 in ``[0, 1]``, head masks,
        positions in ``[0, 1]``; ``info`` holds slice indices and the settings.
    """
    check_common_args(split, size, variants, seed)
    config = resolve_acquisition(acquisition)
    clean, clean_masks, positions, indices = _clean_split(split, size)
    images, masks = realise_variants(
        clean,
        clean_masks,
        variants=variants,
        config=config,
        augment=bool(augment),
        generator=make_generator("mni152", split, seed),
    )
    info = {
        "source": "nilearn MNI152 T1 template (ICBM 2009a, 1 mm)",
        "modality": "mri",
        "slice_indices": list(indices),
        "slice_axis": 2,
        "variants": variants,
        "acquisition": None if config is None else asdict(config),
        "augment": bool(augment),
        "seed": seed,
        "split_rule": {
            "block_size": BLOCK_SIZE,
            "guard_gap": GUARD_GAP,
            "pattern": list(BLOCK_PATTERN),
            "end_blocks": "val",
            "min_foreground_fraction": MIN_FOREGROUND_FRACTION,
        },
    }
    return SliceDataset(
        images=images,
        masks=masks,
        positions=positions.repeat_interleave(variants),
        name="mni152",
        split=split,
        info=info,
    )

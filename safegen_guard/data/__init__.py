"""Datasets of 2-D slices: the embedded defaults (MNI152 MRI, CT phantom) and user folders.

Example:
    >>> from safegen_guard.data import load_dataset
    >>> ds = load_dataset("mni152", "val", size=32)
    >>> ds.images.shape[1:], ds.images.dtype
    (torch.Size([1, 32, 32]), torch.float32)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from safegen_guard.data.acquisition import AcquisitionConfig
from safegen_guard.data.ct_phantom import load_ct_phantom
from safegen_guard.data.dataset import SPLITS, SliceDataset
from safegen_guard.data.mni152 import load_mni152
from safegen_guard.errors import DataLoadError

__all__ = [
    "load_dataset",
    "dataset_modality",
    "SliceDataset",
    "AcquisitionConfig",
    "DATASETS",
    "SPLITS",
]

DATASETS: dict[str, Callable[..., SliceDataset]] = {
    "mni152": load_mni152,
    "ct_phantom": load_ct_phantom,
}
"""Embedded datasets by short name; each loader takes ``(split, size, *, variants,
acquisition, augment, seed)`` and returns a :class:`SliceDataset`."""

_MODALITIES = {"mni152": "mri", "ct_phantom": "ct"}


def dataset_modality(source: object) -> str | None:
    """The modality (``"mri"``/``"ct"``) of an embedded dataset name; ``None`` for anything else.

    A guard fitted on a named dataset uses that modality's default views; user data (a path,
    tensors) has no known modality unless ``GuardConfig(modality=...)`` says so.
    """
    return _MODALITIES.get(source) if isinstance(source, str) else None


def load_dataset(
    source: str | Path | Sequence[str | Path] = "mni152",
    split: str = "train",
    size: int = 64,
    *,
    variants: int = 1,
    acquisition: object = "default",
    augment: bool = False,
    seed: int = 0,
) -> SliceDataset:
    """Load one split of an embedded dataset or of the user's scans as 2-D slices.

    Args:
        source: A name in :data:`DATASETS` (``"mni152"`` brain MRI, ``"ct_phantom"`` thorax
            CT), or a path (folder, file) or list of paths to NIfTI / DICOM / PNG / JPG data.
        split: ``"train"``, ``"val"`` or ``"test"``; splits are disjoint and deterministic.
        size: Output side ``H = W`` in pixels (>= 16; 32, 64, 128, 256 are typical).
        variants: Independent acquisition/augmentation draws of every slice.
        acquisition: ``"default"`` (modality defaults; ``None`` for user data, which already
            has real noise), ``None``/``"none"`` (no simulated variation) or an
            :class:`AcquisitionConfig`.
        augment: Light geometric + intensity augmentation.
        seed: Seed of the local random generator; equal arguments give identical tensors.

    Returns:
        :class:`SliceDataset`: images ``[N, 1, size, size]`` float32 in ``[0, 1]``, bool masks
        ``[N, 1, size, size]``, positions ``[N]`` in ``[0, 1]`` (NaN when unknown).

    Raises:
        DataLoadError: unknown dataset name, missing path, or nothing readable.
        ValueError: invalid ``split``, ``size``, ``variants`` or ``acquisition``.
    """
    kwargs = {"variants": variants, "acquisition": acquisition, "augment": augment, "seed": seed}
    if isinstance(source, str) and source in DATASETS:
        return DATASETS[source](split, size, **kwargs)
    if isinstance(source, str) and not _looks_like_path(source):
        raise DataLoadError(
            f"unknown dataset {source!r}: expected one of {sorted(DATASETS)} or a path to a "
            f"folder/file of NIfTI, DICOM or PNG images"
        )
    from safegen_guard.data.folder import load_folder

    return load_folder(source, split, size, **kwargs)


def _looks_like_path(source: str) -> bool:
    return Path(source).exists() or any(c in source for c in "/\\.") or source.startswith("~")

"""Resolve a training set (dataset name, path, dataset or tensor) into images and file labels."""

from __future__ import annotations

from pathlib import Path

import torch

from safegen_guard.data.dataset import SliceDataset
from safegen_guard.validation import check_images

__all__ = ["TrainingSet", "resolve_images", "slice_labels"]

TrainingSet = SliceDataset | torch.Tensor | str | Path


def slice_labels(ds: SliceDataset) -> list[str]:
    """One human-readable origin per image: the file (or template slice) it came from.

    ``mni152`` -> ``"mni152/train/slice057"``; ``ct_phantom`` ->
    ``"ct_phantom/train/subject012_z0.413"``; user folders -> ``"path/to/scan.nii.gz#slice40"``;
    anything else -> ``"<name>/<split>[i]"``.
    """
    n, info = len(ds), ds.info
    labels: list[str] = []
    if "slice_indices" in info:
        labels = [f"{ds.name}/{ds.split}/slice{int(i):03d}" for i in info["slice_indices"]]
    elif "subjects" in info and "z" in info:
        labels = [
            f"{ds.name}/{ds.split}/subject{int(s):03d}_z{float(z):.3f}"
            for s, z in zip(info["subjects"], info["z"])
        ]
    elif "sources" in info:
        labels = [f"{s['path']}#slice{int(i)}" for s in info["sources"] for i in s["slices"]]
    variants = int(info.get("variants", 1) or 1)
    if labels and variants > 1:
        labels = [f"{lab}~{v}" for lab in labels for v in range(variants)]
    if len(labels) != n:
        labels = [f"{ds.name}/{ds.split}[{i}]" for i in range(n)]
    return labels


def resolve_images(
    data: TrainingSet, split: str, size: int, *, variants: int = 1, seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    """Return ``(images [N, 1, size, size] float32 in [0, 1], labels)`` for ``data``.

    Args:
        data: A dataset name or path (its ``split`` is loaded, with the modality's default
            acquisition variation and no augmentation: what a generator trains on by default),
            a ``SliceDataset`` (used as is) or an ``[N, 1, H, W]`` tensor.
        split: Split to load for names and paths.
        size: Image side for names and paths; tensors and datasets must already have it.
        variants: Acquisition draws per slice for names and paths.
        seed: Seed of the data draws for names and paths.

    Raises:
        ValueError: images of the wrong shape or range.
        TypeError: anything else.
    """
    if isinstance(data, (str, Path)):
        from safegen_guard.data import load_dataset

        data = load_dataset(data, split, size, variants=variants, seed=seed)
    if isinstance(data, SliceDataset):
        x, labels = data.images, slice_labels(data)
    elif isinstance(data, torch.Tensor):
        x, labels = data, [f"tensor[{i}]" for i in range(len(data))]
    else:
        raise TypeError(
            "a training set must be a dataset name, a path, a SliceDataset or an [N, 1, H, W] "
            f"tensor, got {type(data).__name__}"
        )
    check_images(x, name="training set", channels=1, size=size)
    return x.detach().to("cpu", torch.float32), labels

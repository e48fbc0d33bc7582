"""`SliceDataModule`: a LightningDataModule over a SAFEGEN `SliceDataset` (MRI or CT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from safegen_guard.data.dataset import SliceDataset
from safegen_guard.validation import check_positive_int

__all__ = ["SliceDataModule", "batch_images"]


def batch_images(batch: object) -> torch.Tensor:
    """Return the image tensor of a training batch.

    Args:
        batch: A ``SliceDataset`` batch (dict with ``"image"``), a tensor, or a tuple/list whose
            first element is the image tensor.

    Returns:
        ``[B, C, H, W]`` float tensor in ``[0, 1]`` (as provided; not copied).

    Raises:
        TypeError: The batch has none of these forms.
    """
    if isinstance(batch, Mapping) and "image" in batch:
        batch = batch["image"]
    elif isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4:
        raise TypeError(
            "a batch must be a [B, C, H, W] tensor, a dict with key 'image', or a tuple whose "
            f"first item is the image tensor; got {type(batch).__name__}"
        )
    return batch


class SliceDataModule(pl.LightningDataModule):
    """Serves a training :class:`SliceDataset` to a generator.

    Either pass a ready ``dataset`` or a ``source`` for ``safegen_guard.data.load_dataset``
    (``"mni152"``, ``"ct_phantom"`` or a folder path), loaded lazily in :meth:`setup`.

    Args:
        dataset: A training split, images ``[N, 1, H, W]`` in ``[0, 1]``.
        source: Dataset source for ``load_dataset`` when ``dataset`` is ``None``.
        size: Slice size ``S`` passed to ``load_dataset``.
        batch_size: Images per batch; a smaller dataset gives one short batch per epoch.
        num_workers: DataLoader workers (0 = main process; the data lives in memory).
        seed: Seed of the shuffling generator.
        load_kwargs: Extra keyword arguments for ``load_dataset`` (``variants``, ``augment``...).

    Raises:
        ValueError: Neither or both of ``dataset`` and ``source`` given, or bad sizes.
        TypeError: ``dataset`` is not a ``SliceDataset``.
    """

    def __init__(
        self,
        dataset: SliceDataset | None = None,
        *,
        source: str | None = None,
        size: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        load_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (dataset is None) == (source is None):
            raise ValueError(
                "pass exactly one of `dataset` and `source`, got "
                f"dataset={type(dataset).__name__}, source={source!r}"
            )
        if dataset is not None and not isinstance(dataset, SliceDataset):
            raise TypeError(f"`dataset` must be a SliceDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.source = source
        self.size = check_positive_int(size, "size")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_workers = check_positive_int(num_workers, "num_workers", allow_zero=True)
        self.seed = int(seed)
        self.load_kwargs = dict(load_kwargs or {})

    def setup(self, stage: str | None = None) -> None:
        """Load the training split from ``source`` if no dataset was given."""
        if self.dataset is None:
            from safegen_guard.data import load_dataset

            self.dataset = load_dataset(
                self.source, split="train", size=self.size, seed=self.seed, **self.load_kwargs
            )

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of ``{"image", "mask", "position"}``; full batches when possible."""
        if self.dataset is None:
            self.setup("fit")
        if self.dataset is None:  # pragma: no cover - setup always sets it or raises
            raise RuntimeError("SliceDataModule.setup did not produce a dataset")
        drop_last = len(self.dataset) >= self.batch_size
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=drop_last,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,
        )

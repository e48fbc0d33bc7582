"""Resolve what `Guard.fit` was given into real training and calibration tensors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from safegen_guard.config import GuardConfig
from safegen_guard.data.dataset import SliceDataset
from safegen_guard.validation import check_images

__all__ = ["load_fit_data"]


def load_fit_data(
    real_data: SliceDataset | torch.Tensor | str | Path,
    calibration_data: SliceDataset | torch.Tensor | None,
    config: GuardConfig,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Return ``(train [N,C,S,S], calibration [M,C,S,S], data fingerprint)``.

    A dataset name or path loads its ``train`` split (``config.train_variants`` acquisition
    draws per slice) and its ``val`` split (``calibration_variants`` draws) at
    ``config.image_size``, both with light augmentation: the augmentation stands in for the
    subject-to-subject variation a single template cannot show, and calibration must see the
    same notion of "real" as training. Tensors and datasets need explicit
    ``calibration_data``: calibrating on training images would under-estimate real scores.

    Raises:
        ValueError: tensors/datasets without ``calibration_data``, or mismatched images.
    """
    if isinstance(real_data, (str, Path)):
        from safegen_guard.data import load_dataset

        train_ds = load_dataset(
            real_data,
            "train",
            config.image_size,
            variants=config.train_variants,
            augment=True,
            seed=config.seed,
        )
        cal_ds = (
            calibration_data
            if calibration_data is not None
            else load_dataset(
                real_data,
                "val",
                config.image_size,
                variants=config.calibration_variants,
                augment=True,
                seed=config.seed + 1,
            )
        )
    else:
        if calibration_data is None:
            raise ValueError(
                "`calibration_data` (real held-out images) is required when `real_data` is a "
                "tensor or SliceDataset, got None"
            )
        train_ds, cal_ds = real_data, calibration_data
    train = _images(train_ds, "real_data", config)
    cal = _images(cal_ds, "calibration_data", config)
    h = hashlib.sha256()
    for t in (train, cal):
        h.update(t.contiguous().numpy().tobytes())
    return train, cal, h.hexdigest()[:16]


def _images(data: SliceDataset | torch.Tensor, name: str, config: GuardConfig) -> torch.Tensor:
    x = data.images if isinstance(data, SliceDataset) else data
    check_images(x, name=name, channels=config.channels, size=config.image_size)
    return x.detach().to("cpu", torch.float32)

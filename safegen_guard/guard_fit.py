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
    ``config.image_size``; half of each split's draws with light augmentation, half without
    (:func:`_mixed_draws`). The augmentation stands in for the subject-to-subject variation a
    single template cannot show; the plain draws are what ``load_dataset`` and
    ``generators.train`` give by default. Calibrating on augmented images only made a CT guard
    reject 100 % of plain real slices (the resampling lowers the noise level), so "real" here
    is both, and calibration sees the same notion of "real" as training. Tensors and datasets
    need explicit ``calibration_data``: calibrating on training images would under-estimate
    real scores.

    Raises:
        ValueError: tensors/datasets without ``calibration_data``, or mismatched images.
    """
    if isinstance(real_data, (str, Path)):
        train_ds = _mixed_draws(real_data, "train", config, config.train_variants, config.seed)
        cal_ds = (
            calibration_data
            if calibration_data is not None
            else _mixed_draws(
                real_data, "val", config, config.calibration_variants, config.seed + 1
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


def _mixed_draws(
    source: str | Path, split: str, config: GuardConfig, variants: int, seed: int
) -> torch.Tensor:
    """``variants`` acquisition draws per slice of ``split``: half augmented, half plain.

    Returns:
        ``[n_slices * variants, C, S, S]`` images, augmented draws first.
    """
    from safegen_guard.data import load_dataset

    n_aug = max(1, variants - variants // 2)
    parts = [
        load_dataset(source, split, config.image_size, variants=n_aug, augment=True, seed=seed)
    ]
    if variants - n_aug:
        plain = load_dataset(
            source, split, config.image_size, variants=variants - n_aug, seed=seed + 1000
        )
        parts.append(plain)
    return torch.cat([p.images for p in parts])


def _images(data: SliceDataset | torch.Tensor, name: str, config: GuardConfig) -> torch.Tensor:
    x = data.images if isinstance(data, SliceDataset) else data
    check_images(x, name=name, channels=config.channels, size=config.image_size)
    return x.detach().to("cpu", torch.float32)

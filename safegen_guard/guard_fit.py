"""Resolve what `Guard.fit` was given into real training and calibration tensors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import torch

from safegen_guard.calibration import check_groups
from safegen_guard.config import GuardConfig
from safegen_guard.data.dataset import SliceDataset
from safegen_guard.validation import check_images

__all__ = ["FitData", "load_fit_data"]

AUGMENTED, PLAIN = 0, 1
"""Preparation-group labels of a named data set's calibration draws (see ``Calibrator``)."""

PREPARATION_GROUPS = {"augmented": AUGMENTED, "plain": PLAIN}
"""Name -> label of those groups (``safegen score --preparation``, ``benchmarks.preparations``)."""


class FitData(NamedTuple):
    """Real images resolved for :meth:`Guard.fit`.

    Attributes:
        train: ``[N, C, S, S]`` float in ``[0, 1]``, training images.
        calibration: ``[M, C, S, S]`` float in ``[0, 1]``, held-out calibration images.
        groups: ``[M]`` long, preparation group of each calibration image (all 0 when the
            caller gave none); the false-reject rate holds within each group.
        fingerprint: 16 hex digits over ``train`` and ``calibration``.
    """

    train: torch.Tensor
    calibration: torch.Tensor
    groups: torch.Tensor
    fingerprint: str


def load_fit_data(
    real_data: SliceDataset | torch.Tensor | str | Path,
    calibration_data: SliceDataset | torch.Tensor | None,
    config: GuardConfig,
    calibration_groups: object = None,
) -> FitData:
    """Resolve ``Guard.fit``'s arguments into training and calibration tensors.

    A dataset name or path loads its ``train`` split (``config.train_variants`` acquisition
    draws per slice) and its ``val`` split (``calibration_variants`` draws) at
    ``config.image_size``; half of each split's draws with light augmentation, half without
    (:func:`_mixed_draws`). The augmentation stands in for the subject-to-subject variation a
    single template cannot show; the plain draws are what ``load_dataset`` and
    ``generators.train`` give by default. Both are valid preparations of real slices, so the
    calibration draws are labelled as two groups (``AUGMENTED``, ``PLAIN``) and the requested
    false-reject rate holds for each, not only for their mixture (calibrating on the mixture
    left a 32 px CT guard rejecting 8-13 % of augmented real slices and 2 % of plain ones).
    Tensors and datasets need explicit ``calibration_data``: calibrating on training images
    would under-estimate real scores.

    Args:
        real_data: Dataset name or path, ``SliceDataset`` or ``[N, C, S, S]`` tensor.
        calibration_data: Real held-out images (required unless ``real_data`` is a name/path).
        config: The guard's settings (image size, channels, variants, seed).
        calibration_groups: ``[M]`` integer preparation group per calibration image, or
            ``None`` (named data: augmented/plain; otherwise one group).

    Raises:
        ValueError: tensors/datasets without ``calibration_data``, mismatched images, or
            groups of the wrong length.
        TypeError: non-integer groups.
    """
    groups = calibration_groups
    if isinstance(real_data, (str, Path)):
        train_ds, _ = _mixed_draws(real_data, "train", config, config.train_variants, config.seed)
        if calibration_data is None:
            cal_ds, named_groups = _mixed_draws(
                real_data, "val", config, config.calibration_variants, config.seed + 1
            )
            groups = named_groups if groups is None else groups
        else:
            cal_ds = calibration_data
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
    groups = check_groups(groups, len(cal), "calibration_groups")
    return FitData(train, cal, groups, h.hexdigest()[:16])


def _mixed_draws(
    source: str | Path, split: str, config: GuardConfig, variants: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``variants`` acquisition draws per slice of ``split``: half augmented, half plain.

    Returns:
        ``([n_slices * variants, C, S, S] images, [n_slices * variants] long groups)``,
        augmented draws (``AUGMENTED``) first, then plain ones (``PLAIN``).
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
    groups = [torch.full((len(p),), g) for p, g in zip(parts, (AUGMENTED, PLAIN))]
    return torch.cat([p.images for p in parts]), torch.cat(groups)


def _images(data: SliceDataset | torch.Tensor, name: str, config: GuardConfig) -> torch.Tensor:
    x = data.images if isinstance(data, SliceDataset) else data
    check_images(x, name=name, channels=config.channels, size=config.image_size)
    return x.detach().to("cpu", torch.float32)

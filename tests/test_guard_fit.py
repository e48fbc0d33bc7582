"""What `Guard.fit` is given -> training images, calibration images and preparation groups."""

from __future__ import annotations

import pytest
import torch

from safegen_guard import GuardConfig
from safegen_guard.data import load_dataset
from safegen_guard.guard_fit import AUGMENTED, PLAIN, load_fit_data


def test_named_data_labels_augmented_and_plain_calibration_draws():
    cfg = GuardConfig.profile("tiny", train_variants=1, calibration_variants=3)
    fit = load_fit_data("mni152", None, cfg)
    n_val = len(load_dataset("mni152", "val", 32))
    assert fit.calibration.shape == (3 * n_val, 1, 32, 32)
    assert fit.groups.dtype == torch.long
    # 3 draws per slice: 2 augmented (first), then 1 plain
    assert torch.equal(fit.groups[: 2 * n_val], torch.full((2 * n_val,), AUGMENTED))
    assert torch.equal(fit.groups[2 * n_val :], torch.full((n_val,), PLAIN))
    plain = load_dataset("mni152", "val", 32, variants=1, seed=cfg.seed + 1 + 1000).images
    torch.testing.assert_close(fit.calibration[2 * n_val :], plain)
    assert len(fit.fingerprint) == 16


def test_tensors_are_one_group_unless_labelled():
    cfg = GuardConfig.profile("tiny")
    train, cal = torch.rand(8, 1, 32, 32), torch.rand(6, 1, 32, 32)
    fit = load_fit_data(train, cal, cfg)
    assert torch.equal(fit.groups, torch.zeros(6, dtype=torch.long))
    labelled = load_fit_data(train, cal, cfg, calibration_groups=[0, 0, 1, 1, 2, 2])
    assert labelled.groups.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"`calibration_groups` must have shape \(6,\)"):
        load_fit_data(train, cal, cfg, calibration_groups=[0, 1])
    with pytest.raises(ValueError, match="`calibration_data` .* is required"):
        load_fit_data(train, None, cfg)

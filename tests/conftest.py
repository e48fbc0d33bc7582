"""Shared fixtures: a tiny real-data guard fitted once per test session."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.data import load_dataset


@pytest.fixture(scope="session")
def tiny_real() -> dict[str, torch.Tensor]:
    """Real MNI152 slices at 32x32: train (2 draws/slice), val (8 draws), test (2 draws)."""
    train = load_dataset("mni152", "train", 32, variants=2, seed=0)
    val = load_dataset("mni152", "val", 32, variants=8, seed=1)
    test = load_dataset("mni152", "test", 32, variants=2, seed=2)
    return {"train": train.images, "val": val.images, "test": test.images, "test_masks": test.masks}


@pytest.fixture(scope="session")
def tiny_guard(tiny_real):
    """A `Guard` with the ``tiny`` profile (32x32, ~20 training steps), fitted once."""
    from safegen_guard import Guard, GuardConfig

    cfg = GuardConfig.profile("tiny", max_steps=20, accelerator="cpu")
    return Guard.fit(tiny_real["train"], cfg, calibration_data=tiny_real["val"])

"""A tiny memorization index over real MNI152 slices, fitted once per session."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.data import load_dataset


@pytest.fixture(scope="session")
def copy_data() -> dict[str, torch.Tensor]:
    """32 px MNI152: 16 training slices, 24 held-out val slices x 2 draws, 18 test slices."""
    train = load_dataset("mni152", "train", 32, seed=0).images
    return {
        "train": train[torch.linspace(0, len(train) - 1, 16).round().long()],
        "val": load_dataset("mni152", "val", 32, variants=2, seed=1).images,
        "test": load_dataset("mni152", "test", 32, seed=2).images,
    }


@pytest.fixture(scope="session")
def tiny_config():
    from safegen_guard.memorization import EncoderConfig, MemorizationConfig

    return MemorizationConfig(
        alpha=0.1, k=4, encoder=EncoderConfig(channels=4, dim=16, steps=10, batch_size=16)
    )


@pytest.fixture(scope="session")
def tiny_index(copy_data, tiny_config):
    from safegen_guard.memorization import MemorizationIndex

    return MemorizationIndex.fit(
        copy_data["train"], copy_data["val"], config=tiny_config, accelerator="cpu"
    )

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from safegen_guard.data.dataset import SliceDataset


def _toy_dataset(n: int = 8, size: int = 16, seed: int = 0) -> SliceDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    return SliceDataset(
        images=images,
        masks=images > 0.5,
        positions=torch.rand(n, generator=g),
        name="toy",
        split="train",
    )


@pytest.fixture
def toy() -> SliceDataset:
    """8 random 16x16 slices."""
    return _toy_dataset()


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., pl.Trainer]:
    def factory(max_steps: int, **kwargs: object) -> pl.Trainer:
        kwargs.setdefault("enable_checkpointing", False)
        kwargs.setdefault("default_root_dir", str(tmp_path))
        return pl.Trainer(
            accelerator="cpu",
            max_steps=max_steps,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **kwargs,
        )

    return factory


@pytest.fixture(autouse=True)
def _seed() -> None:
    pl.seed_everything(0, verbose=False)

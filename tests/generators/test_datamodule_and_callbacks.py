from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from generators import SliceDataModule, get_model_config
from generators.datamodule import batch_images
from generators.train import build_guard_callback, build_module
from safegen_guard.data.dataset import SliceDataset


def test_datamodule_serves_full_shuffled_batches(toy: SliceDataset) -> None:
    dm = SliceDataModule(toy, batch_size=3, seed=1)
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # 8 images, batch 3, drop_last
    assert all(b["image"].shape == (3, 1, 16, 16) for b in batches)
    first = torch.cat(
        [b["image"] for b in SliceDataModule(toy, batch_size=3, seed=1).train_dataloader()]
    )
    torch.testing.assert_close(first, torch.cat([b["image"] for b in batches]))
    assert not torch.equal(first, toy.images[:6])  # shuffled


def test_datamodule_keeps_a_short_dataset(toy: SliceDataset) -> None:
    batches = list(SliceDataModule(toy, batch_size=32).train_dataloader())
    assert len(batches) == 1 and batches[0]["image"].shape[0] == 8


def test_datamodule_argument_errors(toy: SliceDataset) -> None:
    with pytest.raises(ValueError, match="pass exactly one of `dataset` and `source`"):
        SliceDataModule()
    with pytest.raises(ValueError, match="pass exactly one"):
        SliceDataModule(toy, source="mni152")
    with pytest.raises(TypeError, match="`dataset` must be a SliceDataset, got Tensor"):
        SliceDataModule(torch.rand(2, 1, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`batch_size` must be a positive int, got 0"):
        SliceDataModule(toy, batch_size=0)


def test_batch_images_accepts_dicts_tensors_and_tuples() -> None:
    x = torch.rand(2, 1, 4, 4)
    assert batch_images({"image": x}) is x
    assert batch_images(x) is x
    assert batch_images((x, torch.zeros(2))) is x
    with pytest.raises(TypeError, match=r"\[B, C, H, W\] tensor"):
        batch_images({"img": x})


def test_datamodule_loads_mni152(tmp_path: Path) -> None:
    data = pytest.importorskip("safegen_guard.data")
    if not hasattr(data, "load_dataset"):
        pytest.skip("safegen_guard.data.load_dataset is not available")
    dm = SliceDataModule(source="mni152", size=32, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32)
    assert dm.dataset is not None and dm.dataset.name == "mni152"


class _SamplingCallback(Callback):
    """Stands in for SafeGenCallback: samples mid-training through the protocol."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.modes: list[bool] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object
    ) -> None:
        images = pl_module.sample(2, torch.Generator().manual_seed(0))
        self.shapes.append(tuple(images.shape))
        self.modes.append(pl_module.training)


@pytest.mark.parametrize("model", ["stylegan2", "ddpm"])
def test_modules_train_with_a_sampling_callback(
    model: str, toy: SliceDataset, make_trainer: Callable[..., pl.Trainer]
) -> None:
    overrides = {"num_inference_steps": 2} if model == "ddpm" else {}
    module = build_module(get_model_config(model, "tiny", 16, **overrides))
    cb = _SamplingCallback()
    trainer = make_trainer(2 * module.optimizer_steps_per_batch, callbacks=[cb])
    trainer.fit(module, datamodule=SliceDataModule(toy, batch_size=4))
    assert cb.shapes == [(2, 1, 16, 16)] * 2
    assert cb.modes == [True, True]  # sampling handed training mode back


def test_guard_callback_is_built_from_safegen(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, object] = {}

    class FakeGuard:
        @classmethod
        def load(cls, path: str) -> FakeGuard:
            calls["path"] = path
            return cls()

    class FakeCallback(Callback):
        def __init__(self, guard: object, every_n_steps: int, num_samples: int) -> None:
            calls.update(guard=guard, every=every_n_steps, n=num_samples)

    fake = types.ModuleType("safegen_guard")
    fake.Guard = FakeGuard  # type: ignore[attr-defined]
    fake.SafeGenCallback = FakeCallback  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "safegen_guard", fake)
    cb = build_guard_callback("g_dir", 7, 5)
    assert isinstance(cb, FakeCallback)
    assert calls["path"] == "g_dir" and calls["every"] == 7 and calls["n"] == 5
    assert isinstance(calls["guard"], FakeGuard)


def test_guard_callback_missing_api_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "safegen_guard", types.ModuleType("safegen_guard"))
    with pytest.raises(ImportError, match="--guard needs `safegen_guard.Guard`"):
        build_guard_callback("g_dir", 1, 1)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from generators import SamplesImages, SliceDataModule, get_model_config
from generators.ddpm import DDPMModule, load_pipeline, pipeline_sample
from generators.sample import load_generator
from safegen_guard.data.dataset import SliceDataset


def _module(**overrides: object) -> DDPMModule:
    return DDPMModule(get_model_config("ddpm", "tiny", 16, **overrides))


def test_training_changes_unet_and_ema_with_finite_loss(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer]
) -> None:
    module = _module()
    unet0 = {k: v.clone() for k, v in module.unet.state_dict().items()}
    trainer = make_trainer(3)
    trainer.fit(module, datamodule=SliceDataModule(toy, batch_size=4))
    assert trainer.global_step == 3
    assert int(module.ema_updates) == 3
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss) and float(loss) > 0
    key = "conv_in.weight"
    trained, ema = module.unet.state_dict()[key], module.ema_unet.state_dict()[key]
    assert not torch.equal(trained, unet0[key])
    # The EMA moved away from the initial weights but lags the trained ones.
    assert not torch.equal(ema, unet0[key])
    assert not torch.equal(ema, trained)
    assert float((ema - unet0[key]).abs().sum()) < float((trained - unet0[key]).abs().sum())


def test_checkpoint_resume_continues_steps_and_restores_ema(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    ckpt_cb = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    make_trainer(2, enable_checkpointing=True, callbacks=[ckpt_cb]).fit(
        _module(), datamodule=SliceDataModule(toy, batch_size=4)
    )
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["state_dict"]
    seen: dict[str, torch.Tensor] = {}

    class _AtStart(Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    resumed = _module()
    trainer = make_trainer(4, callbacks=[_AtStart()])
    trainer.fit(resumed, datamodule=SliceDataModule(toy, batch_size=4), ckpt_path=str(last))
    assert trainer.global_step == 4
    torch.testing.assert_close(seen["ema_unet.conv_in.weight"], saved["ema_unet.conv_in.weight"])
    assert int(seen["ema_updates"]) == 2 and int(resumed.ema_updates) == 4


def test_sample_shape_range_dtype_determinism_and_modes() -> None:
    module = _module()
    module.train()
    state = torch.get_rng_state()
    a = module.sample(3, torch.Generator().manual_seed(1), num_inference_steps=4)
    b = module.sample(3, torch.Generator().manual_seed(1), num_inference_steps=4)
    c = module.sample(3, torch.Generator().manual_seed(2), num_inference_steps=4)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert module.training and module.unet.training
    assert torch.equal(state, torch.get_rng_state())
    assert isinstance(module, SamplesImages)


def test_ddpm_sampler_is_ancestral_and_deterministic_given_generator() -> None:
    module = _module(sampler="ddpm")
    a = module.sample(2, torch.Generator().manual_seed(0), num_inference_steps=3)
    b = module.sample(2, torch.Generator().manual_seed(0), num_inference_steps=3)
    torch.testing.assert_close(a, b)


def test_pipeline_export_load_round_trip(tmp_path: Path) -> None:
    module = _module()
    with torch.no_grad():  # make the EMA weights non-trivial so the test can fail
        for p in module.ema_unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    directory = module.export_pipeline(tmp_path / "pipe")
    assert (directory / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = load_pipeline(directory)
    ours = module.sample(2, torch.Generator().manual_seed(5), num_inference_steps=5)
    theirs = pipeline_sample(pipe, 2, torch.Generator().manual_seed(5), num_inference_steps=5)
    torch.testing.assert_close(ours, theirs)
    plain = _module()  # the un-perturbed weights give different images
    other = plain.sample(2, torch.Generator().manual_seed(5), num_inference_steps=5)
    assert not torch.allclose(ours, other)


def test_load_generator_from_lightning_checkpoint(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    module = _module()
    trainer = make_trainer(1)
    trainer.fit(module, datamodule=SliceDataModule(toy, batch_size=4))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_generator(path)
    assert isinstance(loaded, DDPMModule)
    g = torch.Generator().manual_seed(0)
    ref = module.sample(2, torch.Generator().manual_seed(0), num_inference_steps=3)
    torch.testing.assert_close(loaded.sample(2, g, num_inference_steps=3), ref)


def test_bad_arguments_are_rejected() -> None:
    module = _module()
    with pytest.raises(ValueError, match="`num_inference_steps` must be a positive int, got 0"):
        module.sample(1, num_inference_steps=0)
    with pytest.raises(ValueError, match=r"must be \[B, 1, 16, 16\].*got \[1, 1, 8, 8\]"):
        module.training_step({"image": torch.rand(1, 1, 8, 8)}, 0)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_generator("/nonexistent/x.ckpt")

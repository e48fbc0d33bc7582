from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from generators import SamplesImages, SliceDataModule, get_model_config
from generators.stylegan2 import StyleGAN2Module
from safegen_guard.data.dataset import SliceDataset


def _module(**overrides: object) -> StyleGAN2Module:
    return StyleGAN2Module(get_model_config("stylegan2", "tiny", 16, **overrides))


class _Recorder(Callback):
    """Keeps every logged metric of every batch."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def test_training_updates_g_d_and_ema_with_finite_losses(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer]
) -> None:
    module = _module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rec = _Recorder()
    trainer = make_trainer(4, callbacks=[rec])
    trainer.fit(module, datamodule=SliceDataModule(toy, batch_size=4))
    assert trainer.global_step == 4  # two optimizer steps per batch
    assert int(module.d_steps) == 2 and int(module.g_steps) == 2
    after = module.state_dict()
    for prefix in ("generator.", "discriminator.", "generator_ema."):
        changed = [
            k for k in after if k.startswith(prefix) and not torch.equal(after[k], before[k])
        ]
        assert changed, f"no {prefix} weights changed"
    for m in rec.metrics:
        assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
    # EMA lags the generator: it moved, but is not equal to it.
    ema_w = module.generator_ema.synthesis.const
    assert not torch.equal(ema_w, module.generator.synthesis.const)


def test_lazy_r1_is_logged_on_its_steps_only(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer]
) -> None:
    module = _module(r1_interval=2, r1_gamma=10.0)
    rec = _Recorder()
    make_trainer(6, callbacks=[rec]).fit(module, datamodule=SliceDataModule(toy, batch_size=4))
    r1_values = [m.get("train/r1") for m in rec.metrics]
    # D steps 0 and 2 carry R1; callback_metrics keep the last value in between.
    assert r1_values[0] is not None and r1_values[0] > 0
    assert r1_values[1] == r1_values[0]
    assert r1_values[2] is not None and r1_values[2] != r1_values[0]
    assert all(v is not None and torch.isfinite(torch.tensor(v)) for v in r1_values)


def test_path_length_regularisation_runs_when_enabled(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer]
) -> None:
    module = _module(pl_weight=2.0, pl_interval=1)
    make_trainer(2).fit(module, datamodule=SliceDataModule(toy, batch_size=4))
    assert float(module.pl_mean) > 0


def test_checkpoint_resume_continues_steps_and_restores_ema(
    toy: SliceDataset, make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    ckpt_cb = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    first = _module()
    make_trainer(4, enable_checkpointing=True, callbacks=[ckpt_cb]).fit(
        first, datamodule=SliceDataModule(toy, batch_size=4)
    )
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 4

    seen: dict[str, torch.Tensor] = {}

    class _AtStart(Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    resumed = _module()
    trainer = make_trainer(8, callbacks=[_AtStart()])
    trainer.fit(resumed, datamodule=SliceDataModule(toy, batch_size=4), ckpt_path=str(last))
    assert trainer.global_step == 8
    for key in ("generator_ema.synthesis.const", "d_steps", "g_steps"):
        torch.testing.assert_close(seen[key], saved["state_dict"][key])
    assert int(resumed.g_steps) == 4


def test_sample_shape_range_dtype_and_determinism() -> None:
    module = _module()
    a = module.sample(5, torch.Generator().manual_seed(3), batch_size=2)
    b = module.sample(5, torch.Generator().manual_seed(3), batch_size=2)
    c = module.sample(5, torch.Generator().manual_seed(4), batch_size=2)
    assert a.shape == (5, 1, 16, 16) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert isinstance(module, SamplesImages)


def test_sample_leaves_global_rng_and_training_mode_alone() -> None:
    module = _module()
    module.train()
    state = torch.get_rng_state()
    module.sample(2, torch.Generator().manual_seed(0))
    module.sample(2)  # no generator: fresh seed, still not the global RNG
    assert torch.equal(state, torch.get_rng_state())
    assert module.training and module.generator.training
    module.eval()
    module.sample(2)
    assert not module.training


def test_truncation_pulls_samples_together() -> None:
    module = _module()
    module.generator_ema.mapping.w_avg.normal_()
    spread = module.sample(8, torch.Generator().manual_seed(0)).std(0).mean()
    trunc = module.sample(8, torch.Generator().manual_seed(0), truncation_psi=0.0).std(0).mean()
    assert float(trunc) < float(spread)


def test_bad_arguments_and_batches_are_rejected(toy: SliceDataset) -> None:
    module = _module()
    with pytest.raises(ValueError, match="`n` must be a positive int, got 0"):
        module.sample(0)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        module.sample(1, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`config` must be a StyleGAN2Config"):
        StyleGAN2Module(config=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be \[B, 1, 16, 16\].*got \[2, 1, 32, 32\]"):
        module._real_images({"image": torch.rand(2, 1, 32, 32)})

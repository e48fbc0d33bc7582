from __future__ import annotations

import pytest

from generators.configs import (
    DDPMConfig,
    StyleGAN2Config,
    config_from_dict,
    get_model_config,
    get_train_config,
)


@pytest.mark.parametrize("model", ["stylegan2", "ddpm"])
@pytest.mark.parametrize("preset", ["tiny", "cpu", "full"])
@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_presets_round_trip_through_plain_data(model: str, preset: str, resolution: int) -> None:
    cfg = get_model_config(model, preset, resolution)
    data = cfg.to_dict()
    assert data["model"] == model
    assert all(isinstance(v, (int, float, str, list)) for v in data.values())
    assert config_from_dict(data) == cfg


def test_overrides_are_applied_and_validated() -> None:
    cfg = get_model_config("stylegan2", "tiny", 32, r1_gamma=0.5)
    assert isinstance(cfg, StyleGAN2Config) and cfg.r1_gamma == 0.5
    with pytest.raises(ValueError, match="unknown StyleGAN2Config keys"):
        get_model_config("stylegan2", "tiny", 32, not_a_field=1)


def test_full_preset_targets_gpu() -> None:
    assert get_train_config("full").accelerator == "auto"
    assert get_train_config("cpu").accelerator == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 48}, r"power of two in \[16, 256\], got 48"),
        ({"resolution": 512}, "got 512"),
        ({"output": "sigmoid"}, "`output` must be one of"),
        ({"ema_beta": 1.0}, r"`ema_beta` must be in \[0, 1\), got 1.0"),
        ({"r1_gamma": -1.0}, "must be >= 0"),
    ],
)
def test_stylegan2_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StyleGAN2Config(**kwargs)


def test_config_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="`z_dim` must be an int, got float"):
        StyleGAN2Config(z_dim=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm_num_groups": 5}, "must divide every block_out_channels"),
        ({"down_block_types": ("DownBlock2D",)}, "need 3 entries"),
        ({"sampler": "euler"}, "`sampler` must be one of"),
    ],
)
def test_ddpm_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DDPMConfig(**kwargs)


def test_config_from_dict_rejects_other_model() -> None:
    data = get_model_config("ddpm", "tiny", 32).to_dict()
    with pytest.raises(ValueError, match="config is for model 'ddpm', expected 'stylegan2'"):
        StyleGAN2Config.from_dict(data)
    with pytest.raises(ValueError, match="`model` must be one of"):
        config_from_dict({"model": "vae"})

"""Configuration dataclasses and the ``tiny`` / ``cpu`` / ``full`` presets for both generators.

Presets:

* ``tiny``: unit tests; a training step takes well under a second on one CPU core.
* ``cpu``: small networks for 2 CPU cores (StyleGAN2 G 0.46M / D 0.37M parameters, DDPM UNet
  1.06M at 64x64). Measured CPU cost per training iteration (batch 16, one thread): at 32x32
  about 0.65 s (StyleGAN2) and 0.35 s (DDPM); roughly 4x that at 64x64 (estimated). 10-20 min buys
  a few hundred to ~1000 iterations at 32x32 and a few hundred at 64x64. Measured quality at
  that budget: after ~100 iterations the StyleGAN2 draws bright blobs on a dark background and
  the DDPM (loss ~0.03) still samples noise; recognisable anatomy needs far more iterations
  (thousands) than this preset's budget. Use it to exercise the pipeline and the guard (whose
  job is to flag exactly such samples), not to produce realistic images.
* ``full``: GPU training (``accelerator="auto"``), channel widths close to the published
  configurations for the chosen resolution.

Every config converts to plain data with :meth:`to_dict` (stored in Lightning checkpoints as
hyperparameters) and back with :meth:`from_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from safegen_guard.validation import check_choice, check_positive_int

__all__ = [
    "StyleGAN2Config",
    "DDPMConfig",
    "TrainConfig",
    "PRESETS",
    "MODEL_TYPES",
    "get_model_config",
    "get_train_config",
    "config_from_dict",
]

PRESETS: tuple[str, ...] = ("tiny", "cpu", "full")
MODEL_TYPES: tuple[str, ...] = ("stylegan2", "ddpm")

_C = TypeVar("_C", bound="_PlainConfig")


def check_resolution(value: object, name: str = "resolution") -> int:
    """Return ``value`` if it is a power of two in [16, 256]; raise otherwise."""
    value = check_positive_int(value, name)
    if value < 16 or value > 256 or value & (value - 1):
        raise ValueError(f"`{name}` must be a power of two in [16, 256], got {value}")
    return value


class _PlainConfig:
    """Mixin: round trip through a dict of primitives tagged with the model type."""

    model_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain data (tuples become lists) plus ``"model"``."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]
        out["model"] = self.model_type
        return out

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        data = dict(data)
        model = data.pop("model", cls.model_type)
        if model != cls.model_type:
            raise ValueError(f"config is for model {model!r}, expected {cls.model_type!r}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {unknown}; expected a subset of {sorted(names)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class StyleGAN2Config(_PlainConfig):
    """StyleGAN2 architecture and optimisation settings.

    Attributes:
        resolution: Output size ``S`` (images are ``S x S``), a power of two in [16, 256].
        channels: Image channels (1 for CT/MRI).
        z_dim: Latent size.
        w_dim: Intermediate latent size.
        mapping_layers: Fully connected layers in the mapping network.
        mapping_lr_mul: Learning-rate multiplier of the mapping network (equalised lr).
        channel_base: Feature maps at resolution ``r`` are ``min(channel_base // r, channel_max)``.
        channel_max: Upper bound on feature maps.
        g_lr: Generator Adam learning rate.
        d_lr: Discriminator Adam learning rate.
        beta1: Adam beta1.
        beta2: Adam beta2 (StyleGAN2 uses (0, 0.99)).
        r1_gamma: R1 weight; 0 disables R1.
        r1_interval: Lazy regularisation: R1 on every ``r1_interval``-th D step.
        pl_weight: Path-length regularisation weight; 0 disables it (default, CPU-friendly).
        pl_interval: Path-length penalty on every ``pl_interval``-th G step.
        pl_decay: Decay of the running path-length mean.
        ema_beta: Generator EMA: ``ema = beta * ema + (1 - beta) * g`` after every G step.
        mbstd_group: Group size of the minibatch-stddev layer.
        output: ``"linear"`` or ``"tanh"``; training images are in [-1, 1].
    """

    model_type = "stylegan2"

    resolution: int = 64
    channels: int = 1
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01
    channel_base: int = 4096
    channel_max: int = 128
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 1.0
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    ema_beta: float = 0.999
    mbstd_group: int = 4
    output: str = "linear"

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name in (
            "channels",
            "z_dim",
            "w_dim",
            "mapping_layers",
            "channel_base",
            "channel_max",
            "r1_interval",
            "pl_interval",
            "mbstd_group",
        ):
            check_positive_int(getattr(self, name), name)
        check_choice(self.output, "output", ("linear", "tanh"))
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"`ema_beta` must be in [0, 1), got {self.ema_beta}")
        if self.r1_gamma < 0 or self.pl_weight < 0:
            raise ValueError(
                f"`r1_gamma` and `pl_weight` must be >= 0, got {self.r1_gamma}, {self.pl_weight}"
            )


@dataclass
class DDPMConfig(_PlainConfig):
    """DDPM (diffusers ``UNet2DModel`` + ``DDPMScheduler``) settings.

    Attributes:
        resolution: Image size ``S`` (``UNet2DModel.sample_size``).
        channels: Image channels.
        layers_per_block: ResNet layers per UNet block.
        block_out_channels: Channels per UNet level; all divisible by ``norm_num_groups``.
        down_block_types: diffusers down block names, one per level.
        up_block_types: diffusers up block names, one per level.
        norm_num_groups: GroupNorm groups.
        num_train_timesteps: Diffusion steps used for training.
        beta_schedule: ``"linear"``, ``"scaled_linear"`` or ``"squaredcos_cap_v2"``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ema_decay: Maximum EMA decay (warm-up ``(1 + n) / (10 + n)`` before reaching it).
        sampler: ``"ddim"`` (fast) or ``"ddpm"`` (ancestral, ``num_train_timesteps`` steps).
        num_inference_steps: Denoising steps used by :meth:`DDPMModule.sample`.
    """

    model_type = "ddpm"

    resolution: int = 64
    channels: int = 1
    layers_per_block: int = 1
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "UpBlock2D", "UpBlock2D")
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    lr: float = 5e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    sampler: str = "ddim"
    num_inference_steps: int = 50

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name in (
            "channels",
            "layers_per_block",
            "norm_num_groups",
            "num_train_timesteps",
            "num_inference_steps",
        ):
            check_positive_int(getattr(self, name), name)
        check_choice(self.sampler, "sampler", ("ddim", "ddpm"))
        check_choice(
            self.beta_schedule, "beta_schedule", ("linear", "scaled_linear", "squaredcos_cap_v2")
        )
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"`down_block_types` and `up_block_types` need {n} entries (one per "
                f"block_out_channels), got {len(self.down_block_types)} and "
                f"{len(self.up_block_types)}"
            )
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"`norm_num_groups`={self.norm_num_groups} must divide every "
                f"block_out_channels entry, got {list(self.block_out_channels)}"
            )
        if self.resolution % 2 ** (n - 1):
            raise ValueError(
                f"`resolution` must be divisible by 2**{n - 1} for {n} UNet levels, "
                f"got {self.resolution}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay}")


@dataclass
class TrainConfig:
    """Trainer-side settings of a preset (the CLI may override each).

    Attributes:
        batch_size: Images per batch.
        max_steps: Training iterations (batches); StyleGAN2 takes 2 optimiser steps per batch.
        accelerator: Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``).
        checkpoint_every: Save a checkpoint every this many iterations.
        log_every: Log metrics every this many optimiser steps.
    """

    batch_size: int = 16
    max_steps: int = 1000
    accelerator: str = "cpu"
    checkpoint_every: int = 250
    log_every: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


def _stylegan2_preset(preset: str, resolution: int) -> StyleGAN2Config:
    if preset == "tiny":
        return StyleGAN2Config(
            resolution=resolution,
            z_dim=32,
            w_dim=32,
            mapping_layers=2,
            channel_base=256,
            channel_max=32,
            r1_interval=2,
            ema_beta=0.9,
            mbstd_group=2,
        )
    if preset == "cpu":
        return StyleGAN2Config(
            resolution=resolution,
            z_dim=128,
            w_dim=128,
            mapping_layers=4,
            channel_base=2048,
            channel_max=64,
            ema_beta=0.99,
        )
    return StyleGAN2Config(
        resolution=resolution,
        z_dim=512,
        w_dim=512,
        mapping_layers=8,
        channel_base=16384,
        channel_max=512,
        r1_gamma=10.0 * resolution / 256,
        pl_weight=2.0,
        ema_beta=0.999,
    )


def _ddpm_preset(preset: str, resolution: int) -> DDPMConfig:
    if preset == "tiny":
        return DDPMConfig(
            resolution=resolution,
            block_out_channels=(16, 32),
            down_block_types=("DownBlock2D",) * 2,
            up_block_types=("UpBlock2D",) * 2,
            ema_decay=0.9,
            num_inference_steps=10,
        )
    if preset == "cpu":
        return DDPMConfig(
            resolution=resolution,
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D",) * 3,
            up_block_types=("UpBlock2D",) * 3,
            ema_decay=0.995,
            num_inference_steps=50,
        )
    levels = min(6, int(math.log2(resolution)) - 2)
    chans = (128, 128, 256, 256, 512, 512)[:levels]
    attn_level = levels - 2  # self-attention at the second-lowest resolution
    down = tuple("AttnDownBlock2D" if i == attn_level else "DownBlock2D" for i in range(levels))
    up = tuple(
        "AttnUpBlock2D" if i == levels - 1 - attn_level else "UpBlock2D" for i in range(levels)
    )
    return DDPMConfig(
        resolution=resolution,
        layers_per_block=2,
        block_out_channels=chans,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=32,
        lr=1e-4,
        ema_decay=0.9999,
        num_inference_steps=100,
    )


def get_model_config(
    model: str, preset: str = "cpu", resolution: int = 64, **overrides: Any
) -> StyleGAN2Config | DDPMConfig:
    """Return the preset config of ``model`` at ``resolution`` with ``overrides`` applied.

    Args:
        model: ``"stylegan2"`` or ``"ddpm"``.
        preset: ``"tiny"``, ``"cpu"`` or ``"full"``.
        resolution: Image size, a power of two in [16, 256].
        **overrides: Config fields to replace.

    Returns:
        A validated :class:`StyleGAN2Config` or :class:`DDPMConfig`.

    Example:
        >>> get_model_config("ddpm", "tiny", 32).block_out_channels
        (16, 32)
    """
    check_choice(model, "model", MODEL_TYPES)
    check_choice(preset, "preset", PRESETS)
    check_resolution(resolution)
    cfg = (
        _stylegan2_preset(preset, resolution)
        if model == "stylegan2"
        else _ddpm_preset(preset, resolution)
    )
    if not overrides:
        return cfg
    data = cfg.to_dict()
    data.update(overrides)
    return type(cfg).from_dict(data)


def get_train_config(preset: str = "cpu") -> TrainConfig:
    """Return the trainer settings of ``preset`` (``"tiny"``, ``"cpu"`` or ``"full"``)."""
    check_choice(preset, "preset", PRESETS)
    if preset == "tiny":
        return TrainConfig(batch_size=4, max_steps=2, checkpoint_every=1, log_every=1)
    if preset == "cpu":
        return TrainConfig(batch_size=16, max_steps=1500, checkpoint_every=250, log_every=10)
    return TrainConfig(
        batch_size=32, max_steps=200_000, accelerator="auto", checkpoint_every=5000, log_every=50
    )


def config_from_dict(data: Mapping[str, Any]) -> StyleGAN2Config | DDPMConfig:
    """Rebuild a model config from plain data, dispatching on its ``"model"`` key."""
    model = check_choice(data.get("model"), "model", MODEL_TYPES)
    cls = StyleGAN2Config if model == "stylegan2" else DDPMConfig
    return cls.from_dict(data)

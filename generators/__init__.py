"""Generators that SAFEGEN guards: StyleGAN2 and DDPM as LightningModules with ``sample(n)``."""

from generators.configs import DDPMConfig, StyleGAN2Config, get_model_config, get_train_config
from generators.datamodule import SliceDataModule
from generators.protocol import SamplesImages

__all__ = [
    "SamplesImages",
    "SliceDataModule",
    "StyleGAN2Config",
    "DDPMConfig",
    "get_model_config",
    "get_train_config",
    "StyleGAN2Module",
    "DDPMModule",
    "build_module",
]


def __getattr__(name: str) -> object:
    """Import the Lightning modules lazily (diffusers is slow to import)."""
    if name == "StyleGAN2Module":
        from generators.stylegan2 import StyleGAN2Module

        return StyleGAN2Module
    if name == "DDPMModule":
        from generators.ddpm import DDPMModule

        return DDPMModule
    if name == "build_module":
        from generators.train import build_module

        return build_module
    raise AttributeError(f"module 'generators' has no attribute {name!r}")

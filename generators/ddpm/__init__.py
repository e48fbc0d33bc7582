"""DDPM generator: diffusers UNet2DModel + DDPMScheduler in a Lightning module."""

from generators.ddpm.module import DDPMModule, load_pipeline, pipeline_sample

__all__ = ["DDPMModule", "load_pipeline", "pipeline_sample"]

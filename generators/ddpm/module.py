"""`DDPMModule`: a diffusers UNet2DModel + DDPMScheduler trained with Lightning, with an EMA."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from generators.configs import DDPMConfig
from generators.datamodule import batch_images
from generators.protocol import resolve_generator
from safegen_guard.validation import check_positive_int

__all__ = ["DDPMModule", "load_pipeline", "pipeline_sample"]


def _as_config(config: DDPMConfig | Mapping[str, Any] | None) -> DDPMConfig:
    if config is None:
        return DDPMConfig()
    if isinstance(config, DDPMConfig):
        return config
    if isinstance(config, Mapping):
        return DDPMConfig.from_dict(config)
    raise TypeError(f"`config` must be a DDPMConfig, a dict or None, got {type(config).__name__}")


def build_unet(cfg: DDPMConfig) -> UNet2DModel:
    """Build the ``UNet2DModel`` described by ``cfg`` (epsilon prediction, 1 channel default)."""
    return UNet2DModel(
        sample_size=cfg.resolution,
        in_channels=cfg.channels,
        out_channels=cfg.channels,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        norm_num_groups=cfg.norm_num_groups,
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types),
    )


def pipeline_sample(
    pipe: DDPMPipeline,
    n: int,
    generator: torch.Generator | None = None,
    num_inference_steps: int = 50,
) -> torch.Tensor:
    """Run a ``DDPMPipeline`` and return a tensor.

    Args:
        pipe: Any DDPM-style pipeline (``DDPMScheduler`` or ``DDIMScheduler``).
        n: Number of images.
        generator: Seeds the initial noise and the ancestral steps.
        num_inference_steps: Denoising steps (a DDPM scheduler runs exactly this many too).

    Returns:
        ``[n, C, S, S]`` float32 in ``[0, 1]`` on the pipeline's device.
    """
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        batch_size=n,
        generator=generator,
        num_inference_steps=num_inference_steps,
        output_type="pt",
        return_dict=True,
    )
    return out.images.float()


def load_pipeline(directory: str | Path) -> DDPMPipeline:
    """Load a pipeline written by :meth:`DDPMModule.export_pipeline` (safetensors + JSON)."""
    return DDPMPipeline.from_pretrained(str(directory), use_safetensors=True)


class DDPMModule(pl.LightningModule):
    """Denoising diffusion model; implements :class:`~generators.protocol.SamplesImages`.

    Training: epsilon prediction with an MSE loss at uniformly drawn timesteps, AdamW, and an
    exponential moving average of the UNet weights (``ema_unet``, saved in checkpoints) updated
    after every optimiser step. Sampling and export use the EMA weights. ``ema_unet`` follows the
    module's train/eval mode like any submodule (the UNet has no dropout or batch norm, so the
    mode does not change its output; :meth:`sample` switches to eval anyway).

    Args:
        config: A :class:`DDPMConfig`, its :meth:`~DDPMConfig.to_dict` form, or ``None``.

    Batches are ``SliceDataset`` dicts (or tensors) of images ``[B, C, S, S]`` in ``[0, 1]``;
    they are rescaled to ``[-1, 1]`` for training.

    Example:
        >>> from generators.configs import get_model_config
        >>> m = DDPMModule(get_model_config("ddpm", "tiny", 16))
        >>> m.sample(2, torch.Generator().manual_seed(0), num_inference_steps=2).shape
        torch.Size([2, 1, 16, 16])
    """

    optimizer_steps_per_batch = 1

    def __init__(self, config: DDPMConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = _as_config(config)
        self.config = cfg
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.unet = build_unet(cfg)
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False)
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=cfg.num_train_timesteps,
            beta_schedule=cfg.beta_schedule,
            prediction_type="epsilon",
        )
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ sampling
    def sampling_scheduler(self) -> DDPMScheduler | DDIMScheduler:
        """A fresh scheduler for sampling: DDIM (fast, deterministic) or ancestral DDPM."""
        if self.config.sampler == "ddim":
            return DDIMScheduler.from_config(self.noise_scheduler.config)
        return DDPMScheduler.from_config(self.noise_scheduler.config)

    def pipeline(self) -> DDPMPipeline:
        """A ``DDPMPipeline`` over the EMA UNet and :meth:`sampling_scheduler` (shares weights)."""
        return DDPMPipeline(unet=self.ema_unet, scheduler=self.sampling_scheduler())

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        num_inference_steps: int | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images with the EMA UNet.

        Args:
            n: Number of images.
            generator: Seeds the noise; ``None`` uses a fresh random seed.
            num_inference_steps: Denoising steps; default ``config.num_inference_steps``.

        Returns:
            ``[n, C, S, S]`` float32 in ``[0, 1]`` on the module's device.
        """
        check_positive_int(n, "n")
        steps = (
            self.config.num_inference_steps
            if num_inference_steps is None
            else (check_positive_int(num_inference_steps, "num_inference_steps"))
        )
        gen = resolve_generator(generator)
        was_training = self.training
        self.eval()
        try:
            return pipeline_sample(self.pipeline(), n, gen, steps).to(self.device)
        finally:
            self.train(was_training)

    def export_pipeline(self, directory: str | Path) -> Path:
        """Write the EMA UNet and the sampling scheduler with ``DDPMPipeline.save_pretrained``.

        Returns:
            The directory; reload it with :func:`load_pipeline` or
            ``DDPMPipeline.from_pretrained``.
        """
        directory = Path(directory)
        self.pipeline().save_pretrained(str(directory), safe_serialization=True)
        return directory

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the UNet parameters."""
        return torch.optim.AdamW(
            self.unet.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Noise the batch at random timesteps and regress the noise (MSE)."""
        images = batch_images(batch)
        cfg = self.config
        expected = (cfg.channels, cfg.resolution, cfg.resolution)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"training images must be [B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}] (config resolution/channels), got "
                f"{list(images.shape)}"
            )
        x0 = images.float() * 2.0 - 1.0
        noise = torch.randn_like(x0)
        t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), device=self.device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(self.unet(noisy, t).sample, noise)
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=x0.shape[0])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA after the optimiser step."""
        self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema <- d * ema + (1 - d) * unet`` with ``d = min(ema_decay, (1+n)/(10+n))``."""
        n = float(self.ema_updates)
        decay = min(self.config.ema_decay, (1.0 + n) / (10.0 + n))
        for p_ema, p in zip(self.ema_unet.parameters(), self.unet.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - decay)
        for b_ema, b in zip(self.ema_unet.buffers(), self.unet.buffers()):
            b_ema.copy_(b)
        self.ema_updates += 1

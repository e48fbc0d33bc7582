"""`StyleGAN2Module`: StyleGAN2 training (manual optimisation, lazy R1, EMA) in Lightning."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from generators.configs import StyleGAN2Config
from generators.datamodule import batch_images
from generators.protocol import resolve_generator
from generators.stylegan2.losses import (
    discriminator_loss,
    generator_loss,
    path_length_penalty,
    r1_penalty,
)
from generators.stylegan2.networks import Discriminator, Generator
from safegen_guard.validation import check_positive_int

__all__ = ["StyleGAN2Module"]


def _as_config(config: StyleGAN2Config | Mapping[str, Any] | None) -> StyleGAN2Config:
    if config is None:
        return StyleGAN2Config()
    if isinstance(config, StyleGAN2Config):
        return config
    if isinstance(config, Mapping):
        return StyleGAN2Config.from_dict(config)
    raise TypeError(
        f"`config` must be a StyleGAN2Config, a dict or None, got {type(config).__name__}"
    )


class StyleGAN2Module(pl.LightningModule):
    """StyleGAN2 as a LightningModule; implements :class:`~generators.protocol.SamplesImages`.

    Each training batch takes one discriminator step (logistic loss, plus the lazy R1 penalty
    every ``r1_interval`` D steps) and one generator step (non-saturating loss, plus the optional
    path-length penalty), then updates the generator EMA. Lightning's ``global_step`` therefore
    advances by 2 per batch (:attr:`optimizer_steps_per_batch`).

    Args:
        config: A :class:`StyleGAN2Config`, its :meth:`~StyleGAN2Config.to_dict` form, or
            ``None`` for defaults.

    Batches are ``SliceDataset`` dicts (or tensors) of images ``[B, C, S, S]`` in ``[0, 1]``;
    they are rescaled to ``[-1, 1]`` for training.

    Example:
        >>> from generators.configs import get_model_config
        >>> m = StyleGAN2Module(get_model_config("stylegan2", "tiny", 16))
        >>> m.sample(2, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 16, 16])
    """

    optimizer_steps_per_batch = 2

    def __init__(self, config: StyleGAN2Config | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = _as_config(config)
        self.config = cfg
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.automatic_optimization = False
        self.generator = Generator(
            resolution=cfg.resolution,
            img_channels=cfg.channels,
            z_dim=cfg.z_dim,
            w_dim=cfg.w_dim,
            mapping_layers=cfg.mapping_layers,
            mapping_lr_mul=cfg.mapping_lr_mul,
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
            output=cfg.output,
        )
        self.discriminator = Discriminator(
            resolution=cfg.resolution,
            img_channels=cfg.channels,
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
            mbstd_group=cfg.mbstd_group,
        )
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("pl_mean", torch.zeros(()))

    # ------------------------------------------------------------------ sampling
    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """Map latents ``z [B, z_dim]`` to images ``[B, C, S, S]`` in ``[0, 1]`` (EMA generator)."""
        return self._to_unit(self.generator_ema(z, truncation_psi))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        truncation_psi: float = 1.0,
        batch_size: int = 64,
    ) -> torch.Tensor:
        """Draw ``n`` images from the EMA generator.

        Args:
            n: Number of images.
            generator: Drives latents and noise inputs; ``None`` uses a fresh random seed.
            truncation_psi: Truncation towards the average ``w`` (1 = none, 0 = mean image).
            batch_size: Images generated per forward pass. Results are deterministic for a
                given ``generator`` state *and* ``batch_size`` (noise is drawn per chunk).

        Returns:
            ``[n, C, S, S]`` float32 in ``[0, 1]`` on the module's device (generator outputs
            outside ``[-1, 1]`` are clipped before mapping to ``[0, 1]``).
        """
        check_positive_int(n, "n")
        check_positive_int(batch_size, "batch_size")
        gen = resolve_generator(generator)
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                z = torch.randn(m, self.config.z_dim, generator=gen, device=gen.device)
                img = self.generator_ema(z.to(self.device), truncation_psi, generator=gen)
                chunks.append(self._to_unit(img))
            return torch.cat(chunks)
        finally:
            self.train(was_training)

    @staticmethod
    def _to_unit(img: torch.Tensor) -> torch.Tensor:
        return ((img.float().clamp(-1.0, 1.0) + 1.0) / 2.0).contiguous()

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for G and D; lr and betas corrected for lazy regularisation (StyleGAN2 App. B)."""
        cfg = self.config

        def adam(params: Any, lr: float, interval: int, enabled: bool) -> torch.optim.Adam:
            c = interval / (interval + 1) if enabled else 1.0
            return torch.optim.Adam(params, lr=lr * c, betas=(cfg.beta1**c, cfg.beta2**c))

        opt_g = adam(self.generator.parameters(), cfg.g_lr, cfg.pl_interval, cfg.pl_weight > 0)
        opt_d = adam(self.discriminator.parameters(), cfg.d_lr, cfg.r1_interval, cfg.r1_gamma > 0)
        return [opt_g, opt_d]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One D step, one G step, one EMA update; logs ``train/*`` metrics."""
        real = self._real_images(batch)
        opt_g, opt_d = self.optimizers()
        logs = self._discriminator_step(real, opt_d)
        logs.update(self._generator_step(real.shape[0], opt_g))
        self._update_ema()
        self.log_dict(logs, prog_bar=False, on_step=True, batch_size=real.shape[0])
        self.log("loss_g", logs["train/loss_g"], prog_bar=True, logger=False)
        self.log("loss_d", logs["train/loss_d"], prog_bar=True, logger=False)

    def _real_images(self, batch: Any) -> torch.Tensor:
        images = batch_images(batch)
        cfg = self.config
        expected = (cfg.channels, cfg.resolution, cfg.resolution)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"training images must be [B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}] (config resolution/channels), got "
                f"{list(images.shape)}"
            )
        return images.float() * 2.0 - 1.0

    def _latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, device=self.device)

    def _discriminator_step(self, real: torch.Tensor, opt: Any) -> dict[str, torch.Tensor]:
        cfg = self.config
        self.toggle_optimizer(opt)
        with torch.no_grad():
            fake = self.generator(self._latents(real.shape[0]))
        do_r1 = cfg.r1_gamma > 0 and int(self.d_steps) % cfg.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        real_logits = self.discriminator(real_in)
        fake_logits = self.discriminator(fake)
        loss = discriminator_loss(real_logits, fake_logits)
        logs = {
            "train/loss_d": loss.detach(),
            "train/d_real": real_logits.detach().mean(),
            "train/d_fake": fake_logits.detach().mean(),
        }
        if do_r1:
            r1 = r1_penalty(real_logits, real_in)
            loss = loss + r1 * (cfg.r1_gamma / 2.0 * cfg.r1_interval)
            logs["train/r1"] = r1.detach()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.untoggle_optimizer(opt)
        self.d_steps += 1
        return logs

    def _generator_step(self, batch_size: int, opt: Any) -> dict[str, torch.Tensor]:
        cfg = self.config
        self.toggle_optimizer(opt)
        fake = self.generator(self._latents(batch_size))
        loss = generator_loss(self.discriminator(fake))
        logs = {"train/loss_g": loss.detach()}
        if cfg.pl_weight > 0 and int(self.g_steps) % cfg.pl_interval == 0:
            w = self.generator.mapping(self._latents(max(1, batch_size // 2)))
            images = self.generator.synthesis(w)
            penalty, lengths = path_length_penalty(images, w, self.pl_mean, cfg.pl_decay)
            loss = loss + penalty * (cfg.pl_weight * cfg.pl_interval)
            logs["train/pl_penalty"] = penalty.detach()
            logs["train/pl_length"] = lengths.detach().mean()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.untoggle_optimizer(opt)
        self.g_steps += 1
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema <- beta * ema + (1 - beta) * G``, beta ramped up as ``(1+n)/(10+n)``."""
        n = float(self.g_steps)
        beta = min(self.config.ema_beta, (1.0 + n) / (10.0 + n))
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - beta)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

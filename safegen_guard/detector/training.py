"""Lightning training of the SAFEGEN autoencoder on real images only.

Objective (per batch, real images ``x`` in ``[0, 1]``): add *coarse* noise ``n`` (Gaussian
noise drawn at ``coarse_noise_res`` and bilinearly up-sampled, after Kascenas et al. 2022,
"Denoising autoencoders for unsupervised anomaly detection in brain MRI") and reconstruct the
real image through both paths::

    loss = MSE(G(E(x + n)), x) + MSE(G(E(x + n), skips), x)

The bottleneck path learns the manifold of real anatomy; the skip path learns to remove
structured deviations while keeping real fine detail.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from safegen_guard.detector.autoencoder import SafeGenAutoencoder
from safegen_guard.progress import StepProgressBar

__all__ = ["LossModule", "fit_module", "denoising_loss", "train_autoencoder", "coarse_noise"]


def coarse_noise(
    shape: torch.Size, std: float, res: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise drawn at ``res x res`` and bilinearly up-sampled to ``shape[-2:]``.

    Returns:
        ``shape`` (``[B, C, H, W]``) noise tensor with per-pixel std about ``std``.
    """
    b, c, h, w = shape
    low = torch.randn(b, c, min(res, h), min(res, w), generator=generator) * std
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


LossFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class LossModule(L.LightningModule):
    """A LightningModule that minimises ``loss_fn(batch, generator)`` over ``model``'s weights.

    Every model SAFEGEN trains (its autoencoder, and the benchmark's baselines) goes through
    this one module, so all get the same optimiser and schedule by construction.

    Args:
        model: Parameters to optimise (updated in place).
        loss_fn: ``(x [B, C, H, W], generator) -> scalar loss``.
        learning_rate: Adam learning rate (cosine-annealed to 10% over ``max_steps``).
        max_steps: Length of the schedule.
        seed: Seed of the loss's own random draws (noise, masks), explicit and local.
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, learning_rate: float, max_steps: int, seed: int
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.learning_rate, self.max_steps = learning_rate, max_steps
        self.gen = torch.Generator().manual_seed(seed)

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One step on ``batch[0]``; logs ``train/loss``."""
        loss = self.loss_fn(batch[0], self.gen)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        """Adam with cosine annealing to 10% of the learning rate over ``max_steps``."""
        opt = torch.optim.Adam(self.model.parameters(), lr=self.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=self.max_steps, eta_min=0.1 * self.learning_rate
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit_module(
    model: nn.Module,
    loss_fn: LossFn,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    accelerator: str = "auto",
    progress: bool = True,
    description: str = "training",
) -> nn.Module:
    """Train ``model`` on ``images`` ``[N, C, H, W]`` for exactly ``steps`` optimiser steps.

    With ``progress`` one bar labelled ``description`` shows the step out of ``steps`` and an
    ETA (:class:`~safegen_guard.progress.StepProgressBar`).

    Returns:
        ``model`` on the CPU in eval mode.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    loader = DataLoader(
        TensorDataset(images.float()),
        batch_size=min(batch_size, len(images)),
        shuffle=True,
        drop_last=len(images) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = L.Trainer(
        max_steps=steps,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        callbacks=[StepProgressBar(description)] if progress else None,
    )
    module = LossModule(model, loss_fn, learning_rate, steps, seed).train()
    trainer.fit(module, loader)
    return module.model.cpu().eval()


def denoising_loss(model: SafeGenAutoencoder, noise_std: float, noise_res: int) -> LossFn:
    """SAFEGEN's objective: reconstruct ``x`` from ``x + coarse noise`` through both paths."""

    def loss(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = coarse_noise(x.shape, noise_std, noise_res, generator).to(x)
        z, feats = model.encode((x + noise).contiguous(memory_format=torch.channels_last))
        return F.mse_loss(model.decode(z), x) + F.mse_loss(model.decode(z, feats), x)

    return loss


def train_autoencoder(
    model: SafeGenAutoencoder,
    images: torch.Tensor,
    *,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    noise_std: float,
    noise_res: int,
    seed: int = 0,
    accelerator: str = "auto",
    progress: bool = True,
) -> SafeGenAutoencoder:
    """Train ``model`` on real ``images`` ``[N, C, H, W]`` in ``[0, 1]`` with Lightning.

    Returns:
        The trained model, on CPU, in eval mode.
    """
    return fit_module(
        model,
        denoising_loss(model, noise_std, noise_res),
        images,
        steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        accelerator=accelerator,
        progress=progress,
        description="autoencoder",
    )

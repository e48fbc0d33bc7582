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

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from safegen_guard.detector.autoencoder import SafeGenAutoencoder

__all__ = ["AutoencoderModule", "train_autoencoder", "coarse_noise"]


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


class AutoencoderModule(L.LightningModule):
    """LightningModule wrapping :class:`SafeGenAutoencoder` with the denoising objective.

    Args:
        model: The autoencoder to train (updated in place).
        learning_rate: Adam learning rate (cosine-annealed to 10% over ``max_steps``).
        max_steps: Total optimiser steps (for the schedule).
        noise_std: Coarse noise standard deviation.
        noise_res: Coarse noise resolution.
    """

    def __init__(
        self,
        model: SafeGenAutoencoder,
        learning_rate: float,
        max_steps: int,
        noise_std: float,
        noise_res: int,
    ) -> None:
        super().__init__()
        self.model = model
        self.learning_rate, self.max_steps = learning_rate, max_steps
        self.noise_std, self.noise_res = noise_std, noise_res

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One denoising step on both paths; logs ``train/loss``."""
        (x,) = batch
        noise = coarse_noise(x.shape, self.noise_std, self.noise_res).to(x)
        z, feats = self.model.encode((x + noise).contiguous(memory_format=torch.channels_last))
        loss_b = F.mse_loss(self.model.decode(z), x)
        loss_s = F.mse_loss(self.model.decode(z, feats), x)
        loss = loss_b + loss_s
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        """Adam with cosine annealing over ``max_steps``."""
        opt = torch.optim.Adam(self.model.parameters(), lr=self.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=self.max_steps, eta_min=0.1 * self.learning_rate
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
    L.seed_everything(seed, workers=True, verbose=False)
    loader = DataLoader(
        TensorDataset(images.float()),
        batch_size=min(batch_size, len(images)),
        shuffle=True,
        drop_last=len(images) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    module = AutoencoderModule(model, learning_rate, max_steps, noise_std, noise_res)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=False,
    )
    trainer.fit(module, loader)
    return module.model.cpu().eval()

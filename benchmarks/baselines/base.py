"""The one interface every benchmarked method implements, plus a shared Lightning trainer.

A method is fitted on real images only (``train`` to learn, ``val`` to calibrate) and then
scores batches: an image-level anomaly score (higher = more anomalous) and, when the method
localises, a pixel map. Calibration is identical for every method (see
:func:`benchmarks.guard_eval.calibrate`), so no baseline gets a threshold of its own.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from safegen_guard.config import GuardConfig
from safegen_guard.detector.autoencoder import AutoencoderConfig

__all__ = ["Baseline", "LossModule", "fit_module", "autoencoder_config"]

LossFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class Baseline(abc.ABC):
    """A benchmarked anomaly detector.

    Attributes:
        name: Short key used in ``results.json`` (``"plain_ae"``).
        label: Human label; re-implementations say so.
        reference: The paper the method follows.
        localises: Whether :meth:`score` returns pixel maps.
    """

    name: str = ""
    label: str = ""
    reference: str = ""
    localises: bool = True

    def __init__(self, guard_config: GuardConfig) -> None:
        self.guard_config = guard_config

    @abc.abstractmethod
    def fit(self, train: torch.Tensor, val: torch.Tensor, budget_steps: int, seed: int) -> Baseline:
        """Train on real images only.

        Args:
            train: ``[N,1,H,W]`` real training images in ``[0,1]``.
            val: ``[M,1,H,W]`` real held-out images a method may use for internal statistics
                (never test data).
            budget_steps: Optimiser steps (the same for every learned method).
            seed: Seed of initialisation and every random draw.

        Returns:
            ``self``, fitted.
        """

    @abc.abstractmethod
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return image scores ``[B]`` and pixel maps ``[B,1,H,W]`` (or ``None``)."""

    @torch.no_grad()
    def score_chunked(
        self, x: torch.Tensor, chunk: int = 128
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`score` over chunks of ``chunk`` images (bounded memory)."""
        parts = [self.score(c) for c in x.split(chunk)]
        scores = torch.cat([p[0] for p in parts])
        maps = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        return scores, maps

    def describe(self) -> dict:
        """Plain-data description for ``results.json``."""
        return {"label": self.label, "reference": self.reference, "localises": self.localises}


def autoencoder_config(cfg: GuardConfig) -> AutoencoderConfig:
    """The autoencoder architecture SAFEGEN's guard uses for ``cfg`` (same capacity)."""
    return AutoencoderConfig(
        image_size=cfg.image_size,
        channels=cfg.channels,
        base_channels=cfg.base_channels,
        levels=cfg.levels,
        latent_dim=cfg.latent_dim,
        groups=min(8, cfg.base_channels),
    )


class LossModule(L.LightningModule):
    """Minimal LightningModule: Adam + cosine schedule over ``loss_fn(batch, generator)``.

    Args:
        model: Parameters to optimise (updated in place).
        loss_fn: ``(x [B,1,H,W], generator) -> scalar loss``.
        learning_rate: Adam learning rate.
        max_steps: Length of the cosine schedule.
        seed: Seed of the loss's own random draws (noise, masks, dissolving).
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
        """One step; logs ``train/loss``."""
        loss = self.loss_fn(batch[0], self.gen)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        """Adam with cosine annealing to 10% over ``max_steps`` (as SAFEGEN's trainer)."""
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
    progress: bool = True,
) -> nn.Module:
    """Train ``model`` for exactly ``steps`` optimiser steps with Lightning (CPU or GPU).

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
    module = LossModule(model, loss_fn, learning_rate, steps, seed)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    return module.model.cpu().eval()

"""The one interface every benchmarked method implements (trained with SAFEGEN's trainer).

A method is fitted on real images only (``train`` to learn, ``val`` to calibrate) and then
scores batches: an image-level anomaly score (higher = more anomalous) and, when the method
localises, a pixel map. Calibration is identical for every method (see
:func:`benchmarks.guard_eval.calibrate`), so no baseline gets a threshold of its own.
"""

from __future__ import annotations

import abc

import torch

from safegen_guard.config import GuardConfig
from safegen_guard.detector.autoencoder import AutoencoderConfig
from safegen_guard.detector.training import LossModule, fit_module  # noqa: F401 (re-export)

__all__ = ["Baseline", "LossModule", "fit_module", "autoencoder_config", "residual_score"]


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

    def train_module(
        self,
        module: torch.nn.Module,
        loss: LossModule,
        train: torch.Tensor,
        budget_steps: int,
        seed: int,
    ) -> None:
        """Fit ``module`` with ``loss`` on ``train`` with the guard's optimiser settings.

        Every learned method trains through this one call (SAFEGEN's trainer, the guard
        configuration's batch size and learning rate), so only the loss differs.
        """
        cfg = self.guard_config
        fit_module(
            module,
            loss,
            train,
            steps=budget_steps,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            seed=seed,
            progress=cfg.progress,
        )

    def describe(self) -> dict:
        """Plain-data description for ``results.json``."""
        return {"label": self.label, "reference": self.reference, "localises": self.localises}


def residual_score(x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B]`` L2 norms and ``[B,1,H,W]`` maps of ``|x - reference|`` (reconstruction methods)."""
    res = (x - reference).abs()
    return res.flatten(1).norm(dim=1), res


def autoencoder_config(cfg: GuardConfig) -> AutoencoderConfig:
    """The autoencoder architecture SAFEGEN's guard uses for ``cfg`` (same capacity)."""
    return AutoencoderConfig.from_guard_config(cfg)

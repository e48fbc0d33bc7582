"""A lightweight anomaly-score predictor ``f`` distilled from the detector (for SHAP).

``f`` is a small fully convolutional net: a per-pixel evidence map at 1/4 resolution, global
average, affine (no final ReLU: a dead one made ``f`` constant).
It is built only from modules that ``shap.DeepExplainer`` supports
(``Conv2d``, separate non-inplace ``ReLU``, ``AvgPool2d``, ``Linear``), so its SHAP values
are exact in the DeepLIFT sense and pass SHAP's additivity check.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["ScorePredictor", "distil_predictor"]


class ScorePredictor(nn.Module):
    """Tiny CNN ``[B, C, S, S] -> [B, 1]`` regressing a (standardised) detector score.

    Args:
        image_size: ``S`` (a multiple of 4).
        channels: Image channels ``C``.
        width: Channels of the first convolutions (doubled after the first down-sampling).
    """

    def __init__(self, image_size: int = 64, channels: int = 1, width: int = 16) -> None:
        super().__init__()
        if image_size % 4 or image_size < 8:
            raise ValueError(f"`image_size` must be a multiple of 4 and >= 8, got {image_size}")
        if width < 1:
            raise ValueError(f"`width` must be a positive int, got {width}")
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 1, 1),
        )
        self.pool = nn.AvgPool2d(image_size // 4)
        self.out = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, S, S]`` images in ``[0, 1]`` -> ``[B, 1]`` predicted score."""
        return self.out(self.pool(self.features(x)).flatten(1))


def distil_predictor(
    predictor: ScorePredictor,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fit ``predictor`` to ``targets`` by mean squared error (Adam, cosine decay).

    Args:
        predictor: Model to train in place.
        images: ``[N, C, S, S]`` training images (real and artifact-injected real).
        targets: ``[N]`` detector scores (already transformed/standardised by the caller).
        steps: Optimiser steps (positive).
        batch_size: Minibatch size.
        learning_rate: Initial Adam learning rate.
        seed: Seed of the minibatch sampler (a local generator; the global RNG is untouched).
        progress: Show a bar (``explainer: 120/1500 [00:40<07:40, mse=0.0123]``): step out of
            ``steps``, elapsed time, ETA and the loss.

    Returns:
        The training loss of every step.
    """
    if steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps}")
    if images.shape[0] != targets.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {targets.shape[0]} targets")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(predictor.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    predictor.train()
    bar = tqdm(
        total=steps, desc="explainer", disable=not progress, file=sys.stdout, smoothing=0,
        mininterval=1.0,
    )  # fmt: skip
    with bar, torch.inference_mode(False), torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
            loss = (predictor(images[idx]).squeeze(1) - targets[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(mse=f"{losses[-1]:.4f}", refresh=False)
            bar.update(1)
    predictor.eval()
    return losses

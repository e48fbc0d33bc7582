"""Plain reconstruction autoencoder: the seed's §3.2.1 score with no interpretability layer.

Same network as SAFEGEN (:class:`SafeGenAutoencoder`), bottleneck path only, trained with plain
MSE on clean real images (no denoising). Score ``||x - G(E(x))||_2``, map ``|x - G(E(x))|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.baselines.base import Baseline, autoencoder_config, residual_score
from safegen_guard.detector.autoencoder import SafeGenAutoencoder

__all__ = ["PlainAE"]


class PlainAE(Baseline):
    """Bottleneck autoencoder + L2 reconstruction error (no skips, no denoising)."""

    name = "plain_ae"
    label = "Plain AE (seed §3.2.1 reconstruction score)"
    reference = "reconstruction-error autoencoder (Baur et al. 2021 survey baseline)"

    def fit(self, train: torch.Tensor, val: torch.Tensor, budget_steps: int, seed: int) -> PlainAE:
        """Train the bottleneck path with ``MSE(G(E(x)), x)`` for ``budget_steps`` steps."""
        cfg = self.guard_config
        torch.manual_seed(seed)
        self.model = SafeGenAutoencoder(autoencoder_config(cfg))

        def loss(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return F.mse_loss(self.model(x, use_skips=False), x)

        self.train_module(self.model, loss, train, budget_steps, seed)
        return self

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` L2 residual norms and ``[B,1,H,W]`` absolute residuals."""
        return residual_score(x, self.model(x, use_skips=False))

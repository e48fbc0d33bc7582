"""Denoising autoencoder with coarse noise (re-implementation of Kascenas et al. 2022).

"Denoising autoencoders for unsupervised anomaly detection in brain MRI" (MIDL 2022): a U-Net
*with* skip connections trained to remove coarse (low-resolution, up-sampled) Gaussian noise;
the residual ``|x - f(x)|`` is the anomaly map and its L2 norm the image score.

Differences from the paper: SAFEGEN's residual U-Net (same size as SAFEGEN's) instead of the
paper's U-Net; 2-D slices at the benchmark size; no post-hoc median filtering or brain-mask
multiplication of the residual; the same step budget as SAFEGEN instead of the paper's epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.baselines.base import Baseline, autoencoder_config, residual_score
from safegen_guard.detector.autoencoder import SafeGenAutoencoder
from safegen_guard.detector.training import coarse_noise

__all__ = ["DenoisingAE"]


class DenoisingAE(Baseline):
    """Skip-path U-Net trained on ``x + coarse noise -> x``; residual L2 score."""

    name = "dae"
    label = "DAE, coarse noise (Kascenas et al. 2022, re-implementation)"
    reference = "Kascenas, O'Neil, Abbas 2022, MIDL"

    def fit(
        self, train: torch.Tensor, val: torch.Tensor, budget_steps: int, seed: int
    ) -> DenoisingAE:
        """Train the skip path as a coarse-noise denoiser for ``budget_steps`` steps."""
        cfg = self.guard_config
        torch.manual_seed(seed)
        self.model = SafeGenAutoencoder(autoencoder_config(cfg))

        def loss(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            noise = coarse_noise(x.shape, cfg.coarse_noise_std, cfg.coarse_noise_res, g).to(x)
            return F.mse_loss(self.model(x + noise, use_skips=True), x)

        self.train_module(self.model, loss, train, budget_steps, seed)
        return self

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` L2 residual norms and ``[B,1,H,W]`` absolute residuals (skip path)."""
        return residual_score(x, self.model(x, use_skips=True))

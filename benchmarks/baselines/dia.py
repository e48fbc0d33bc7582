"""DIA-style image-level detector (re-implementation after Shi et al. 2023).

"Dissolving Is Amplifying: Towards Fine-Grained Anomaly Detection" (DIA): contrastive
self-supervised features where *dissolving* (a diffusion-model forward/backward pass that
removes fine detail) makes fine-grained anomalies stand out; the anomaly score is a kNN
distance in feature space to real training images. Image-level only: no pixel map, so the
benchmark compares it on detection metrics only.

Here (documented simplification): a 4-level CNN encoder trained with SimCLR's NT-Xent loss
(temperature 0.2) where the two views of a real image are independently *dissolved*:
``x_a = blur_s(sqrt(a) x + sqrt(1 - a) eps)`` with ``a ~ U(0.5, 1)`` (the diffusion forward
marginal) and a Gaussian blur mixed in with weight ``s = 1 - a`` -- a stand-in for the paper's
pretrained diffusion model dissolving. No rotation/negative-augmentation heads, no pretrained
backbone; same steps and batch as SAFEGEN's autoencoder. Score: mean cosine distance to the
``k = 5`` nearest real training features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.baselines.base import Baseline

__all__ = ["DiaStyle", "dissolve", "nt_xent"]

_K = 5
_TEMPERATURE = 0.2
_MAX_BANK = 4096


def _gaussian_blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    r = max(int(3 * sigma), 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=x.shape[1])


def dissolve(x: torch.Tensor, generator: torch.Generator, low: float = 0.5) -> torch.Tensor:
    """Dissolve ``[B,C,H,W]`` images at random strengths (diffusion noising + blur).

    Returns:
        ``[B,C,H,W]`` dissolved images (unclipped).
    """
    b = x.shape[0]
    a = (low + (1 - low) * torch.rand(b, 1, 1, 1, generator=generator)).to(x)
    eps = torch.randn(x.shape, generator=generator).to(x)
    noisy = a.sqrt() * x + (1 - a).sqrt() * eps * 0.5
    return torch.lerp(noisy, _gaussian_blur(noisy), (1 - a) * 2)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = _TEMPERATURE) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy for positive pairs ``(z1[i], z2[i])``."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class _Encoder(nn.Module):
    def __init__(self, channels: int, width: int = 16, dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for i in range(4):
            layers += [
                nn.Conv2d(c, width * 2**i, 3, 2, 1),
                nn.GroupNorm(8, width * 2**i),
                nn.SiLU(),
            ]
            c = width * 2**i
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, dim))


class DiaStyle(Baseline):
    """Contrastive encoder with dissolving views; kNN distance to real training features."""

    name = "dia"
    label = "DIA-style contrastive + dissolving (re-implementation, image-level only)"
    reference = "Shi, Liu, Li, Cheng, Zhang 2023 (Dissolving Is Amplifying, arXiv:2302.14696)"
    localises = False

    def fit(self, train: torch.Tensor, val: torch.Tensor, budget_steps: int, seed: int) -> DiaStyle:
        """Contrastive training for ``budget_steps`` steps, then the feature bank."""
        cfg = self.guard_config
        torch.manual_seed(seed)
        self.encoder = _Encoder(cfg.channels)

        def loss(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            enc = self.encoder
            return nt_xent(
                enc.head(enc.backbone(dissolve(x, g))), enc.head(enc.backbone(dissolve(x, g)))
            )

        self.train_module(self.encoder, loss, train, budget_steps, seed)
        g = torch.Generator().manual_seed(seed)
        bank = train[torch.randperm(len(train), generator=g)[:_MAX_BANK]]
        self.bank = torch.cat([self._features(b) for b in bank.split(256)])
        return self

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder.backbone(x), dim=1)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``[B]`` mean cosine distance to the 5 nearest real training features; no map."""
        sim = self._features(x) @ self.bank.T
        k = min(_K, self.bank.shape[0])
        return (1 - sim.topk(k, dim=1).values).mean(1), None

"""The copy encoder: a small CNN whose embedding ignores what does not make a copy less a copy.

Trained on real images only, with a SimCLR objective (Chen et al. 2020, NT-Xent): two
independent copy-preserving perturbations (:mod:`.perturb`: acquisition noise, shifts,
rotations, mirror, gamma) of the same training image must embed closer to each other than to
any other image of the batch. Neighbouring slices of one scan are the hardest negatives, so the
encoder learns the fine anatomy that tells them apart and forgets the perturbations. Mirror
invariance is exact by construction (the embedding sums the image's and its mirror's features).

Plain torch here; the Lightning loop is :func:`safegen_guard.detector.training.fit_module`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safegen_guard.detector.training import fit_module
from safegen_guard.memorization.perturb import CopyPerturbation, perturb_copies

__all__ = ["EncoderConfig", "CopyEncoder", "nt_xent", "train_encoder"]


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and training of :class:`CopyEncoder`.

    Attributes:
        channels: Channels of the first convolution (doubled twice, by stride-2 stages).
        dim: Embedding size (unit L2 norm).
        steps: Optimiser steps of contrastive training.
        batch_size: Images per batch (two views each).
        learning_rate: Adam learning rate (cosine-annealed, see ``fit_module``).
        temperature: NT-Xent temperature.
    """

    channels: int = 16
    dim: int = 64
    steps: int = 200
    batch_size: int = 64
    learning_rate: float = 2e-3
    temperature: float = 0.1

    def __post_init__(self) -> None:
        for name in ("channels", "dim", "steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int, got {v!r}")
        if not self.learning_rate > 0 or not self.temperature > 0:
            raise ValueError(
                "`learning_rate` and `temperature` must be > 0, got "
                f"{self.learning_rate}, {self.temperature}"
            )

    def to_dict(self) -> dict:
        """Plain-data form (JSON-able)."""
        return asdict(self)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.SiLU(),
    )


class CopyEncoder(nn.Module):
    """``[B, 1, H, W]`` in ``[0, 1]`` -> ``[B, dim]`` unit-norm, mirror-invariant embedding.

    Each image is standardised (zero mean, unit std) first, so brightness and contrast changes
    do not move it; then four convolution stages (the first three with stride 2), a 4 x 4
    adaptive average pool, and a two-layer head.
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or EncoderConfig()
        c = self.config.channels
        self.features = nn.Sequential(
            _block(1, c, 2),
            _block(c, 2 * c, 2),
            _block(2 * c, 4 * c, 2),
            _block(4 * c, 4 * c, 1),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(4 * c * 16, 256), nn.SiLU(), nn.Linear(256, self.config.dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``x`` ``[B, 1, H, W]``; returns ``[B, dim]`` with unit L2 norm."""
        x = x - x.mean(dim=(-2, -1), keepdim=True)
        x = x / x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-4)
        feats = self.features(torch.cat([x, x.flip(-1)]))
        z = self.head(feats)
        z = z[: len(x)] + z[len(x) :]
        return F.normalize(z, dim=1)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Embed many images in chunks, in eval mode: ``[N, 1, H, W]`` -> ``[N, dim]`` float32."""
        self.eval()
        parts = [self(chunk.float()) for chunk in x.split(batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.dim)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy over a batch of positive pairs.

    Args:
        z1: ``[B, D]`` unit-norm embeddings of the first views.
        z2: ``[B, D]`` unit-norm embeddings of the second views (row ``i`` pairs with ``z1[i]``).
        temperature: Softmax temperature.

    Returns:
        Scalar loss: for each of the ``2B`` views, cross-entropy of finding its partner among
        the other ``2B - 1``.
    """
    z = torch.cat([z1, z2])
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def train_encoder(
    images: torch.Tensor,
    config: EncoderConfig | None = None,
    *,
    perturbation: CopyPerturbation | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    progress: bool = False,
) -> CopyEncoder:
    """Train a :class:`CopyEncoder` on real ``images`` ``[N, 1, H, W]`` in ``[0, 1]``.

    Returns:
        The trained encoder, on CPU, in eval mode.
    """
    config = config or EncoderConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CopyEncoder(config)

    def loss(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        v1 = perturb_copies(x.cpu(), generator, perturbation).to(x.device)
        v2 = perturb_copies(x.cpu(), generator, perturbation).to(x.device)
        return nt_xent(encoder(v1), encoder(v2), config.temperature)

    fit_module(
        encoder,
        loss,
        images,
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=seed,
        accelerator=accelerator,
        progress=progress,
        description="copy encoder",
    )
    return encoder.cpu().eval()

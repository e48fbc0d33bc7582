from __future__ import annotations

import math

import pytest
import torch


def brain_like(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Textured ellipses (gyri-like stripes, dark ventricles) on a Rician-noise background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    images = []
    for _ in range(batch):
        a, b = 0.75 + 0.1 * torch.rand(2, generator=g)
        phase = 2 * math.pi * float(torch.rand(1, generator=g))
        head = ((yy / a) ** 2 + (xx / b) ** 2 < 1).float()
        ventricles = ((yy / 0.25) ** 2 + (xx / 0.12) ** 2 < 1).float()
        texture = 0.55 + 0.2 * torch.sin(9 * xx + phase) * torch.cos(7 * yy) + 0.1 * yy
        images.append(head * (texture - 0.35 * ventricles))
    clean = torch.stack(images).unsqueeze(1)
    noise = 0.02 * torch.randn(2, *clean.shape, generator=g)
    return torch.sqrt((clean + noise[0]) ** 2 + noise[1] ** 2).clamp(0, 1)


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    return brain_like(3, 64)


@pytest.fixture(scope="session")
def small_images() -> torch.Tensor:
    return brain_like(1, 32, seed=1)

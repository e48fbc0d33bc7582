"""Random draws from an explicit ``torch.Generator`` (never the global RNG)."""

from __future__ import annotations

import torch

__all__ = ["uniform", "normal", "seeds", "choice"]


def uniform(
    generator: torch.Generator,
    shape: tuple[int, ...],
    low: float,
    high: float,
    device: torch.device,
) -> torch.Tensor:
    """Draw ``U(low, high)`` samples of ``shape`` and move them to ``device`` (float32)."""
    u = torch.rand(shape, generator=generator, device=generator.device)
    return (u * (high - low) + low).to(device=device, dtype=torch.float32)


def normal(
    generator: torch.Generator, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Draw standard normal samples of ``shape`` and move them to ``device`` (float32)."""
    z = torch.randn(shape, generator=generator, device=generator.device)
    return z.to(device=device, dtype=torch.float32)


def choice(generator: torch.Generator, n: int, options: int, device: torch.device) -> torch.Tensor:
    """Draw ``n`` integers uniformly from ``{0, ..., options - 1}`` (int64, on ``device``)."""
    idx = torch.randint(0, options, (n,), generator=generator, device=generator.device)
    return idx.to(device)


def seeds(generator: torch.Generator, n: int) -> list[int]:
    """Draw ``n`` integer seeds in ``[0, 2**31 - 1)`` for libraries that need their own RNG."""
    drawn = torch.randint(0, 2**31 - 1, (n,), generator=generator, device=generator.device)
    return [int(v) for v in drawn.tolist()]

"""The sampling protocol every SAFEGEN generator implements: ``sample(n, generator)``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["SamplesImages", "resolve_generator"]


@runtime_checkable
class SamplesImages(Protocol):
    """Anything that draws image batches for the guard, callbacks and benchmarks.

    Implementations sample in ``eval`` mode under ``no_grad``, restore the previous training
    mode afterwards, never touch the global RNG, and are deterministic given ``generator``.
    """

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images.

        Args:
            n: Number of images, ``n >= 1``.
            generator: Source of randomness; ``None`` draws a fresh, non-deterministic seed
                (the global RNG is left untouched).

        Returns:
            ``[n, C, H, W]`` float32 tensor with intensities in ``[0, 1]``.
        """
        ...


def resolve_generator(
    generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Generator:
    """Return ``generator``, or a fresh generator on ``device`` seeded from OS entropy.

    Raises:
        TypeError: ``generator`` is neither ``None`` nor a ``torch.Generator``.
    """
    if generator is None:
        fresh = torch.Generator(device=device)
        fresh.seed()  # OS entropy; the global RNG is not consumed
        return fresh
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator

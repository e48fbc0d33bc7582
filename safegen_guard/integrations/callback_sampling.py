"""Drawing a check's samples from the generator being trained (seeded per rank and check)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import lightning.pytorch as pl
import torch

__all__ = ["SampleFn", "local_count", "mix_seed", "sample_generator"]

SampleFn = Callable[[pl.LightningModule, int, torch.Generator], torch.Tensor]
"""``sample_fn(pl_module, n, generator) -> [n, C, H, W]`` in ``[0, 1]``."""


def local_count(num_samples: int, world: int, rank: int) -> int:
    """This rank's share of ``num_samples`` (the first ``num_samples % world`` draw one more)."""
    return num_samples // world + int(rank < num_samples % world)


def mix_seed(seed: int, rank: int, index: int) -> int:
    """A 63-bit seed for (base seed, rank, check index), stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}:{rank}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def sample_generator(
    pl_module: pl.LightningModule, sample_fn: SampleFn | None, n: int, seed: int
) -> torch.Tensor:
    """Draw ``n`` samples in ``eval()`` under ``no_grad``; every module's mode is restored.

    Args:
        pl_module: The generator; ``pl_module.sample(n, generator)`` unless ``sample_fn``.
        sample_fn: ``sample_fn(pl_module, n, generator)``, or ``None``.
        n: Number of samples.
        seed: Seed of the generator (on the module's device).

    Returns:
        ``[n, C, H, W]`` float32 on the CPU, as the sampler returned them (not validated).

    Raises:
        TypeError: the sampler returned something other than a tensor.
    """
    gen = torch.Generator(device=pl_module.device)
    gen.manual_seed(seed)
    modes = [(m, m.training) for m in pl_module.modules()]
    pl_module.eval()
    try:
        with torch.no_grad():
            fn = sample_fn or (lambda m, k, g: m.sample(k, g))
            x = fn(pl_module, n, gen)
    finally:
        for module, mode in modes:
            module.training = mode
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the sampler must return a torch.Tensor, got {type(x).__name__}")
    return x.detach().to("cpu", torch.float32)

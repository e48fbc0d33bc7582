"""The SAFEGEN autoencoder: a residual U-Net whose skips can be switched off.

Skip connections leak anomalies: with open skips a U-Net can copy an artifact straight to its
output. This network therefore has two paths through one set of weights:

- the **bottleneck path** (``use_skips=False``): encoder -> dense latent ``z`` (256-d by
  default) -> decoder. It can only reproduce what the latent describes, so local anomalies stay
  in the residual. Trained on every batch.
- the **skip path** (``use_skips=True``): the same encoder/decoder with gated skips, trained as
  a denoiser. It reproduces fine anatomy, so its residual isolates small deviations.

Plain torch (no Lightning here): see :mod:`safegen_guard.detector.training` for the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from safegen_guard.config import GuardConfig

__all__ = ["AutoencoderConfig", "SafeGenAutoencoder"]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`SafeGenAutoencoder`.

    Attributes:
        image_size: Input height = width in pixels (a multiple of ``2 ** (levels - 1)``).
        channels: Image channels.
        base_channels: Channels of the first level; doubled per level (capped at 256).
        levels: Resolution levels (the design's full model uses 5).
        latent_dim: Size of the dense bottleneck vector ``z``.
        groups: GroupNorm groups (must divide every channel count).
    """

    image_size: int = 64
    channels: int = 1
    base_channels: int = 16
    levels: int = 4
    latent_dim: int = 256
    groups: int = 8

    @classmethod
    def from_guard_config(cls, config: GuardConfig) -> AutoencoderConfig:
        """The architecture a guard with ``config`` uses (the one place this is decided)."""
        return cls(
            image_size=config.image_size,
            channels=config.channels,
            base_channels=config.base_channels,
            levels=config.levels,
            latent_dim=config.latent_dim,
            groups=min(8, config.base_channels),
        )

    def level_channels(self) -> list[int]:
        """Channel count per level, e.g. ``[16, 32, 64, 128]``."""
        return [min(self.base_channels * 2**i, 256) for i in range(self.levels)]

    def validate(self) -> None:
        """Raise ``ValueError`` if the sizes are inconsistent."""
        factor = 2 ** (self.levels - 1)
        if self.levels < 2:
            raise ValueError(f"`levels` must be >= 2, got {self.levels}")
        if self.image_size % factor or self.image_size // factor < 2:
            raise ValueError(
                f"`image_size` must be a multiple of 2**(levels-1)={factor} and at least "
                f"{2 * factor}, got {self.image_size}"
            )
        bad = [c for c in self.level_channels() if c % self.groups]
        if bad:
            raise ValueError(f"`groups`={self.groups} must divide every channel count, got {bad}")


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN, SiLU, conv3x3) x 2 plus a 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(min(groups, c_in), c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, c_in, h, w]`` -> ``[B, c_out, h, w]``."""
        return self.skip(x) + self.body(x)


class SafeGenAutoencoder(nn.Module):
    """Residual U-Net autoencoder with a dense latent and switchable skips.

    Args:
        config: Architecture settings.

    Shapes:
        input ``[B, C, S, S]`` in ``[0, 1]``; output ``[B, C, S, S]`` (unbounded, ~[0, 1]).
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        chans = config.level_channels()
        self.stem = nn.Conv2d(config.channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        for i, c in enumerate(chans):
            c_prev = chans[max(i - 1, 0)]
            pool = nn.Identity() if i == 0 else nn.Conv2d(c_prev, c_prev, 3, 2, 1)
            self.down.append(nn.Sequential(pool, ResBlock(c_prev, c, config.groups)))
        self.bottom_size = config.image_size // 2 ** (config.levels - 1)
        flat = chans[-1] * self.bottom_size**2
        self.to_latent = nn.Linear(flat, config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, flat)
        self.up = nn.ModuleList()
        for i in reversed(range(config.levels - 1)):
            self.up.append(
                nn.ModuleDict(
                    {
                        "upsample": nn.Upsample(scale_factor=2, mode="nearest"),
                        "reduce": nn.Conv2d(chans[i + 1], chans[i], 3, padding=1),
                        "block": ResBlock(2 * chans[i], chans[i], config.groups),
                    }
                )
            )
        self.head = nn.Sequential(
            nn.GroupNorm(config.groups, chans[0]),
            nn.SiLU(),
            nn.Conv2d(chans[0], config.channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``[B, C, S, S]`` to the latent ``[B, latent_dim]`` and per-level features."""
        h = self.stem(x)
        feats = []
        for block in self.down:
            h = block(h)
            feats.append(h)
        return self.to_latent(h.flatten(1)), feats

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Decode ``[B, latent_dim]`` (plus optional encoder features) to ``[B, C, S, S]``.

        Args:
            z: Latent vectors.
            skips: Encoder features from :meth:`encode`; ``None`` closes every skip (the
                bottleneck path). Closed skips feed zeros, so both paths share weights.
        """
        c = self.config.level_channels()[-1]
        h = self.from_latent(z).view(-1, c, self.bottom_size, self.bottom_size)
        for j, stage in enumerate(self.up):
            level = self.config.levels - 2 - j
            h = stage["reduce"](stage["upsample"](h))
            s = skips[level] if skips is not None else torch.zeros_like(h)
            h = stage["block"](torch.cat([h, s], dim=1))
        return self.head(h)

    def forward(self, x: torch.Tensor, use_skips: bool = False) -> torch.Tensor:
        """Reconstruct ``x`` through the bottleneck path (default) or the skip path."""
        z, feats = self.encode(x)
        return self.decode(z, feats if use_skips else None)

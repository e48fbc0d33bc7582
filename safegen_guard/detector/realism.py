"""The realism network: what real anatomy and texture look like, learned from real slices only.

No view built for one artifact family can know what a *real* scan looks like. This network
learns it with a self-supervised task in the style of Foreign Patch Interpolation (FPI; Tan et
al., MICCAI MOOD 2020; see also PII and the nnOOD benchmark): a patch of another real slice is
blended into a real slice with a random interpolation factor ``a``, and the network predicts,
per pixel, ``a`` (0 where the image is untouched). To solve it the network must learn which
structure, texture and intensity belong where in a real scan, so at scoring time anything that
does not fit lights up, whichever generator or artifact made it. The task uses only real
images: the "anomalies" are pieces of other real images, never an artifact from the project's
registry (under the leave-one-family-out protocol the task must not coincide with a family it
is tested on; it coincides with none of them).

The network is a MONAI :class:`~monai.networks.nets.BasicUNet` (batch norm, ReLU); its
encoder features also feed the patch-density and multi-scale feature-distance views
(:mod:`~safegen_guard.detector.learned_views`), so one forward pass serves them all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

from safegen_guard.detector.training import LossFn, fit_module

__all__ = ["RealismNet", "RealismOutput", "foreign_patch_batch", "fpi_loss", "train_realism_net"]


class RealismOutput:
    """The realism network on one batch; the decoder runs only if ``logits`` is read.

    Attributes:
        features: encoder features at 1/2, 1/4 and 1/8 resolution, ``[B, C_l, H/2^l, W/2^l]``
            (all the patch-density and feature-distance views need).
    """

    def __init__(self, net: RealismNet, encoded: list[torch.Tensor]) -> None:
        self._net, self._encoded = net, encoded
        self._logits: torch.Tensor | None = None
        self.features = [f.contiguous() for f in encoded[1:]]

    @property
    def logits(self) -> torch.Tensor:
        """``[B, 1, H, W]`` foreign-patch logits (``sigmoid`` = predicted blend factor)."""
        if self._logits is None:
            self._logits = self._net.decode(self._encoded)
        return self._logits

    @property
    def probability(self) -> torch.Tensor:
        """``[B, 1, H, W]`` predicted foreign-patch blend factor in ``[0, 1]``."""
        return torch.sigmoid(self.logits)


class RealismNet(nn.Module):
    """A small 2-D U-Net predicting the foreign-patch blend factor per pixel.

    Args:
        channels: Image channels.
        features: :class:`~monai.networks.nets.BasicUNet` widths (6 values: 5 levels + head).
    """

    def __init__(
        self, channels: int = 1, features: tuple[int, ...] = (8, 16, 32, 64, 128, 8)
    ) -> None:
        super().__init__()
        if len(features) != 6:
            raise ValueError(f"`features` needs 6 widths (BasicUNet), got {tuple(features)}")
        self.features = tuple(int(f) for f in features)
        self.unet = BasicUNet(
            spatial_dims=2,
            in_channels=channels,
            out_channels=1,
            features=self.features,
            norm="batch",
            act="relu",
        )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` ``[B, C, H, W]`` -> encoder activations at full, 1/2, 1/4 and 1/8 resolution."""
        u = self.unet
        x0 = u.conv_0(x)
        x1 = u.down_1(x0)
        x2 = u.down_2(x1)
        return [x0, x1, x2, u.down_3(x2)]

    def decode(self, encoded: list[torch.Tensor]) -> torch.Tensor:
        """Encoder activations (:meth:`encode`) -> ``[B, 1, H, W]`` logits (BasicUNet's order)."""
        u = self.unet
        x0, x1, x2, x3 = encoded
        y = u.upcat_1(u.upcat_2(u.upcat_3(u.upcat_4(u.down_4(x3), x3), x2), x1), x0)
        return u.final_conv(y).contiguous()

    def forward(self, x: torch.Tensor) -> RealismOutput:
        """``x`` ``[B, C, H, W]`` (``H, W`` divisible by 16) -> :class:`RealismOutput`."""
        return RealismOutput(self, self.encode(x))


def foreign_patch_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    min_frac: float = 0.1,
    max_frac: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend a rectangle of another real image into each image (the FPI task).

    For image ``i`` a source image ``j != i`` of the batch, a rectangle with sides drawn in
    ``[min_frac, max_frac] * S``, a target position and a blend factor ``a ~ U(0, 1)`` are
    drawn; half of the patches come from the same position of the source (anatomy from
    another slice or subject), half from a random position (structure out of place).

    Args:
        x: ``[B, C, H, W]`` real images in ``[0, 1]`` (``B >= 2``).
        generator: Local random generator (explicit randomness).
        min_frac: Smallest patch side as a fraction of the image side.
        max_frac: Largest patch side as a fraction of the image side.

    Returns:
        ``(blended [B, C, H, W], target [B, 1, H, W])`` with ``target = a`` inside the patch
        and 0 elsewhere.

    Raises:
        ValueError: fewer than 2 images.
    """
    b, _, h, w = x.shape
    if b < 2:
        raise ValueError(f"the foreign-patch task needs a batch of >= 2 images, got {b}")
    src = (torch.arange(b) + torch.randint(1, b, (b,), generator=generator)) % b
    sizes = torch.rand(b, 2, generator=generator) * (max_frac - min_frac) + min_frac
    ph = (sizes[:, 0] * h).long().clamp(2, h)
    pw = (sizes[:, 1] * w).long().clamp(2, w)
    ty = (torch.rand(b, generator=generator) * (h - ph + 1)).long()
    tx = (torch.rand(b, generator=generator) * (w - pw + 1)).long()
    moved = torch.rand(b, generator=generator) < 0.5
    sy = torch.where(moved, (torch.rand(b, generator=generator) * (h - ph + 1)).long(), ty)
    sx = torch.where(moved, (torch.rand(b, generator=generator) * (w - pw + 1)).long(), tx)
    alpha = torch.rand(b, generator=generator)
    blended, target = x.clone(), torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device)
    for i in range(b):
        a, dy, dx = float(alpha[i]), int(ph[i]), int(pw[i])
        tgt = (slice(None), slice(int(ty[i]), int(ty[i]) + dy), slice(int(tx[i]), int(tx[i]) + dx))
        patch = x[int(src[i]), :, int(sy[i]) : int(sy[i]) + dy, int(sx[i]) : int(sx[i]) + dx]
        blended[i][tgt] = (1 - a) * x[i][tgt] + a * patch
        target[i][tgt] = a
    return blended, target


def fpi_loss(model: RealismNet) -> LossFn:
    """Binary cross-entropy of the predicted blend factor on foreign-patch batches."""

    def loss(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        blended, target = foreign_patch_batch(x, generator)
        out = model(blended.contiguous(memory_format=torch.channels_last))
        return F.binary_cross_entropy_with_logits(out.logits, target.to(out.logits))

    return loss


def train_realism_net(
    model: RealismNet,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    accelerator: str = "auto",
    progress: bool = True,
) -> RealismNet:
    """Train ``model`` on the foreign-patch task over real ``images`` ``[N, C, H, W]`` in [0, 1].

    Returns:
        The trained model on the CPU in eval mode (``channels_last``).

    Raises:
        ValueError: fewer than 2 images, or a side not divisible by 16.
    """
    if len(images) < 2:
        raise ValueError(f"the realism network needs >= 2 real images, got {len(images)}")
    if images.shape[-1] % 16 or images.shape[-2] % 16:
        shape = tuple(images.shape[-2:])
        raise ValueError(f"the realism network needs sides divisible by 16, got {shape}")
    model = fit_module(
        model.to(memory_format=torch.channels_last),
        fpi_loss(model),
        images,
        steps=steps,
        batch_size=max(2, batch_size),
        learning_rate=learning_rate,
        seed=seed,
        accelerator=accelerator,
        progress=progress,
        description="realism network",
    )
    return model.to(memory_format=torch.channels_last)

"""StyleGAN2 networks (Karras et al. 2020), plain torch: mapping, synthesis, discriminator.

Faithful to the paper where it matters for image statistics: equalised learning rate, mapping
network with a learning-rate multiplier, modulated/demodulated convolutions, per-layer noise
with learned strength, a learned constant input, the skip (toRGB) generator and the residual
discriminator with minibatch standard deviation. Simplified: up/down-sampling is bilinear /
average pooling instead of FIR filters, and one ``w`` drives every layer (no style mixing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EqualLinear",
    "EqualConv2d",
    "MappingNetwork",
    "ModulatedConv2d",
    "SynthesisNetwork",
    "Generator",
    "Discriminator",
    "channels_at",
]

_LRELU_GAIN = math.sqrt(2.0)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: ``min(channel_base // resolution, channel_max)``, >= 1."""
    return max(1, min(channel_base // resolution, channel_max))


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * _LRELU_GAIN


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate.

    Args:
        in_features: Input size.
        out_features: Output size.
        lr_mul: Learning-rate multiplier (weights stored divided by it).
        bias_init: Initial bias value.
        activation: Apply the gain-corrected leaky ReLU.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_features]`` to ``[B, out_features]``."""
        y = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return _lrelu(y) if self.activation else y


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate, optional bias and 2x average-pool downsampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.activation = activation
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, H, W]`` -> ``[B, out, H, W]`` (``H/2, W/2`` when ``down``)."""
        y = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.down:
            y = F.avg_pool2d(y, 2)
        return _lrelu(y) if self.activation else y


class MappingNetwork(nn.Module):
    """``z [B, z_dim]`` -> ``w [B, w_dim]``; tracks the average ``w`` for truncation."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_layers: int,
        lr_mul: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[
                EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation=True)
                for i in range(num_layers)
            ]
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.w_avg_beta = w_avg_beta

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """Return ``w``; in training mode also update ``w_avg``."""
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.layers(z)
        if self.training:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.lerp(w, truncation_psi)
        return w


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    padding: int = 0,
) -> torch.Tensor:
    """Modulated convolution as one grouped convolution.

    Args:
        x: ``[B, I, H, W]`` input.
        weight: ``[O, I, k, k]`` convolution weight (already gain-scaled).
        styles: ``[B, I]`` per-sample input-channel scales.
        demodulate: Rescale each output filter to unit L2 norm per sample, so that unit-variance
            inputs give unit-variance outputs.
        padding: Convolution padding.

    Returns:
        ``[B, O, H', W']``.
    """
    b, i, h, w_ = x.shape
    o = weight.shape[0]
    wgt = weight.unsqueeze(0) * styles.reshape(b, 1, i, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        wgt = wgt * torch.rsqrt(wgt.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    out = F.conv2d(
        x.reshape(1, b * i, h, w_),
        wgt.reshape(b * o, i, *weight.shape[2:]),
        padding=padding,
        groups=b,
    )
    return out.reshape(b, o, *out.shape[2:])


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution: affine(w) scales input channels, then (de)modulation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        *,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.up = up
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x [B, in, H, W]``, ``w [B, w_dim]`` -> ``[B, out, H, W]`` (``2H, 2W`` if ``up``)."""
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        styles = self.affine(w)
        if not self.demodulate:  # toRGB: StyleGAN2 folds the weight gain into the styles
            return modulated_conv2d(x, self.weight, styles * self.weight_gain, False, self.padding)
        return modulated_conv2d(x, self.weight * self.weight_gain, styles, True, self.padding)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise with learned strength + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Apply the layer; noise is drawn from ``generator`` (its device) when given."""
        x = self.conv(x, w)
        shape = (x.shape[0], 1, x.shape[2], x.shape[3])
        if generator is None:
            noise = torch.randn(shape, device=x.device, dtype=x.dtype)
        else:
            noise = torch.randn(shape, generator=generator, device=generator.device).to(x)
        x = x + noise * self.noise_strength
        return _lrelu(x + self.bias.reshape(1, -1, 1, 1))


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, to image channels."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` features -> ``[B, img_channels, H, W]``."""
        return self.conv(x, w) + self.bias.reshape(1, -1, 1, 1)


class SynthesisNetwork(nn.Module):
    """Skip-architecture synthesis: 4x4 constant -> ``resolution``; toRGB at every scale."""

    def __init__(
        self, resolution: int, img_channels: int, w_dim: int, channel_base: int, channel_max: int
    ) -> None:
        super().__init__()
        self.resolution = resolution
        c4 = channels_at(4, channel_base, channel_max)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        self.layers = nn.ModuleList([SynthesisLayer(c4, c4, w_dim)])
        self.torgbs = nn.ModuleList([ToRGB(c4, img_channels, w_dim)])
        res, c_in = 8, c4
        while res <= resolution:
            c_out = channels_at(res, channel_base, channel_max)
            self.layers.append(SynthesisLayer(c_in, c_out, w_dim, up=True))
            self.layers.append(SynthesisLayer(c_out, c_out, w_dim))
            self.torgbs.append(ToRGB(c_out, img_channels, w_dim))
            res, c_in = res * 2, c_out

    def forward(self, w: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``w [B, w_dim]`` -> image ``[B, C, resolution, resolution]`` (unbounded, ~[-1, 1])."""
        x = self.const.unsqueeze(0).expand(w.shape[0], -1, -1, -1)
        x = self.layers[0](x, w, generator)
        img = self.torgbs[0](x, w)
        for i, torgb in enumerate(self.torgbs[1:]):
            x = self.layers[1 + 2 * i](x, w, generator)
            x = self.layers[2 + 2 * i](x, w, generator)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + torgb(x, w)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator ``z [B, z_dim]`` -> ``[B, C, S, S]`` in roughly ``[-1, 1]``."""

    def __init__(
        self,
        *,
        resolution: int,
        img_channels: int,
        z_dim: int,
        w_dim: int,
        mapping_layers: int,
        mapping_lr_mul: float,
        channel_base: int,
        channel_max: int,
        output: str = "linear",
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.synthesis = SynthesisNetwork(
            resolution, img_channels, w_dim, channel_base, channel_max
        )
        self.output = output

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Generate images; ``generator`` drives the noise inputs (global RNG if ``None``)."""
        img = self.synthesis(self.mapping(z, truncation_psi), generator)
        return torch.tanh(img) if self.output == "tanh" else img


class MinibatchStd(nn.Module):
    """Append the mean over features of the per-group standard deviation as one channel."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, C + 1, H, W]``; groups of ``min(group_size, B)``."""
        b, c, h, w = x.shape
        g = math.gcd(min(self.group_size, b), b)
        y = x.reshape(g, -1, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B/g]
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (second downsamples) + 1x1 downsampling skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, H, W]`` -> ``[B, out, H/2, W/2]``."""
        return (self.skip(x) + self.conv1(self.conv0(x))) / _LRELU_GAIN


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator ``[B, C, S, S]`` in ``[-1, 1]`` -> logits ``[B]``."""

    def __init__(
        self,
        *,
        resolution: int,
        img_channels: int,
        channel_base: int,
        channel_max: int,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        self.from_rgb = EqualConv2d(
            img_channels, channels_at(resolution, channel_base, channel_max), 1, activation=True
        )
        blocks = []
        res = resolution
        while res > 4:
            blocks.append(
                DiscriminatorBlock(
                    channels_at(res, channel_base, channel_max),
                    channels_at(res // 2, channel_base, channel_max),
                )
            )
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels_at(4, channel_base, channel_max)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(c4 + 1, c4, 3, activation=True)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Return real/fake logits ``[B]`` (higher = more real)."""
        x = self.blocks(self.from_rgb(img))
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)

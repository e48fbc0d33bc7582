from __future__ import annotations

import pytest
import torch

from generators.stylegan2.losses import r1_penalty
from generators.stylegan2.networks import (
    Discriminator,
    Generator,
    MappingNetwork,
    MinibatchStd,
    modulated_conv2d,
)


def _conv_inputs(scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 16, 16, generator=g)
    weight = torch.randn(32, 64, 3, 3, generator=g)
    styles = (torch.rand(4, 64, generator=g) + 0.1) * scale
    return x, weight, styles


def test_demodulation_normalises_each_output_filter() -> None:
    # With demodulation the output variance does not depend on the style magnitude and is ~1
    # for unit-variance input (the paper's assumption), per sample.
    for scale in (0.01, 1.0, 100.0):
        x, weight, styles = _conv_inputs(scale)
        out = modulated_conv2d(x, weight, styles, demodulate=True, padding=1)
        inner = out[:, :, 1:-1, 1:-1]  # away from the zero padding
        std = inner.std(dim=(1, 2, 3))
        assert torch.allclose(std, torch.ones(4), atol=0.1), std


def test_without_demodulation_output_scales_with_style() -> None:
    x, weight, styles = _conv_inputs(1.0)
    small = modulated_conv2d(x, weight, styles, demodulate=False, padding=1)
    large = modulated_conv2d(x, weight, styles * 10.0, demodulate=False, padding=1)
    torch.testing.assert_close(large, small * 10.0, rtol=1e-4, atol=1e-3)


def test_modulated_conv_matches_per_sample_conv() -> None:
    x, weight, styles = _conv_inputs(1.0)
    out = modulated_conv2d(x, weight, styles, demodulate=False, padding=1)
    for b in range(2):
        ref = torch.nn.functional.conv2d(
            x[b : b + 1], weight * styles[b].reshape(1, -1, 1, 1), padding=1
        )
        torch.testing.assert_close(out[b : b + 1], ref, rtol=1e-4, atol=1e-4)


def test_mapping_truncation_zero_returns_average_w() -> None:
    mapping = MappingNetwork(8, 8, 2)
    mapping.w_avg.copy_(torch.arange(8.0))
    mapping.eval()
    w = mapping(torch.randn(3, 8), truncation_psi=0.0)
    torch.testing.assert_close(w, torch.arange(8.0).expand(3, 8))


def test_minibatch_std_adds_a_channel_that_sees_the_batch() -> None:
    layer = MinibatchStd(group_size=4)
    same = layer(torch.ones(4, 3, 4, 4))
    diff = layer(torch.randn(4, 3, 4, 4))
    assert same.shape == (4, 4, 4, 4)
    assert float(same[:, -1].abs().max()) < 1e-3
    assert float(diff[:, -1].min()) > 0.1


@pytest.mark.parametrize("resolution", [16, 32])
def test_generator_and_discriminator_shapes(resolution: int) -> None:
    g = Generator(
        resolution=resolution,
        img_channels=1,
        z_dim=16,
        w_dim=16,
        mapping_layers=2,
        mapping_lr_mul=0.01,
        channel_base=128,
        channel_max=16,
    )
    d = Discriminator(
        resolution=resolution, img_channels=1, channel_base=128, channel_max=16, mbstd_group=2
    )
    img = g(torch.randn(2, 16))
    assert img.shape == (2, 1, resolution, resolution)
    assert d(img).shape == (2,)


def test_noise_inputs_follow_the_given_generator() -> None:
    g = Generator(
        resolution=16,
        img_channels=1,
        z_dim=8,
        w_dim=8,
        mapping_layers=1,
        mapping_lr_mul=0.01,
        channel_base=64,
        channel_max=8,
    ).eval()
    for layer in g.synthesis.layers:
        layer.noise_strength.data.fill_(1.0)
    z = torch.randn(2, 8)
    a = g(z, generator=torch.Generator().manual_seed(1))
    b = g(z, generator=torch.Generator().manual_seed(1))
    c = g(z, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_r1_penalty_is_positive_and_differentiable() -> None:
    d = Discriminator(resolution=16, img_channels=1, channel_base=64, channel_max=8, mbstd_group=2)
    real = torch.rand(4, 1, 16, 16).requires_grad_(True)
    penalty = r1_penalty(d(real), real)
    assert torch.isfinite(penalty) and float(penalty) > 0
    penalty.backward()
    assert d.from_rgb.weight.grad is not None
    assert float(d.from_rgb.weight.grad.abs().sum()) > 0


def test_r1_penalty_requires_grad_input() -> None:
    d = Discriminator(resolution=16, img_channels=1, channel_base=64, channel_max=8)
    real = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="must require grad"):
        r1_penalty(d(real), real)

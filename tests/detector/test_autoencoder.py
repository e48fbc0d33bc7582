"""Tests of safegen_guard.detector.autoencoder."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.detector.autoencoder import AutoencoderConfig, SafeGenAutoencoder


@pytest.mark.parametrize(
    "cfg",
    [
        AutoencoderConfig(image_size=32, base_channels=8, levels=3, latent_dim=16, groups=8),
        AutoencoderConfig(
            image_size=16, channels=2, base_channels=4, levels=2, latent_dim=8, groups=2
        ),
        AutoencoderConfig(image_size=32, base_channels=4, levels=4, latent_dim=8, groups=4),
    ],
)
def test_output_shapes(cfg):
    torch.manual_seed(0)
    ae = SafeGenAutoencoder(cfg).eval()
    x = torch.rand(
        2, cfg.channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        z, feats = ae.encode(x)
        assert z.shape == (2, cfg.latent_dim)
        assert len(feats) == cfg.levels
        for i, (f, c) in enumerate(zip(feats, cfg.level_channels())):
            assert f.shape == (2, c, cfg.image_size // 2**i, cfg.image_size // 2**i)
        out_b, out_s = ae(x), ae(x, use_skips=True)
    assert out_b.shape == out_s.shape == x.shape
    assert not torch.equal(out_b, out_s)  # skips change the output
    assert bool(torch.isfinite(out_b).all())


def test_level_channels_capped():
    assert AutoencoderConfig(base_channels=16, levels=4).level_channels() == [16, 32, 64, 128]
    assert AutoencoderConfig(base_channels=128, levels=3).level_channels() == [128, 256, 256]


def test_bottleneck_path_ignores_skip_features():
    cfg = AutoencoderConfig(image_size=16, base_channels=4, levels=2, latent_dim=8, groups=2)
    ae = SafeGenAutoencoder(cfg).eval()
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
    zeros = [torch.zeros(1, 4, 16, 16), torch.zeros(1, 8, 8, 8)]
    with torch.no_grad():
        torch.testing.assert_close(ae.decode(z), ae.decode(z, zeros))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels": 1}, r"`levels` must be >= 2, got 1"),
        (
            {"image_size": 30, "levels": 3},
            r"multiple of 2\*\*\(levels-1\)=4 and at least 8, got 30",
        ),
        ({"image_size": 8, "levels": 4}, r"multiple of 2\*\*\(levels-1\)=8 and at least 16, got 8"),
        ({"groups": 3, "base_channels": 8}, r"`groups`=3 must divide every channel count"),
    ],
)
def test_validate_errors(kwargs, match):
    cfg = AutoencoderConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        cfg.validate()
    with pytest.raises(ValueError, match=match):
        SafeGenAutoencoder(cfg)

"""Tests of safegen_guard.detector.views on small synthetic phantoms."""

from __future__ import annotations

import math

import pytest
import torch

from safegen_guard.detector import views as V
from safegen_guard.detector.ops import gaussian_blur
from safegen_guard.detector.registry import build_views
from safegen_guard.detector.views import ScoringContext

S = 32


def _phantoms(n: int, seed: int, noise: float | torch.Tensor = 0.02) -> torch.Tensor:
    """Discs of random brightness with a smooth gradient plus Gaussian noise, [n, 1, S, S]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(S) - (S - 1) / 2, torch.arange(S) - (S - 1) / 2, indexing="ij"
    )
    r = torch.sqrt(yy**2 + xx**2)
    disc = (r < 12).float()[None, None]
    level = 0.4 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
    slope = 0.005 * torch.randn(n, 1, 1, 1, generator=g)
    noise = torch.as_tensor(noise, dtype=torch.float32).reshape(-1, 1, 1, 1)
    x = disc * (level + slope * xx) + noise * torch.randn(n, 1, S, S, generator=g)
    return x.clamp(0, 1)


def _ctx(x: torch.Tensor) -> ScoringContext:
    return ScoringContext(x, x, x)


def _fitted(view: V.View, seed: int = 0) -> V.View:
    n = 48
    sd = 0.02 * torch.exp(0.1 * torch.randn(n, generator=torch.Generator().manual_seed(99)))
    view.fit(_ctx(_phantoms(n, seed, sd)))
    return view


def _ring_ctx(x: torch.Tensor, clean: torch.Tensor) -> ScoringContext:
    # the ring view reads the bottleneck residual x - recon; a bottleneck cannot reproduce
    # rings, so its reconstruction is modelled as the smoothed clean image
    recon = gaussian_blur(clean, 1.0)
    return ScoringContext(x, recon, recon)


def test_ring_view_fires_on_concentric_ring():
    view = V.RingView(S)
    ref = _phantoms(48, 0)
    view.fit(_ring_ctx(ref, ref))
    x = _phantoms(6, seed=1)
    yy, xx = torch.meshgrid(torch.arange(S) - S // 2, torch.arange(S) - S // 2, indexing="ij")
    r = torch.sqrt(yy.float() ** 2 + xx.float() ** 2)  # rings circle the rotation centre
    ring = 0.15 * (torch.abs(r - 7) < 0.7).float()
    clean_stat, clean_map = view(_ring_ctx(x, x))
    ring_stat, ring_map = view(_ring_ctx((x + ring).clamp(0, 1), x))
    assert clean_stat.shape == (6,) and ring_map.shape == (6, 1, S, S)
    assert bool((ring_stat > 2 * clean_stat).all())
    assert float(ring_map.mean()) > float(clean_map.mean())


def test_spectrum_view_fires_on_single_frequency_stripe():
    view = _fitted(V.SpectrumView(S))
    x = _phantoms(6, seed=2)
    stripe = 0.1 * torch.sin(2 * math.pi * 6 * torch.arange(S) / S)[None, None, None, :]
    clean_stat, _ = view(_ctx(x))
    stripe_stat, stripe_map = view(_ctx((x + stripe).clamp(0, 1)))
    assert stripe_map.shape == (6, 1, S, S)
    assert float(stripe_stat.min()) > float(clean_stat.max()) + 2


def test_noise_level_view_is_two_sided():
    view = _fitted(V.NoiseLevelView())
    normal, _ = view(_ctx(_phantoms(6, seed=3, noise=0.02)))
    low, _ = view(_ctx(_phantoms(6, seed=3, noise=0.004)))
    high, high_map = view(_ctx(_phantoms(6, seed=3, noise=0.08)))
    assert bool((normal >= 0).all()) and high_map.shape == (6, 1, S, S)
    assert float(low.min()) > float(normal.max()) + 2
    assert float(high.min()) > float(normal.max()) + 2


def test_sharpness_view_has_no_map_and_fires_on_directional_blur():
    view = _fitted(V.SharpnessView(S))
    x = _phantoms(6, seed=4)
    k = torch.ones(1, 1, 1, 5) / 5
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 0, 0), "reflect"), k)
    clean, m = view(_ctx(x))
    assert m is None and not V.SharpnessView.has_map
    assert bool((view(_ctx(blurred))[0] > clean + 2).all())


def _two_textures(n: int, seed: int) -> torch.Tensor:
    """Phantoms whose left half carries 3x the noise of the right half, [n, 1, S, S]."""
    x = _phantoms(n, seed, noise=0.0)
    g = torch.Generator().manual_seed(seed + 1000)
    sd = torch.where(torch.arange(S) < S // 2, 0.06, 0.02).view(1, 1, 1, S)
    return (x + (x > 0) * sd * torch.randn(n, 1, S, S, generator=g)).clamp(0, 1)


def test_texture_view_learns_where_texture_is_normal():
    view = V.TextureView(S)
    view.fit(_ctx(_two_textures(64, seed=0)))
    left = view.position_mean[S // 2, 8:12].mean()
    right = view.position_mean[S // 2, 20:24].mean()
    assert float(left - right) > 0.7  # log(3) = 1.1, smoothed across the border
    assert bool(torch.isfinite(view.bin_mean).all()) and bool((view.position_sd >= 0.05).all())

    x = _two_textures(6, seed=1)
    patch = torch.zeros(1, 1, S, S, dtype=torch.bool)
    patch[..., 12:20, 6:13] = True  # inside the noisy left half of the disc
    smooth = torch.where(patch, gaussian_blur(x, 1.5), x)  # texture wiped out locally
    clean_stat, clean_map = view(_ctx(x))
    blur_stat, blur_map = view(_ctx(smooth))
    assert clean_map.shape == (6, 1, S, S)
    # the smoothed patch keeps about the right half's noise level, which is normal *there*
    assert float(blur_stat.min()) > float(clean_stat.max()) + 1
    inside = (blur_map * patch).sum() / patch.sum() / 6
    assert float(inside) > 2 * float(blur_map.mean())


def test_texture_view_pools_sparse_bins_and_ignores_unseen_pixels():
    ctx = _ctx(_phantoms(16, seed=2))
    sparse = V.TextureView(S, min_pixels=10**9)  # no brightness bin has enough pixels
    sparse.fit(ctx)
    assert bool((sparse.bin_mean == sparse.bin_mean[0]).all())
    dense = V.TextureView(S, min_pixels=1)
    dense.fit(ctx)
    assert len(dense.bin_mean.unique()) > 2 and len(dense.position_sd.unique()) > 2
    # corners are never body: not scored, whatever happens there
    assert not bool(dense.position_known[0, 0]) and bool(dense.position_known[S // 2, S // 2])
    x = _phantoms(4, seed=3)
    corner = x.clone()
    corner[..., :2, :2] = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    stat, m = dense(ScoringContext(corner, x, x))  # foreground from the clean "recon"
    assert torch.allclose(stat, dense(_ctx(x))[0]) and float(m[..., :2, :2].abs().max()) == 0


def test_residual_view_is_zero_for_perfect_reconstruction():
    x = _phantoms(2, seed=5)
    view = V.ResidualView("recon", "recon")
    stat, m = view(ScoringContext(x, x, x))
    assert float(stat.abs().max()) == 0.0 and m.shape == x.shape
    stat2, _ = view(ScoringContext(x, (x + 0.1).clamp(0, 1), x))
    assert bool((stat2 > 0.05).all())


def test_build_views_order_and_unknown_name():
    views = build_views(["ring", "recon", "noise"], S)
    assert list(views.keys()) == ["recon", "noise", "ring"]  # registration order
    names = ("recon", "denoise", "noise", "texture", "spectrum", "sharpness", "ring")
    assert list(build_views(names, S).keys()) == list(names)
    with pytest.raises(ValueError, match=r"unknown view\(s\) \['bogus', 'zz'\]; registered"):
        build_views(["recon", "zz", "bogus"], S)

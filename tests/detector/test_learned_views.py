"""Tests of the realism network and the learned views on tiny synthetic data."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.detector import learned_views as LV
from safegen_guard.detector.realism import (
    RealismNet,
    foreign_patch_batch,
    train_realism_net,
)
from safegen_guard.detector.views import ScoringContext

S = 32


def _images(n: int, seed: int) -> torch.Tensor:
    """Discs with a bright inner structure plus noise, [n, 1, S, S] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(S) - S / 2, torch.arange(S) - S / 2, indexing="ij")
    r = torch.sqrt(yy**2 + xx**2)
    base = 0.5 * (r < 12).float() + 0.3 * (r < 5).float()
    x = base[None, None] + 0.03 * torch.randn(n, 1, S, S, generator=g)
    return x.clamp(0, 1)


@pytest.fixture(scope="module")
def net() -> RealismNet:
    torch.manual_seed(0)
    model = RealismNet(features=(4, 8, 8, 16, 16, 4))
    return train_realism_net(
        model,
        _images(16, 0),
        steps=8,
        batch_size=8,
        learning_rate=1e-3,
        seed=0,
        accelerator="cpu",
        progress=False,
    )


def _ctx(x: torch.Tensor, net: RealismNet) -> ScoringContext:
    return ScoringContext(x, x, x, net)


def test_foreign_patch_batch_targets_and_blend():
    x = _images(6, 1)
    g = torch.Generator().manual_seed(3)
    blended, target = foreign_patch_batch(x, g)
    assert blended.shape == x.shape and target.shape == (6, 1, S, S)
    assert float(target.min()) >= 0 and float(target.max()) <= 1
    inside = target > 0
    assert bool(inside.flatten(1).any(1).all())  # every image got a patch
    assert torch.equal(blended[~inside.expand_as(x)], x[~inside.expand_as(x)])  # rest untouched
    # same generator state -> same batch
    b2, t2 = foreign_patch_batch(x, torch.Generator().manual_seed(3))
    assert torch.equal(blended, b2) and torch.equal(target, t2)
    with pytest.raises(ValueError, match=">= 2 images"):
        foreign_patch_batch(x[:1], g)


def test_realism_net_output_shapes(net):
    out = net(_images(3, 2))
    assert out.logits.shape == (3, 1, S, S)
    assert [tuple(f.shape[-2:]) for f in out.features] == [(16, 16), (8, 8), (4, 4)]
    p = out.probability
    assert float(p.min()) >= 0 and float(p.max()) <= 1


def test_train_realism_net_validates():
    with pytest.raises(ValueError, match="divisible by 16"):
        train_realism_net(
            RealismNet(), torch.rand(4, 1, 24, 24), steps=1, batch_size=2, learning_rate=1e-3
        )
    with pytest.raises(ValueError, match="6 widths"):
        RealismNet(features=(4, 8))


@pytest.mark.parametrize("view_cls", [LV.FPIView, LV.PatchDensityView, LV.FeatureDistanceView])
def test_learned_view_fit_score_shapes_range_determinism(net, view_cls):
    view = view_cls()
    with torch.no_grad():
        view.fit(_ctx(_images(12, 3), net))
        x = _images(5, 4)
        s1, m1 = view(_ctx(x, net))
        s2, m2 = view(_ctx(x, net))
    assert s1.shape == (5,) and m1.shape == (5, 1, S, S)
    assert bool(torch.isfinite(s1).all()) and float(m1.min()) >= 0
    if view_cls is LV.FPIView:
        assert float(m1.max()) <= 1
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(m1, m2)


def test_patch_density_save_load_roundtrip_and_out_of_bank_patches(net):
    view = LV.PatchDensityView(bank_size=64)
    real = _images(12, 5)
    with torch.no_grad():
        view.fit(_ctx(real, net))
        assert view.bank.shape[0] == 64
        clean, _ = view(_ctx(_images(4, 6), net))
        odd = _images(4, 6)
        odd[:, :, 4:14, 4:14] = torch.rand(4, 1, 10, 10, generator=torch.Generator().manual_seed(0))
        bad, _ = view(_ctx(odd, net))
    assert bool((bad > clean).all())  # patches no real image has are far from the bank
    fresh = LV.PatchDensityView(bank_size=64)
    fresh.load_state_dict(view.state_dict())
    with torch.no_grad():
        again, _ = fresh(_ctx(odd, net))
    torch.testing.assert_close(again, bad)
    with pytest.raises(RuntimeError, match="empty memory bank"):
        LV.PatchDensityView()(_ctx(odd, net))


def test_coreset_covers_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    clusters = torch.randn(5, 8, generator=g) * 10
    points = (clusters[:, None] + 0.1 * torch.randn(5, 200, 8, generator=g)).reshape(-1, 8)
    core = LV.coreset(points, 5, seed=1)
    assert core.shape == (5, 8)
    # one centre per cluster: every point is within 2 of a centre
    d = torch.cdist(points, core).min(1).values
    assert float(d.max()) < 2.0
    torch.testing.assert_close(core, LV.coreset(points, 5, seed=1))
    assert LV.coreset(points[:3], 5).shape == (3, 8)


def test_nearest_neighbours_exact_and_ivf_agree_with_torch(monkeypatch):
    g = torch.Generator().manual_seed(2)
    bank, q = torch.randn(300, 6, generator=g), torch.randn(40, 6, generator=g)
    want = torch.cdist(q, bank).min(1).values
    torch.testing.assert_close(LV.NearestNeighbours(bank).distance(q), want, atol=1e-4, rtol=1e-4)
    monkeypatch.setattr(LV, "EXACT_SEARCH_LIMIT", 100)  # force the IVF index
    ivf = LV.NearestNeighbours(bank, nprobe=1000)  # probing every list: exact again
    torch.testing.assert_close(ivf.distance(q), want, atol=1e-4, rtol=1e-4)


def _disc(n: int, seed: int, radius: float, level: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(S) - S / 2, torch.arange(S) - S / 2, indexing="ij")
    base = level * (torch.sqrt(yy**2 + xx**2) < radius).float()
    return (base[None, None] + 0.03 * torch.randn(n, 1, S, S, generator=g)).clamp(0, 1)


def test_image_density_fit_score_roundtrip_and_far_images(net):
    view = LV.ImageDensityView(k=3)
    assert not view.has_map
    with torch.no_grad():
        view.fit(_ctx(_disc(12, 7, 10, 0.5), net))
        assert view.bank.shape[0] == 12 and view.center.shape == view.scale.shape
        clean, m = view(_ctx(_disc(4, 8, 10, 0.5), net))
        again, _ = view(_ctx(_disc(4, 8, 10, 0.5), net))
        # a larger, brighter head: locally the same texture, globally unlike every real image
        big, _ = view(_ctx(_disc(4, 8, 14, 0.9), net))
    assert m is None and clean.shape == (4,) and bool(torch.isfinite(clean).all())
    torch.testing.assert_close(clean, again)
    assert float(big.min()) > float(clean.max())
    fresh = LV.ImageDensityView(k=3)
    fresh.load_state_dict(view.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(_ctx(_disc(4, 8, 14, 0.9), net))[0], big)
    with pytest.raises(RuntimeError, match="empty bank"):
        LV.ImageDensityView()(_ctx(_disc(2, 0, 10, 0.5), net))
    with pytest.raises(ValueError, match=">= 1"):
        LV.ImageDensityView(k=0)


def test_image_density_bank_subset_is_seeded(net):
    with torch.no_grad():
        ctx = _ctx(_disc(10, 9, 10, 0.5), net)
        a, b = LV.ImageDensityView(max_bank=4, seed=1), LV.ImageDensityView(max_bank=4, seed=1)
        a.fit(ctx)
        b.fit(ctx)
    assert a.bank.shape[0] == 4
    torch.testing.assert_close(a.bank, b.bank)


def test_nearest_neighbours_mean_of_k():
    g = torch.Generator().manual_seed(4)
    bank, q = torch.randn(50, 3, generator=g), torch.randn(7, 3, generator=g)
    want = torch.cdist(q, bank).topk(4, largest=False).values.mean(1)
    nn_ = LV.NearestNeighbours(bank)
    torch.testing.assert_close(nn_.distance(q, k=4), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        nn_.distance(q, k=500), torch.cdist(q, bank).mean(1), atol=1e-4, rtol=1e-4
    )

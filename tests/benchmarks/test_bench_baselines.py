"""Every baseline fits and scores with the shared interface on tiny data."""

from __future__ import annotations

import pytest
import torch

from benchmarks.baselines import BASELINES
from benchmarks.baselines.dia import dissolve, nt_xent
from benchmarks.baselines.phanes import random_box_masks
from benchmarks.guard_eval import calibrate
from safegen_guard.config import GuardConfig


def _blobs(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    r = 0.55 + 0.1 * torch.rand(n, 1, 1, 1, generator=g)
    img = ((xx**2 + yy**2) < r**2).float() * (0.5 + 0.3 * torch.rand(n, 1, 1, 1, generator=g))
    return (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_fit_score_shapes(name: str) -> None:
    cfg = GuardConfig.profile("tiny", progress=False, accelerator="cpu")
    train, val = _blobs(24, 0), _blobs(40, 1)
    method = BASELINES[name](cfg).fit(train, val, budget_steps=2, seed=0)
    scores, maps = method.score_chunked(val[:5], chunk=3)
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    if method.localises:
        assert maps is not None and maps.shape == (5, 1, 32, 32) and (maps >= 0).all()
    else:
        assert maps is None
    cal = calibrate(method, val, val > 0.1, 0.05, 0.005)
    assert (scores > cal.threshold).float().mean() <= 1.0
    assert (cal.pixel_threshold is None) == (not method.localises)
    assert method.describe()["label"] == method.label and "re-implementation" in (
        method.label if name in ("dae", "phanes", "dia") else "re-implementation"
    )


def test_building_blocks() -> None:
    g = torch.Generator().manual_seed(0)
    m = random_box_masks(torch.Size([4, 1, 32, 32]), g)
    assert m.shape == (4, 1, 32, 32) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m.flatten(1).sum(1) > 0).all()
    x = _blobs(4, 2)
    assert dissolve(x, g).shape == x.shape
    z = torch.randn(6, 8, generator=g)
    assert nt_xent(z, z) < nt_xent(z, torch.randn(6, 8, generator=g))

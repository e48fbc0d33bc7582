"""SHAP additivity on a tiny predictor, distillation, and the combine/threshold math."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.explain.combine import (
    calibrated_unit,
    combine_maps,
    fit_combination,
    simplex_grid,
)
from safegen_guard.explain.distill import ScorePredictor, distil_predictor
from safegen_guard.explain.shap_maps import ShapMap


def _predictor() -> ScorePredictor:
    f = ScorePredictor(image_size=8, width=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in f.parameters():  # fixed, well-scaled weights (default init is near-constant)
            p.copy_(0.8 * torch.randn(p.shape, generator=g))
    return f.eval()


def test_deep_shap_is_additive() -> None:
    g = torch.Generator().manual_seed(1)
    f = _predictor()
    bg, x = torch.rand(6, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    phi = ShapMap(f, bg, "deep").attribute(x)
    with torch.no_grad():
        expected = f(x)[:, 0] - f(bg).mean()
    assert phi.shape == x.shape
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(phi.sum((1, 2, 3)), expected, rtol=1e-3, atol=1e-4)


def test_shap_under_inference_mode_and_bad_method() -> None:
    g = torch.Generator().manual_seed(2)
    f = _predictor()
    bg, x = torch.rand(4, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    ref = ShapMap(f, bg, "deep").attribute(x)
    with torch.inference_mode():
        phi = ShapMap(f, bg, "deep").attribute(x.clone())
    torch.testing.assert_close(phi, ref)
    with pytest.raises(ValueError, match="`method` must be one of"):
        ShapMap(f, bg, "kernel")


def test_distillation_reduces_loss() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = x.flatten(1).amax(1) * 4 - 2
    losses = distil_predictor(ScorePredictor(8, width=4), x, y, steps=150, batch_size=32)
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        distil_predictor(ScorePredictor(8), x, y, steps=0)


def test_distillation_progress_counts_steps_of_the_total(capsys) -> None:
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    distil_predictor(ScorePredictor(8, width=2), x, x.mean((1, 2, 3)), steps=7, batch_size=4)
    assert capsys.readouterr().out == ""  # quiet by default
    distil_predictor(
        ScorePredictor(8, width=2), x, x.mean((1, 2, 3)), steps=7, batch_size=4, progress=True
    )
    out = capsys.readouterr().out
    assert "explainer: 100%" in out and "7/7 [" in out and "mse=" in out


def test_calibrated_unit_and_combine_by_hand() -> None:
    m = torch.tensor([0.0, 1.0, 3.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(
        calibrated_unit(m, 1.0), torch.tensor([0.0, 0.5, 0.75]).view(1, 1, 1, 3)
    )
    maps = torch.tensor([[0.2, 1.0], [0.6, 0.0]]).view(1, 2, 1, 2)  # K=2 maps of 2 pixels
    heat = combine_maps(maps, torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(heat, torch.tensor([[0.5, 0.25]]).view(1, 1, 1, 2))
    with pytest.raises(ValueError, match="sum to 1"):
        combine_maps(maps, torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        calibrated_unit(m, 0.0)


def test_simplex_grid_and_fit_combination_recover_the_informative_map() -> None:
    grid = simplex_grid(3, 0.5)
    assert grid.shape == (6, 3) and torch.allclose(grid.sum(1), torch.ones(6))
    g = torch.Generator().manual_seed(4)
    gt = torch.zeros(4, 1, 8, 8, dtype=torch.bool)
    gt[:, :, 2:5, 3:6] = True
    noise = torch.rand(4, 1, 8, 8, generator=g)
    informative = 0.3 + 0.5 * gt.float()
    maps = torch.cat([noise, informative], 1)
    alpha, tau, dice = fit_combination(maps, gt, alphas=simplex_grid(2, 0.5))
    assert dice == pytest.approx(1.0)
    assert alpha.tolist() == [0.0, 1.0]
    assert torch.equal(combine_maps(maps, alpha) > tau, gt)
    with pytest.raises(ValueError, match="`gt` must be bool"):
        fit_combination(maps, gt.float())

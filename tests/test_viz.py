"""Overlays, mask contours, titled grids and atomic PNG writes."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from safegen_guard.verdict import Verdict
from safegen_guard.viz import (
    mask_boundary,
    overlay,
    overlay_grid,
    save_png,
    to_uint8,
    verdict_panel,
    verdict_titles,
)


def test_overlay_alpha_extremes_and_scale():
    img, heat = torch.rand(1, 8, 8), torch.rand(8, 8)
    gray = overlay(img, heat, alpha=0.0)
    assert gray.shape == (8, 8, 3) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[..., 0], to_uint8(img))
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    full = overlay(img, heat, alpha=1.0, scale=3)
    ref = np.round(matplotlib.colormaps["inferno"](heat.numpy())[..., :3] * 255).astype(np.uint8)
    assert full.shape == (24, 24, 3)
    np.testing.assert_allclose(full[::3, ::3].astype(int), ref.astype(int), atol=1)


def test_mask_boundary_matches_scipy_erosion():
    rng = np.random.default_rng(0)
    mask = ndimage.binary_dilation(rng.random((20, 20)) > 0.9, iterations=2)
    ref = mask & ~ndimage.binary_erosion(mask, border_value=0)
    np.testing.assert_array_equal(mask_boundary(mask), ref)


def test_overlay_draws_contour_in_green():
    mask = torch.zeros(1, 9, 9, dtype=torch.bool)
    mask[0, 2:7, 2:7] = True
    out = overlay(torch.zeros(1, 9, 9), torch.zeros(9, 9), mask, alpha=0.0)
    green = (out == [0, 255, 0]).all(-1)
    assert green.sum() == 16 and green[2, 2] and not green[4, 4] and not green[0, 0]


def test_overlay_handles_nan_and_rejects_bad_shapes():
    img = torch.full((1, 4, 4), float("nan"))
    assert overlay(img, torch.zeros(4, 4), alpha=0.0).max() == 0
    with pytest.raises(ValueError, match=r"`heatmap` must be \(4, 4\), got \(5, 5\)"):
        overlay(torch.rand(4, 4), torch.rand(5, 5))
    with pytest.raises(ValueError, match=r"`mask` must be \(4, 4\)"):
        overlay(torch.rand(4, 4), torch.rand(4, 4), torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\], got 1.5"):
        overlay(torch.rand(4, 4), torch.rand(4, 4), alpha=1.5)
    with pytest.raises(ValueError, match="`scale` must be a positive int, got 0"):
        overlay(torch.rand(4, 4), torch.rand(4, 4), scale=0)


def _verdict() -> Verdict:
    return Verdict(
        score=torch.tensor([0.2, 2.5, 0.1]),
        p_value=torch.tensor([0.6, 0.003, 0.8]),
        unsafe=torch.tensor([False, True, False]),
        anomaly_map=torch.rand(3, 1, 16, 16),
        mask=torch.rand(3, 1, 16, 16) > 0.8,
        reasons=[(), ("noise",), ()],
    )


def test_verdict_titles():
    assert verdict_titles(_verdict()) == ["p=0.6 safe", "p=0.003 unsafe (noise)", "p=0.8 safe"]


def test_overlay_grid_layout():
    grid = overlay_grid(torch.rand(3, 1, 16, 16), _verdict(), ncol=2, scale=2)
    # titles wrap to the 32 px tile width (5 characters a line, 3 lines at most): no padding
    tile_h, tile_w = 32 + 3 * 12 + 2, 32 + 2
    assert grid.dtype == np.uint8 and grid.shape == (2 * tile_h, 2 * tile_w, 3)
    assert grid[tile_h:, tile_w:].max() == 0  # 4th cell empty
    wide = overlay_grid(
        torch.rand(8, 1, 64, 64),
        heatmaps=torch.rand(8, 1, 64, 64),
        ncol=8,
        titles=["p=0.0001 unsafe (recon,denoise,texture,spectrum,ring)"] * 8,
    )
    assert wide.shape[1] == 8 * (128 + 2)  # tiles keep their width whatever the title
    dark = float((wide.max(-1) == 0).mean())
    assert dark < 0.3, dark
    plain = overlay_grid(torch.rand(2, 1, 16, 16), heatmaps=torch.rand(2, 1, 16, 16), ncol=4)
    assert plain.shape == (34, 2 * 34, 3)
    with pytest.raises(ValueError, match="needs a `verdict` or `heatmaps`"):
        overlay_grid(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="must have 2 entries like `images`"):
        overlay_grid(torch.rand(2, 1, 4, 4), heatmaps=torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="`ncol` must be a positive int, got 0"):
        overlay_grid(torch.rand(2, 1, 4, 4), heatmaps=torch.rand(2, 1, 4, 4), ncol=0)


def test_verdict_panel_shows_every_map_and_a_legend():
    maps = {"heatmap": torch.rand(1, 32, 32), "SHAP": torch.rand(1, 32, 32)}
    mask = torch.rand(1, 32, 32) > 0.5
    panel = verdict_panel(torch.rand(1, 32, 32), maps, mask, "p=0.01 unsafe (noise)")
    n_tiles = 4  # image, heatmap, SHAP, mask
    assert panel.shape == (2 * 12 + 12 + 128 + 2 + 24, n_tiles * (128 + 2), 3)
    assert (panel == [0, 255, 0]).all(-1).any()  # mask contour on the heatmap
    with pytest.raises(ValueError, match="`min_size` must be a positive int, got 0"):
        verdict_panel(torch.rand(1, 8, 8), maps, None, "t", min_size=0)


def test_save_png_roundtrip(tmp_path):
    arr = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3)) * 5
    path = save_png(arr, tmp_path / "a" / "x.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), arr)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.png"]
    with pytest.raises(ValueError, match=r"`array` must be uint8 \[H, W\] or \[H, W, 3\]"):
        save_png(arr.astype(np.float32), tmp_path / "y.png")

"""Tests of benchmarks.mask_choice on hand-made maps with a known best setting."""

from __future__ import annotations

import pytest
import torch

from benchmarks.mask_choice import MapCell, Setting, dice_grid, leave_one_family_out


def _cells(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[MapCell]]:
    """Real maps (noise) and three families whose square is lit in map ``good`` only."""
    g = torch.Generator().manual_seed(seed)
    val = torch.rand(8, 2, 32, 32, generator=g)
    val_fg = torch.ones(8, 1, 32, 32, dtype=torch.bool)
    cells = []
    for i, fam in enumerate(("a", "b", "c")):
        gt = torch.zeros(8, 1, 32, 32, dtype=torch.bool)
        gt[:, :, 4 + 6 * i : 14 + 6 * i, 8:18] = True
        maps = torch.rand(8, 2, 32, 32, generator=g)
        maps[:, 0] += 3.0 * gt[:, 0]  # "good" lights the region; "bad" is noise, often above
        maps[:, 1] += 3.0 * (torch.rand(8, 32, 32, generator=g) > 0.9)
        cells.append(MapCell(fam, f"k{fam}", "strong", fam == "c", maps, gt))
    return val, val_fg, cells


def test_grid_and_leave_one_out_pick_the_map_that_localises():
    val, val_fg, cells = _cells()
    settings = [
        Setting(views, r, f)
        for views in (("good", "bad"), ("good",), ("bad",))
        for r in (0, 2)
        for f in (0.01, 0.2)
    ]
    grid = dice_grid(["good", "bad"], val, val_fg, cells, settings, image_size=64)
    assert set(grid) == set(settings) and all(len(v) == 3 for v in grid.values())
    assert all(0.0 <= d <= 1.0 for v in grid.values() for d in v)
    best = max(grid, key=lambda s: sum(grid[s]))
    assert best.views == ("good",)
    assert sum(grid[best]) > sum(grid[Setting(("good", "bad"), best.radius, best.pixel_fpr)])
    assert min(grid[Setting(("good",), 0, 0.2)]) > max(grid[Setting(("bad",), 0, 0.2)])
    chosen = leave_one_family_out(grid, cells)
    assert sorted(chosen) == ["a", "b", "c"]
    for fam, (setting, unseen) in chosen.items():
        assert setting.views == ("good",)
        i = "abc".index(fam)
        assert unseen == pytest.approx(grid[setting][i])


def test_tau_comes_from_the_real_maps_at_the_pixel_rate():
    """A higher pixel rate lowers ``tau``: the mask only grows."""
    val, val_fg, cells = _cells(1)
    lo, hi = Setting(("good",), 0, 0.01), Setting(("good",), 0, 0.5)
    grid = dice_grid(["good", "bad"], val, val_fg, cells[:1], [lo, hi], image_size=64)
    # with half of the real pixels above tau the noise floods the mask: Dice falls
    assert grid[hi][0] < grid[lo][0]


def test_leave_one_out_needs_two_families():
    val, val_fg, cells = _cells(2)
    s = Setting(("good",), 0, 0.05)
    grid = dice_grid(["good", "bad"], val, val_fg, cells[:1], [s], image_size=64)
    with pytest.raises(ValueError, match="needs two families or more"):
        leave_one_family_out(grid, cells[:1])


def test_command_line_on_a_saved_guard(tiny_guard, tmp_path):
    """End to end on the tiny guard: tables written, product and reference rows present."""
    import json

    from benchmarks.mask_choice import main

    tiny_guard.save(tmp_path / "guard")
    out = tmp_path / "out"
    argv = ["--guard", str(tmp_path / "guard"), "--data", "mni152", "--test-variants", "1"]
    result = main([*argv, "--views", "denoise,texture", "--out", str(out)])
    saved = json.loads((out / "mask_mni152.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert "| elastic | yes |" in (out / "mask_mni152.md").read_text()
    assert result["views"] == ["denoise", "texture"] and result["image_size"] == 32
    fams = {r["family"] for r in result["families"]}
    assert {"blur", "noise", "elastic", "swirl", "region_flip"} <= fams
    for r in result["families"]:
        assert 0.0 <= r["unseen"] <= 1.0 and 0.0 <= r["product"] <= 1.0
        assert 0.0 < r["whole_foreground"] < 1.0
        assert set(r["chosen"]["views"]) <= {"denoise", "texture"}
    with pytest.raises(ValueError, match=r"need a guard holding them"):
        main([*argv, "--views", "nope", "--out", str(out)])

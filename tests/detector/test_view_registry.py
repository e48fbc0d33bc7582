"""Tests of the view registry: built-ins, defaults, user views."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.config import GuardConfig
from safegen_guard.detector import registry as R
from safegen_guard.detector.views import ScoringContext, View


class _EdgeView(View):
    name = "edges_test"

    def forward(self, ctx: ScoringContext):
        m = torch.nn.functional.pad(ctx.x.diff(dim=-1).abs(), (0, 1)) * ctx.foreground
        return m.flatten(1).amax(1), m


def test_builtins_and_defaults():
    names = R.list_views()
    assert names[:7] == ("recon", "denoise", "noise", "texture", "spectrum", "sharpness", "ring")
    assert {"fpi", "patch_density", "ams"} <= set(names)
    assert set(R.default_views()) <= set(names)
    assert R.view_spec("fpi").needs_realism and not R.view_spec("noise").needs_realism
    with pytest.raises(ValueError, match="unknown view 'nope'"):
        R.view_spec("nope")


def test_register_user_view_and_use_it_in_a_config():
    R.register_view("edges_test", lambda size: _EdgeView(), summary="edges")
    try:
        assert "edges_test" not in R.default_views()
        cfg = GuardConfig.profile("tiny", views=("recon", "edges_test"))
        views = R.build_views(cfg.views, 32)
        assert list(views) == ["recon", "edges_test"]
        with pytest.raises(ValueError, match="already registered"):
            R.register_view("edges_test", lambda size: _EdgeView())
        R.register_view("edges_test", lambda size: _EdgeView(), overwrite=True)
    finally:
        R._REGISTRY.pop("edges_test", None)
    with pytest.raises(ValueError, match=r"must match"):
        R.register_view("Bad Name", lambda size: _EdgeView())
    with pytest.raises(TypeError, match="must be callable"):
        R.register_view("fine_name", 3)


def test_realism_views_need_a_size_divisible_by_16():
    with pytest.raises(ValueError, match="divisible by 16, got 40"):
        GuardConfig.profile("tiny", image_size=40, views=("fpi",))
    GuardConfig.profile("tiny", image_size=40, views=("recon",))  # no realism view: fine

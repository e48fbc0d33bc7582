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


def test_default_views_per_modality_are_the_protocols_choices():
    mri, ct, union = R.default_views("mri"), R.default_views("ct"), R.default_views()
    assert set(mri) == {"image_density", "texture", "denoise", "noise"}
    assert set(ct) == {"patch_density", "texture", "ring", "recon", "noise"}
    assert set(union) == set(mri) | set(ct)
    assert list(mri) == [n for n in R.list_views() if n in mri]  # column (registration) order
    with pytest.raises(ValueError, match=r"unknown modality 'pet'; expected one of"):
        R.default_views("pet")


def test_register_a_view_as_default_for_one_modality():
    R.register_view("edges_test", lambda size: _EdgeView(), default="ct")
    try:
        assert "edges_test" in R.default_views("ct") and "edges_test" in R.default_views()
        assert "edges_test" not in R.default_views("mri")
    finally:
        R._REGISTRY.pop("edges_test", None)
    with pytest.raises(ValueError, match="`default` must be a bool, a modality"):
        R.register_view("edges_test", lambda size: _EdgeView(), default=("mri", "pet"))
    assert "edges_test" not in R.list_views()

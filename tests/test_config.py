"""Tests of safegen_guard.config.GuardConfig."""

from __future__ import annotations

import dataclasses
import json

import pytest

from safegen_guard.config import PROFILES, GuardConfig
from safegen_guard.detector.registry import default_views


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"image_size": 0}, ValueError, r"`image_size` must be a positive int, got 0"),
        ({"levels": -2}, ValueError, r"`levels` must be a positive int, got -2"),
        ({"max_steps": 1.5}, TypeError, r"`max_steps` must be an int, got float"),
        ({"batch_size": True}, TypeError, r"`batch_size` must be an int, got bool"),
        ({"score_batch_size": 0}, ValueError, r"`score_batch_size` must be a positive int"),
        ({"false_reject_rate": 0.0}, ValueError, r"`false_reject_rate` must be in \(0, 1\)"),
        ({"false_reject_rate": 1.0}, ValueError, r"`false_reject_rate` must be in \(0, 1\)"),
        ({"pixel_fpr": 2}, ValueError, r"`pixel_fpr` must be in \(0, 1\), got 2"),
        ({"views": ()}, ValueError, r"`views` must name at least one view"),
        ({"views": ("recon", "bogus")}, ValueError, r"`views` must be one of .* got 'bogus'"),
    ],
)
def test_validation_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GuardConfig(**kwargs)


def test_profiles():
    assert PROFILES == ("tiny", "quick", "full")
    tiny, quick, full = (GuardConfig.profile(n) for n in PROFILES)
    assert (tiny.image_size, tiny.levels, tiny.progress) == (32, 3, False)
    assert quick == GuardConfig()
    assert (full.image_size, full.base_channels, full.levels) == (128, 32, 5)
    over = GuardConfig.profile("tiny", max_steps=5, accelerator="cpu")
    assert over.max_steps == 5 and over.image_size == 32 and over.accelerator == "cpu"
    with pytest.raises(ValueError, match=r"`profile` must be one of \['tiny', 'quick', 'full'\]"):
        GuardConfig.profile("huge")
    with pytest.raises(ValueError, match=r"`image_size` must be a positive int, got 0"):
        GuardConfig.profile("tiny", image_size=0)  # overrides are validated too


def test_views_default_and_list_converted_to_tuple():
    assert GuardConfig().views == default_views()
    assert "patch_density" in default_views()  # learned realism evidence
    cfg = GuardConfig(views=["recon", "noise"])
    assert cfg.views == ("recon", "noise") and isinstance(cfg.views, tuple)
    hash(cfg)  # frozen dataclass with tuple fields is hashable


def test_modality_chooses_the_default_views():
    assert GuardConfig(modality="mri").views == default_views("mri")
    assert GuardConfig(modality="ct").views == default_views("ct")
    assert "ring" not in GuardConfig(modality="mri").views
    # a profile override resolves the views with the overridden modality
    assert GuardConfig.profile("tiny", modality="ct").views == default_views("ct")
    # explicit views win over the modality's defaults
    assert GuardConfig(modality="mri", views=("ring",)).views == ("ring",)
    assert GuardConfig.from_dict(GuardConfig(modality="ct").to_dict()) == GuardConfig(modality="ct")
    with pytest.raises(ValueError, match="`modality` must be one of"):
        GuardConfig(modality="pet")
    with pytest.raises(ValueError, match="`views` must name at least one view"):
        GuardConfig(views=())


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GuardConfig().image_size = 8  # type: ignore[misc]


def test_dict_round_trip_through_json():
    cfg = GuardConfig.profile("tiny", views=("recon", "ring"), seed=3, learning_rate=2e-4)
    d = cfg.to_dict()
    assert d["views"] == ["recon", "ring"]
    back = GuardConfig.from_dict(json.loads(json.dumps(d)))
    assert back == cfg
    assert GuardConfig.from_dict({}) == GuardConfig()


def test_from_dict_unknown_field():
    d = GuardConfig().to_dict()
    d["colour"] = 1
    d["zeta"] = 2
    with pytest.raises(ValueError, match=r"unknown GuardConfig field\(s\) \['colour', 'zeta'\]"):
        GuardConfig.from_dict(d)
    with pytest.raises(ValueError, match=r"`image_size` must be a positive int, got -1"):
        GuardConfig.from_dict({"image_size": -1})


def test_replace_keeps_defaulted_views_defaulted():
    base = GuardConfig.profile("tiny")
    assert base.views_defaulted
    ct = base.replace(modality="ct")
    assert ct.views == default_views("ct") and ct.views_defaulted and ct.image_size == 32
    named = GuardConfig.profile("tiny", views=("texture",))
    assert not named.views_defaulted
    assert named.replace(modality="ct").views == ("texture",)  # named views are kept
    assert base.replace(views=("ring",)).views == ("ring",)
    with pytest.raises(ValueError, match="unknown GuardConfig field"):
        base.replace(nonsense=1)


def test_pixel_fpr_defaults_per_modality_and_follows_the_data():
    """``pixel_fpr=None`` resolves by modality; a rate the user sets is never overridden."""
    from safegen_guard.config import PIXEL_FPR_DEFAULTS

    assert PIXEL_FPR_DEFAULTS == {"mri": 0.1, "ct": 0.05, None: 0.05}
    assert GuardConfig().pixel_fpr == 0.05
    assert GuardConfig(modality="mri").pixel_fpr == 0.1
    assert GuardConfig(modality="ct").pixel_fpr == 0.05
    assert GuardConfig().with_data_modality("mri").pixel_fpr == 0.1  # a named data set's
    assert GuardConfig(modality="mri").replace(modality="ct").pixel_fpr == 0.05
    assert GuardConfig(modality="mri").replace(seed=3).pixel_fpr == 0.1
    chosen = GuardConfig(pixel_fpr=0.02)
    assert chosen.with_data_modality("mri").pixel_fpr == 0.02
    assert chosen.replace(modality="mri").pixel_fpr == 0.02
    # a saved config records the resolved rate, which then stays (no re-resolution on load)
    saved = GuardConfig.from_dict(GuardConfig(modality="mri").to_dict())
    assert saved.pixel_fpr == 0.1 and saved.replace(modality="ct").pixel_fpr == 0.1

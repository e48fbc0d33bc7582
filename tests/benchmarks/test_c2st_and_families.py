"""Tests of the C2ST yardstick (known answers) and the validation-only families."""

from __future__ import annotations

import pytest
import torch

from benchmarks.c2st import classifier_two_sample_test
from benchmarks.families import FAMILIES, VALIDATION_KINDS, corrupt, families_for
from safegen_guard.artifacts import ARTIFACTS


def _discs(n: int, seed: int, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(size) - size / 2, torch.arange(size) - size / 2, indexing="ij"
    )
    disc = ((yy**2 + xx**2).sqrt() < size / 3).float()
    return (0.6 * disc[None, None] + 0.05 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1)


def test_c2st_identical_sets_are_inseparable():
    r = classifier_two_sample_test(_discs(60, 0), _discs(60, 1), folds=3, steps=40, seed=0)
    assert 0.3 < r.auroc < 0.7
    assert r.p_fake_real.shape == (60,) and r.p_fake_generated.shape == (60,)


def test_c2st_disjoint_sets_are_separated():
    fake = torch.rand(60, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    r = classifier_two_sample_test(_discs(60, 0), fake, folds=3, steps=40, seed=0)
    assert r.auroc > 0.95
    assert float((r.p_fake_generated > 0.5).mean()) > 0.9


def test_c2st_validates():
    with pytest.raises(ValueError, match="one shape"):
        classifier_two_sample_test(_discs(10, 0), _discs(10, 0, size=8))
    with pytest.raises(ValueError, match=">= 5 images"):
        classifier_two_sample_test(_discs(3, 0), _discs(10, 0))


def test_validation_kinds_are_not_in_the_product_registry():
    assert not set(VALIDATION_KINDS) & set(ARTIFACTS)
    kinds = [k for f in FAMILIES for k in f.kinds]
    assert len(kinds) == len(set(kinds))  # every kind in exactly one family
    assert set(ARTIFACTS) <= set(kinds)  # every registry kind has a family
    assert "ring" not in {k for f in families_for("mri") for k in f.kinds}
    assert "gibbs" not in {k for f in families_for("ct") for k in f.kinds}


@pytest.mark.parametrize("kind", sorted(VALIDATION_KINDS))
def test_validation_kinds_change_images_in_range(kind):
    x = _discs(4, 3, size=32)
    fg = x > 0.3
    y, gt = corrupt(x, fg, kind, "strong", torch.Generator().manual_seed(0))
    assert y.shape == x.shape and gt.shape == x.shape and gt.dtype == torch.bool
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().mean()) > 1e-3
    y2, _ = corrupt(x, fg, kind, "strong", torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, y2)  # deterministic given the generator


def test_corrupt_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        corrupt(_discs(2, 0), _discs(2, 0) > 0.3, "nope", "mild", torch.Generator())

"""The realism yardstick judges with the guard or with an exact view subset of it."""

from __future__ import annotations

import pytest
import torch

from benchmarks.realism import _decisions


def test_all_views_subset_equals_the_guard_and_fewer_views_reject_no_more(tiny_guard, tiny_real):
    x = torch.cat(
        [tiny_real["val"][:8], torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))]
    )
    names = list(tiny_guard.detector.view_names)
    score, unsafe, p = _decisions(tiny_guard, x, None)
    sub_score, sub_unsafe, sub_p = _decisions(tiny_guard, x, names)
    assert torch.equal(unsafe, sub_unsafe)
    assert torch.allclose(score.double(), sub_score.double(), atol=1e-4)
    assert torch.equal(unsafe, p <= tiny_guard.config.false_reject_rate)
    torch.testing.assert_close(p, sub_p)
    assert bool(unsafe[8:].all())  # uniform noise is rejected
    one = _decisions(tiny_guard, x, names[:1])[1]
    assert one.shape == (16,) and one.dtype == torch.bool
    with pytest.raises(ValueError, match=r"views \['nope'\] are not in the guard"):
        _decisions(tiny_guard, x, ["nope"])

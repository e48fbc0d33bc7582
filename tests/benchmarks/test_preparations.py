"""Tests of the alternative real-slice preparations used for the false-reject check."""

from __future__ import annotations

import pytest
import torch

from benchmarks.preparations import PREPARATIONS, prepare_mni152
from safegen_guard.data import load_dataset


@pytest.mark.parametrize("name", PREPARATIONS)
def test_preparations_give_real_slices_in_range_and_differ_from_the_default(name):
    x = prepare_mni152(name, 32, variants=1, seed=0)
    default = load_dataset("mni152", "test", 32, variants=1, seed=0).images
    assert x.shape == default.shape and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float((x - default).abs().mean()) > 0.005  # another pipeline, not the same images
    assert float(x.mean()) > 0.05  # still anatomy, not an empty frame


def test_unknown_preparation():
    with pytest.raises(ValueError, match="unknown preparation 'nope'"):
        prepare_mni152("nope", 32)

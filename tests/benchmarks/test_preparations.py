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


def test_clean_frr_reports_declared_preparations_of_a_grouped_guard(
    tiny_guard, tiny_real, tmp_path
):
    from benchmarks.preparations import clean_frr
    from safegen_guard import Guard
    from safegen_guard.guard_fit import AUGMENTED, PLAIN

    one_group = clean_frr(tiny_guard, "mni152", seeds=(11,))
    assert set(one_group["plain"]) == {"guard"} and set(one_group["augmented"]) == {"guard"}

    guard = Guard.load(tiny_guard.save(tmp_path / "src"))
    val = tiny_real["val"]
    groups = torch.where(torch.arange(len(val)) % 8 < 4, AUGMENTED, PLAIN)
    guard.calibrate(val, training=tiny_real["train"], groups=groups)
    out = clean_frr(guard, "mni152", seeds=(11,))
    for key, group, aug in (("plain", PLAIN, False), ("augmented", AUGMENTED, True)):
        assert set(out[key]) == {"guard", "guard, declared"}
        x = load_dataset("mni152", "test", 32, variants=4, augment=aug, seed=11).images
        expected = float(guard.for_preparation(group).evaluate(x).unsafe.float().mean())
        assert out[key]["guard, declared"] == [round(expected, 3)]
        assert out[key]["guard"] == [round(float(guard.evaluate(x).unsafe.float().mean()), 3)]

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
        assert out["images"][key] == len(x)
        declared_count = int(guard.for_preparation(group).evaluate(x).unsafe.sum())
        assert out["rejected"][key]["guard, declared"] == [declared_count]


def test_pooled_rate_counts_and_exact_interval():
    from scipy.stats import beta

    from benchmarks.preparations import pooled_rate

    out = pooled_rate([1, 2, 0], 72)  # 3 of 216 rejected
    assert (out["rejected"], out["images"]) == (3, 216)
    assert out["rate"] == pytest.approx(3 / 216, abs=1e-4)
    # Clopper-Pearson by its definition: beta quantiles of the count
    assert out["low"] == pytest.approx(beta.ppf(0.025, 3, 214), abs=1e-4)
    assert out["high"] == pytest.approx(beta.ppf(0.975, 4, 213), abs=1e-4)
    assert out["low"] < out["rate"] < out["high"]
    # one draw of 72 at the requested 0.05 cannot tell 0.03 from 0.07
    one = pooled_rate([4], 72)
    assert one["low"] < 0.03 and one["high"] > 0.07
    assert pooled_rate([64, 64], 1280)["rate"] == 0.05  # large draws: exact counts
    with pytest.raises(ValueError, match=r"at least one count, got \[\]"):
        pooled_rate([], 72)
    with pytest.raises(ValueError, match=r"`n` must be a positive int.*got 0"):
        pooled_rate([0], 0)
    with pytest.raises(ValueError, match=r"every count must lie in \[0, 72\], got \[73\]"):
        pooled_rate([73], 72)

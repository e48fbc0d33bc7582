"""The memorization check inside `Guard`: verdict fields, `unsafe`, save/load, records."""

from __future__ import annotations

import json

import pytest
import torch

from safegen_guard import Guard
from safegen_guard.memorization import CopyPerturbation, perturb_copies
from safegen_guard.verdict import Verdict


@pytest.fixture
def copy_guard(tiny_guard, tiny_index, tmp_path):
    """A fresh copy of the session guard with the tiny index attached."""
    return Guard.load(tiny_guard.save(tmp_path / "plain")).attach_memorization(tiny_index)


def _copies(copy_data, n=6):
    mild = CopyPerturbation(max_shift=1.0, max_rotation=2.0)
    return perturb_copies(copy_data["train"][:n], torch.Generator().manual_seed(5), mild)


def test_copies_are_memorized_unsafe_and_name_their_training_image(copy_guard, copy_data):
    x = torch.cat([_copies(copy_data), copy_data["test"][:6]])
    x[-1] = float("nan")
    v = copy_guard.evaluate(x)
    assert v.memorized[:6].float().mean() >= 0.8
    assert bool(v.unsafe[v.memorized].all())
    assert all("memorized" in r for r, m in zip(v.reasons, v.memorized) if m)
    assert (v.nearest_index[:6] == torch.arange(6)).float().mean() >= 0.8
    # a non-finite image is unsafe for that reason and not checked for copies
    assert not bool(v.memorized[-1]) and int(v.nearest_index[-1]) == -1
    assert torch.isnan(v.copy_p_value[-1]) and v.reasons[-1] == ("non_finite",)
    records = json.loads(json.dumps(v.to_records()))
    assert records[-1]["copy_p_value"] is None and records[-1]["nearest_index"] is None
    assert records[0]["memorized"] == bool(v.memorized[0])


def test_mark_unsafe_false_reports_copies_without_rejecting(copy_guard, copy_data, tiny_guard):
    x = _copies(copy_data)
    copy_guard.memorization.with_config(mark_unsafe=False)
    try:
        v = copy_guard.evaluate(x)
    finally:
        copy_guard.memorization.with_config(mark_unsafe=True)
    plain = tiny_guard.evaluate(x)
    assert bool(v.memorized.any())
    assert torch.equal(v.unsafe, plain.unsafe)


def test_guard_saves_and_loads_its_index(copy_guard, copy_data, tmp_path):
    copy_guard.save(tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "guard.json").read_text())
    assert meta["memorization"]["num_images"] == len(copy_guard.memorization)
    loaded = Guard.load(tmp_path / "g")
    assert loaded.fingerprint == copy_guard.fingerprint
    x = _copies(copy_data)
    a, b = copy_guard.evaluate(x), loaded.evaluate(x)
    torch.testing.assert_close(a.copy_p_value, b.copy_p_value)
    assert torch.equal(a.nearest_index, b.nearest_index)


def test_attach_rejects_an_index_of_another_size(tiny_guard, tiny_index, tmp_path):
    guard = Guard.load(tiny_guard.save(tmp_path / "g"))
    guard.config = type(guard.config).profile("tiny", image_size=64)
    with pytest.raises(ValueError, match="the index holds 32 px images, the guard scores 64 px"):
        guard.attach_memorization(tiny_index)


def test_verdict_without_index_has_not_checked_defaults_that_survive_select_and_cat():
    v = Verdict(
        score=torch.zeros(3),
        p_value=torch.ones(3),
        unsafe=torch.zeros(3, dtype=torch.bool),
        anomaly_map=torch.zeros(3, 1, 4, 4),
        mask=torch.zeros(3, 1, 4, 4, dtype=torch.bool),
        reasons=[(), (), ()],
    )
    assert v.memorized.dtype == torch.bool and not bool(v.memorized.any())
    assert bool(torch.isnan(v.copy_p_value).all()) and bool((v.nearest_index == -1).all())
    both = Verdict.cat([v.select([0]), v.select([1, 2])])
    assert both.memorized.shape == (3,) and both.nearest_index.dtype == torch.long
    with pytest.raises(ValueError, match=r"`memorized` must have shape \(3,\), got \(2,\)"):
        Verdict(**{**v.__dict__, "memorized": torch.zeros(2, dtype=torch.bool)})

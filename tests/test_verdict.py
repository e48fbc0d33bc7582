"""Tests of safegen_guard.verdict.Verdict: validation, selection, concatenation, records."""

from __future__ import annotations

import json

import pytest
import torch

from safegen_guard.verdict import Verdict


def _verdict(b: int = 4, offset: float = 0.0, **overrides) -> Verdict:
    p = torch.linspace(0.01, 1.0, b) if b > 1 else torch.tensor([0.5])
    amap = torch.arange(b * 16, dtype=torch.float32).view(b, 1, 4, 4) / (b * 16) + offset
    kwargs = dict(
        score=-torch.log10(p),
        p_value=p,
        unsafe=p <= 0.05,
        anomaly_map=amap.clamp(0, 1),
        mask=amap > 0.5,
        reasons=[("recon",) if i == 0 else () for i in range(b)],
        view_scores={"recon": torch.arange(b, dtype=torch.float32) + offset},
        view_p_values={"recon": p.clone()},
        threshold=0.05,
        guard_fingerprint="abc",
    )
    kwargs.update(overrides)
    return Verdict(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"p_value": torch.ones(3)}, r"`p_value` must have shape \(4,\), got \(3,\)"),
        ({"unsafe": torch.zeros(4, 1, dtype=torch.bool)}, r"`unsafe` must have shape \(4,\)"),
        ({"anomaly_map": torch.zeros(4, 4, 4)}, r"`anomaly_map` must have shape \(4, 1, H, W\)"),
        ({"mask": torch.zeros(4, 2, 4, 4, dtype=torch.bool)}, r"`mask` must have shape \(4, 1"),
        ({"gradcam": torch.zeros(3, 1, 4, 4)}, r"`gradcam` must have shape \(4, 1, H, W\), got"),
        ({"heatmap": torch.zeros(4, 1, 4)}, r"`heatmap` must have shape"),
        ({"reasons": [()] * 3}, r"`reasons` must have 4 entries, got 3"),
    ],
)
def test_shape_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        _verdict(**overrides)


def test_len_and_safe():
    v = _verdict()
    assert len(v) == 4
    assert torch.equal(v.safe, ~v.unsafe)
    assert v.unsafe.tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    "index",
    [
        torch.tensor([False, True, False, True]),
        [1, 3],
        torch.tensor([1, 3]),
        slice(1, 4, 2),
    ],
)
def test_select(index):
    v = _verdict()
    s = v.select(index)
    assert len(s) == 2
    assert torch.equal(s.p_value, v.p_value[[1, 3]])
    assert torch.equal(s.anomaly_map, v.anomaly_map[[1, 3]])
    assert torch.equal(s.mask, v.mask[[1, 3]])
    assert torch.equal(s.view_scores["recon"], torch.tensor([1.0, 3.0]))
    assert torch.equal(s.view_p_values["recon"], v.p_value[[1, 3]])
    assert s.reasons == [(), ()]
    assert s.guard_fingerprint == "abc" and s.threshold == 0.05 and s.gradcam is None


def test_select_keeps_order_of_indices():
    v = _verdict()
    s = v.select([3, 0])
    assert s.reasons == [(), ("recon",)]
    assert torch.equal(s.score, v.score[[3, 0]])


def test_select_reversed_slice():
    v = _verdict()
    s = v.select(slice(None, None, -1))
    assert s.reasons == v.reasons[::-1]


def test_cat():
    a, b = _verdict(4), _verdict(2, offset=10.0)
    c = Verdict.cat([a, b])
    assert len(c) == 6
    assert torch.equal(c.p_value, torch.cat([a.p_value, b.p_value]))
    assert torch.equal(c.view_scores["recon"], torch.tensor([0.0, 1, 2, 3, 10, 11]))
    assert torch.equal(c.view_p_values["recon"], torch.cat([a.p_value, b.p_value]))
    assert c.reasons == a.reasons + b.reasons
    assert c.gradcam is None and c.anomaly_map.shape == (6, 1, 4, 4)
    assert torch.equal(Verdict.cat([a]).score, a.score)
    with pytest.raises(ValueError, match=r"at least one Verdict, got an empty sequence"):
        Verdict.cat([])


def test_cat_with_optional_maps():
    a = _verdict(2, gradcam=torch.zeros(2, 1, 4, 4))
    b = _verdict(3, gradcam=torch.ones(3, 1, 4, 4))
    c = Verdict.cat([a, b])
    assert c.gradcam.shape == (5, 1, 4, 4) and float(c.gradcam.sum()) == 48.0


def test_to_records_json_serialisable_with_inf_score():
    v = _verdict(3)
    v.score[1] = float("inf")
    v.view_scores["recon"][2] = float("nan")
    records = v.to_records()
    text = json.dumps(records, allow_nan=False)  # strict JSON: no Infinity/NaN tokens
    back = json.loads(text)
    assert len(back) == 3
    assert back[1]["score"] == "inf"
    assert back[2]["view_scores"]["recon"] == "nan"
    assert back[0]["unsafe"] is True and back[0]["reasons"] == ["recon"]
    assert back[0]["p_value"] == pytest.approx(float(v.p_value[0]))
    assert back[0]["guard_fingerprint"] == "abc" and back[0]["threshold"] == 0.05
    assert [r["index"] for r in back] == [0, 1, 2]
    expected_frac = v.mask.flatten(1).float().mean(1)
    assert [r["mask_fraction"] for r in back] == pytest.approx(expected_frac.tolist())
    assert "anomaly_map" not in back[0]


def test_to_moves_tensors():
    v = _verdict(2).to("cpu")
    assert v.p_value.device.type == "cpu" and v.view_scores["recon"].device.type == "cpu"

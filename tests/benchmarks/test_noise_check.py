"""benchmarks.noise_check: noise through the filter and the callback, as in the README."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import noise_check


def test_noise_kinds_are_in_range_and_checked():
    g = torch.Generator().manual_seed(0)
    for kind in noise_check.KINDS:
        x = noise_check.noise(kind, 3, 16, g)
        assert x.shape == (3, 1, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(ValueError, match="`kind` must be one of .*got 'pink'"):
        noise_check.noise("pink", 1, 16)


def test_both_paths_report_rejections(tiny_guard, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(noise_check.Guard, "load", staticmethod(lambda d: tiny_guard))
    out = tmp_path / "noise.json"
    res = noise_check.main(["--guard", "g", "-n", "4", "--no-ddpm", "--out", str(out)])
    assert json.loads(out.read_text()) == res
    assert set(res) == {"guard", "fingerprint", *(f"{p}/{k}" for p in ("filter", "callback")
                                                  for k in noise_check.KINDS)}  # fmt: skip
    for kind in noise_check.KINDS:
        f, c = res[f"filter/{kind}"], res[f"callback/{kind}"]
        assert f["of"] == 4 and 0 <= f["rejected"] <= 4 and c["of"] == 4
        # resample returns at most the batch of 8, drawn over at least one round
        assert f["resample_returned"] <= 8 and f["resample_attempts"] >= 8
    # even the tiny test guard rejects uniform noise (fixed seed)
    assert res["filter/uniform"]["rejected"] == 4 and res["callback/uniform"]["unsafe_rate"] == 1

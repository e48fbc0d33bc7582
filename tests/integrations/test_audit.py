"""AuditLog (append-only JSONL) and Quarantine (PNG + verdict JSON per sample)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from safegen_guard.integrations.audit import AuditLog, Quarantine, image_sha256
from safegen_guard.verdict import Verdict
from safegen_guard.viz import to_uint8


def _verdict(b: int = 3, unsafe=(False, True, True)) -> Verdict:
    return Verdict(
        score=torch.tensor([0.5, 2.0, float("inf")][:b]),
        p_value=torch.tensor([0.3, 0.01, 0.0][:b]),
        unsafe=torch.tensor(unsafe[:b]),
        anomaly_map=torch.rand(b, 1, 8, 8),
        mask=torch.zeros(b, 1, 8, 8, dtype=torch.bool),
        reasons=[(), ("noise",), ("non_finite",)][:b],
        guard_fingerprint="abc",
    )


def _images(b: int = 3) -> torch.Tensor:
    x = torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[-1, 0, 0, 0] = float("nan")
    return x


def test_audit_log_is_append_only(tmp_path):
    log = AuditLog(tmp_path / "sub" / "audit.jsonl", "fp123")
    first = log.write(_verdict(), _images(), step=5, rank=[0, 1, 1], source="test")
    before = (tmp_path / "sub" / "audit.jsonl").read_text()
    log.write(_verdict(), _images(), step=6, extra={"note": "x"})
    text = (tmp_path / "sub" / "audit.jsonl").read_text()
    assert text.startswith(before)  # earlier lines untouched
    lines = [json.loads(x) for x in text.splitlines()]
    assert len(lines) == 6 and lines[:3] == json.loads(json.dumps(first))
    assert [r["rank"] for r in lines] == [0, 1, 1, 0, 0, 0]
    assert [r["step"] for r in lines] == [5, 5, 5, 6, 6, 6]
    assert {r["guard_fingerprint"] for r in lines} == {"fp123"}
    assert lines[2]["score"] == "inf" and lines[2]["reasons"] == ["non_finite"]
    assert lines[3]["note"] == "x" and lines[0]["source"] == "test"
    assert lines[1]["image_sha256"] == image_sha256(_images()[1])
    assert lines[0]["image_sha256"] != lines[1]["image_sha256"]


def test_audit_log_validation(tmp_path):
    with pytest.raises(ValueError, match="`guard_fingerprint` must be a non-empty str, got ''"):
        AuditLog(tmp_path / "a.jsonl", "")
    log = AuditLog(tmp_path / "a.jsonl", "fp")
    with pytest.raises(ValueError, match="must have 3 entries like `verdict`, got 2, 3, 3"):
        log.write(_verdict(), _images(2))
    with pytest.raises(ValueError, match="got 3, 2, 3"):
        log.write(_verdict(), _images(), rank=[0, 1])
    assert not (tmp_path / "a.jsonl").exists()  # nothing half-written


def test_quarantine_stores_png_and_verdict(tmp_path):
    q = Quarantine(tmp_path / "q", run_id="runX")
    images, verdict = _images(), _verdict()
    paths = q.store(images, verdict, verdict.unsafe.nonzero().flatten(), "step00000007")
    assert [p.name for p in paths] == ["runX_step00000007_0001.png", "runX_step00000007_0002.png"]
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        "runX_step00000007_0001.json",
        "runX_step00000007_0001.png",
        "runX_step00000007_0002.json",
        "runX_step00000007_0002.png",
    ]  # no temp files left
    png = np.asarray(Image.open(paths[0]))
    np.testing.assert_array_equal(png, to_uint8(images[1, 0]))
    meta = json.loads(paths[1].with_suffix(".json").read_text())
    assert meta["unsafe"] and meta["reasons"] == ["non_finite"] and meta["non_finite_pixels"] == 1
    assert meta["image_sha256"] == image_sha256(images[2]) and meta["index"] == 2


def test_quarantine_validation(tmp_path):
    q = Quarantine(tmp_path / "q")
    with pytest.raises(ValueError, match=r"`indices` must lie in \[0, 3\), got \[3\]"):
        q.store(_images(), _verdict(), [3], "p")
    with pytest.raises(ValueError, match=r"`images` \(2\) must match `verdict` \(3\)"):
        q.store(_images(2), _verdict(), [0], "p")

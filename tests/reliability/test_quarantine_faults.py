"""Quarantine and audit log under repeated runs, write failures and invalid samples."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import fit_tiny_generator
from PIL import Image

from safegen_guard import SafeGenCallback
from safegen_guard.io import read_jsonl
from safegen_guard.viz import to_uint8


def _noise(pl_module, n, generator):
    """Pure noise: unsafe for a brain-MRI guard."""
    return torch.rand(n, 1, 32, 32, generator=generator)


def test_two_runs_into_one_quarantine_keep_every_image(tiny_guard, tmp_path):
    """Main: 2 runs gave 16 records but 8 PNGs (the second run overwrote the first's)."""
    qdir = tmp_path / "q"
    for seed in (0, 1):  # different seeds: different images under the same step/check
        cb = SafeGenCallback(
            tiny_guard, num_samples=8, sample_fn=_noise, seed=seed, quarantine_dir=qdir
        )
        fit_tiny_generator(cb, tmp_path)
    records = read_jsonl(qdir / "audit.jsonl")
    unsafe = [r for r in records if r["unsafe"]]
    assert len(records) == 16 and len(unsafe) >= 12
    pngs = sorted(qdir.glob("*.png"))
    assert len(pngs) == len(unsafe) == len({r["quarantine_path"] for r in unsafe})
    for r in unsafe:  # every record still names its own pixels
        side = json.loads(Path(r["quarantine_path"]).with_suffix(".json").read_text())
        assert side["image_sha256"] == r["image_sha256"] and side["sample_id"] == r["sample_id"]
        png = np.asarray(Image.open(r["quarantine_path"]))
        assert png.dtype == np.uint8 and png.shape == (32, 32)
    assert len({r["sample_id"].split("_")[0] for r in records}) == 2  # two run ids


def test_quarantine_failure_keeps_every_audit_record(tiny_guard, tmp_path):
    """Main: a quarantine folder that became a file lost all 8 verdicts of the check."""
    qdir, log = tmp_path / "q", tmp_path / "logs" / "audit.jsonl"
    cb = SafeGenCallback(
        tiny_guard, num_samples=8, sample_fn=_noise, quarantine_dir=qdir, audit_log=log
    )
    qdir.write_text("not a folder")  # the folder is gone and a file took its name
    with pytest.warns(RuntimeWarning, match=r"audit failed .*could not be quarantined"):
        fit_tiny_generator(cb, tmp_path)
    records = read_jsonl(log)
    assert len(records) == 8
    unsafe = [r for r in records if r["unsafe"]]
    assert unsafe and all(r["quarantine_path"] is None for r in unsafe)
    assert all(
        r["quarantine_error"].startswith(("FileExistsError", "NotADirectoryError")) for r in unsafe
    )
    assert cb.errors_by_kind == {"audit": 1}


def test_constructor_rejects_a_file_as_quarantine_dir(tiny_guard, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"`quarantine_dir` must be a folder, got the file"):
        SafeGenCallback(tiny_guard, quarantine_dir=tmp_path / "f")
    with pytest.raises(ValueError, match=r"`audit_log` must be a file path, got the folder"):
        SafeGenCallback(tiny_guard, audit_log=tmp_path)


def _wrong_size(pl_module, n, generator):
    return torch.rand(n, 1, 16, 16, generator=generator)


def test_invalid_samples_are_recorded_and_kept(tiny_guard, tmp_path):
    """Main: invalid samples were counted in `errors` but left no trace in the audit log."""
    qdir = tmp_path / "q"
    cb = SafeGenCallback(tiny_guard, num_samples=3, sample_fn=_wrong_size, quarantine_dir=qdir)
    with pytest.warns(RuntimeWarning, match="invalid_samples failed"):
        fit_tiny_generator(cb, tmp_path)
    (rec,) = read_jsonl(qdir / "audit.jsonl")
    assert rec["unsafe"] and rec["reasons"] == ["invalid_samples"]
    assert rec["shape"] == [3, 1, 16, 16] and "32" in rec["error"]
    from safetensors.torch import load_file

    kept = load_file(rec["quarantine_path"])["samples"]
    assert kept.shape == (3, 1, 16, 16)
    assert rec["tensor_sha256"] == hashlib.sha256(kept.numpy().tobytes()).hexdigest()[:16]


def test_quarantine_never_overwrites(tmp_path):
    from safegen_guard.integrations.audit import Quarantine

    q = Quarantine(tmp_path, run_id="runA")
    img = torch.rand(1, 8, 8)
    q.store_record(img, {"sample_id": "runA_x_0000"})
    with pytest.raises(FileExistsError):
        q.store_record(torch.zeros(1, 8, 8), {"sample_id": "runA_x_0000"})
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "runA_x_0000.png")), to_uint8(img[0])
    )
    with pytest.raises(ValueError, match=r"`record\['sample_id'\]` must match"):
        q.store_record(img, {"sample_id": "../escape"})

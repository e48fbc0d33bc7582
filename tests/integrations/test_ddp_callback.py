"""2-process CPU DDP (gloo) run: uneven per-rank shares, all-gather, rank-zero writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_script.py")


@pytest.mark.slow
def test_ddp_two_processes(tiny_guard, tmp_path):
    guard_dir = tiny_guard.save(tmp_path / "guard")
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(guard_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # 2 batches per rank (16 images / 4 per batch / 2 ranks): 1 step check + 1 validation check
    assert r0["checks"] == r1["checks"] == 2 and r0["errors"] == r1["errors"] == {}
    # 5 samples split 3 + 2 (uneven: padded for gloo), gathered into 5 on both ranks
    assert r0["local_samples"] == [3, 3] and r1["local_samples"] == [2, 2]
    assert r0["history"] == r1["history"] and r0["metric"] == r1["metric"]
    assert [h["num_samples"] for h in r0["history"]] == [5.0, 5.0]
    assert r0["consecutive"] == r1["consecutive"]  # the action decision is agreed
    records = [json.loads(x) for x in open(out / "q" / "audit.jsonl")]
    assert len(records) == 10  # written once (rank zero), 5 per check
    assert sorted(r["rank"] for r in records if r["check"] == 0) == [0, 0, 0, 1, 1]
    assert {r["guard_fingerprint"] for r in records} == {tiny_guard.fingerprint}
    assert all(r["reasons"] == ["non_finite"] for r in records if r["rank"] == 1)
    assert not any("non_finite" in r["reasons"] for r in records if r["rank"] == 0)
    n_unsafe = sum(r["unsafe"] for r in records)
    assert len(list((out / "q").glob("*.png"))) == n_unsafe
    for h in r0["history"]:
        assert h["unsafe_rate"] == pytest.approx(
            sum(r["unsafe"] for r in records if r["check"] == h["check"]) / 5
        )

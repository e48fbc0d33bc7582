"""A Verdict field is declared once: records, gather, filter output, summary and CLI follow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from guard_doubles import MeanRuleGuard
from verdict_ext import ExtVerdict
from verdict_ext import extend as _extend
from verdict_ext import make_verdict as _verdict

from safegen_guard.integrations._gather import gather_verdicts
from safegen_guard.summary import summarize
from safegen_guard.verdict import FieldSpec, Verdict, field_spec


def _assert_equal(a: Verdict, b: Verdict) -> None:
    assert type(a) is type(b)
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x.nan_to_num(-7), y.nan_to_num(-7)), f.name
        elif isinstance(x, dict):
            assert list(x) == list(y), f.name
            assert all(torch.equal(x[k], y[k]) for k in x), f.name
        else:
            assert x == y, f.name


def test_every_field_is_declared_with_a_spec():
    for f in fields(ExtVerdict):
        assert isinstance(field_spec(f), FieldSpec)
    assert field_spec(fields(Verdict)[0]).output == "scores"
    with pytest.raises(ValueError, match=r"`kind` must be one of .* got 'tensor'"):
        FieldSpec("tensor")
    with pytest.raises(ValueError, match=r"`edges` must have shape \(3, 1, H, W\), got \(3, 8"):
        ExtVerdict(**{**_asdict(_verdict(3)), "edges": torch.zeros(3, 8, 8)})


def _asdict(v: Verdict) -> dict:
    return {f.name: getattr(v, f.name) for f in fields(v)}


def test_new_field_in_records_select_cat_and_summary():
    v = _verdict(4)
    records = json.loads(json.dumps(v.to_records(), allow_nan=False))
    assert [r["sharpness"] for r in records] == [0.0, 1.0, 2.0, 3.0]
    assert [r["blurry"] for r in records] == [True, False, True, False]
    assert records[0]["maps"] == ["anomaly_map", "mask", "gradcam", "heatmap", "edges"]
    assert torch.equal(v.select([3, 1]).sharpness, torch.tensor([3.0, 1.0]))
    c = ExtVerdict.cat([v, _verdict(2, offset=10.0)])
    assert c.sharpness.tolist() == [0, 1, 2, 3, 10, 11] and c.edges.shape == (6, 1, 8, 8)
    s = summarize(v)
    assert s["blurry_rate"] == 0.5 and s["num_blurry"] == 2.0
    assert s["sharpness_mean"] == pytest.approx(1.5)
    assert s["sharpness_p95"] == pytest.approx(float(np.quantile([0, 1, 2, 3], 0.95)))
    assert summarize(records, schema=ExtVerdict) == s  # from records read back: same summary
    filled = ExtVerdict(**{**_asdict(v), "sharpness": None, "blurry": None, "edges": None})
    assert filled.to_records()[0]["sharpness"] == "nan" and filled.edges is None


def test_summary_counts_reasons_and_ignores_non_finite_scores():
    v = _verdict(4)
    v.score[0] = float("inf")
    v.reasons = [("non_finite",), ("mean",), ("mean",), ()]
    s = summarize(v, reasons=("non_finite", "mean", "memorized"))
    assert s["reason/mean"] == 2.0 and s["reason/non_finite"] == 1.0 and s["reason/memorized"] == 0
    assert s["score_mean"] == pytest.approx(float(v.score[1:].mean()))
    assert s["num_samples"] == 4.0 and s["memorized_rate"] == 0.0


class _FakeWorld:
    """``all_gather`` across threads (one per rank), for the gather's pack/pad/unpack logic."""

    def __init__(self, world: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * world
        self.barrier = threading.Barrier(world)

    def all_gather(self, rank: int):
        def gather(t: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = t.clone()
            self.barrier.wait()
            out = torch.stack(self.slots)
            self.barrier.wait()
            return out

        return gather


def _gather_in_threads(per_rank: list[tuple[torch.Tensor | None, Verdict | None, int]]):
    world = _FakeWorld(len(per_rank))
    results: list = [None] * len(per_rank)

    def run(rank: int) -> None:
        images, verdict, errors = per_rank[rank]
        results[rank] = gather_verdicts(
            world.all_gather(rank), images, verdict, errors, verdict_cls=ExtVerdict
        )

    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(per_rank))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_gather_carries_every_field_across_uneven_ranks():
    v0, v1 = _verdict(3), _verdict(2, offset=5.0)
    x0, x1 = torch.rand(3, 1, 8, 8), torch.rand(2, 1, 8, 8)
    out = _gather_in_threads([(x0, v0, 1), (x1, v1, 2)])
    for images, verdict, ranks, errors in out:  # identical on every rank
        assert torch.equal(images, torch.cat([x0, x1]))
        _assert_equal(verdict, ExtVerdict.cat([v0, v1]))
        assert ranks == [0, 0, 0, 1, 1] and errors == 3
    assert out[0][1].gradcam is not None and out[0][1].edges is not None


def test_gather_with_a_rank_that_produced_nothing():
    v1 = _verdict(2)
    out = _gather_in_threads([(None, None, 4), (torch.rand(2, 1, 8, 8), v1, 0)])
    for _, verdict, ranks, errors in out:
        _assert_equal(verdict, v1)
        assert ranks == [1, 1] and errors == 4
    (_, none, ranks, errors), _ = _gather_in_threads([(None, None, 1), (None, None, 1)])
    assert none is None and ranks == [] and errors == 2


class _ExtGuard(MeanRuleGuard):
    def evaluate(self, x, explain=False):
        return _extend(super().evaluate(x))


def test_new_field_in_filter_output():
    from safegen_guard import SafeGenFilter

    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    out = SafeGenFilter(_ExtGuard(), "flag").sample(lambda n: x, output_type="pt")
    expected = _ExtGuard().evaluate(x)
    assert torch.equal(out.sharpness, expected.sharpness)
    assert torch.equal(out["blurry"], expected.blurry)
    assert torch.equal(out.edges, expected.edges)
    assert torch.equal(out.scores, expected.score) and out.masks is None and out.heatmaps is None


def test_new_field_in_cli_verdicts(tiny_guard, tiny_real, tmp_path, monkeypatch):
    from safegen_guard.cli import main
    from safegen_guard.guard import Guard

    guard_dir = tiny_guard.save(tmp_path / "g")
    np.save(tmp_path / "x.npy", tiny_real["test"][:3].numpy())
    plain = Guard.evaluate
    monkeypatch.setattr(Guard, "evaluate", lambda self, x, **kw: _extend(plain(self, x, **kw)))
    args = ["score", str(tmp_path / "x.npy"), "--guard", str(guard_dir), "--out"]
    assert main([*args, str(tmp_path / "out"), "--overlays", "none"]) == 0
    lines = (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["sharpness"] for r in records] == [0.0, 1.0, 2.0]
    assert [r["blurry"] for r in records] == [True, False, True]
    assert all("edges" in r["maps"] for r in records)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["statistics"]["blurry_rate"] == pytest.approx(2 / 3)


def test_gather_over_gloo_with_two_processes(tmp_path):
    """The same gather through torch.distributed (gloo), one process per rank."""
    script = Path(__file__).parent / "integrations" / "gather_script.py"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])]))
    env["OMP_NUM_THREADS"] = "1"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), "2", str(port), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    expected = ExtVerdict.cat([_verdict(3), _verdict(2, offset=5.0)])
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["records"] == json.loads(json.dumps(expected.to_records()))
        assert got["ranks"] == [0, 0, 0, 1, 1] and got["errors"] == 3
        assert got["maps"] == {
            n: float(getattr(expected, n).sum()) for n in ("gradcam", "heatmap", "edges")
        }

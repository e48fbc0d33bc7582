"""`safegen score` through Lightning: shards, atomic merge, resume, 2-process DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from safegen_guard.cli import main
from safegen_guard.score_run import ShardWriter
from safegen_guard.score_shards import merge_shards, shard_path

RUN_KEYS = ("run_id", "overlay")  # differ between runs by design


@pytest.fixture(scope="module")
def guard_dir(tiny_guard, tmp_path_factory):
    return tiny_guard.save(tmp_path_factory.mktemp("scale_guard") / "g")


@pytest.fixture
def inputs(tiny_real, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    imgs = tiny_real["test"][:7, 0].numpy()
    for i in range(5):
        arr = np.round(imgs[i] * 255).astype(np.uint8)
        Image.fromarray(arr, mode="L").save(folder / ("sub" if i == 4 else ".") / f"img{i}.png")
    np.save(folder / "batch.npy", imgs[5:7, None].astype(np.float32))  # 2 images in one file
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(folder / "small.png")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(noise, mode="L").save(folder / "noise.png")
    return folder


def _score(guard_dir, inputs, out, *extra) -> int:
    """Score in this process at one thread, like the subprocesses (OMP_NUM_THREADS=1) that
    the tests compare with: verdicts are bitwise equal only at equal thread counts."""
    args = ["score", str(inputs), "--guard", str(guard_dir), "--out", str(out)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main([*args, "--batch-size", "2", "--overlays", "all", *extra])
    finally:
        torch.set_num_threads(threads)


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]


def _by_image(records: list[dict]) -> dict[tuple[str, int], dict]:
    keyed = {(r["path"], r["index"]): r for r in records}
    assert len(keyed) == len(records), "an image was recorded twice"
    return {k: {n: v for n, v in r.items() if n not in RUN_KEYS} for k, r in keyed.items()}


def test_one_process_writes_shards_then_merges(guard_dir, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert _score(guard_dir, inputs, out) == 0
    records = _records(out)
    summary = json.loads((out / "summary.json").read_text())
    assert len(records) == summary["images"] == 8  # 5 PNGs, 2 in the .npy, noise (not small)
    assert summary["skipped_files"] == 1 and summary["world_size"] == 1
    assert [r["position"] for r in records] == sorted(r["position"] for r in records)
    assert all(len(r["input_sha256"]) == 64 for r in records)
    assert not list((out / "shards").glob("*.jsonl"))  # merged and removed
    assert all((out / r["overlay"]).is_file() for r in records)
    assert summary["statistics"]["num_unsafe"] == summary["unsafe"]


class _Crash(Exception):
    """Stands for a process killed after some batches were appended to its shard."""


def test_killed_run_resumes_without_rescoring_or_duplicates(
    guard_dir, inputs, tmp_path, monkeypatch, capsys
):
    reference = tmp_path / "ref"
    assert _score(guard_dir, inputs, reference) == 0
    out = tmp_path / "out"
    plain = ShardWriter.write_on_batch_end
    batches = {"n": 0}

    def crash_after_two(self, trainer, *args):  # noqa: ANN001
        plain(self, trainer, *args)
        batches["n"] += 1
        if batches["n"] == 2:
            raise _Crash

    monkeypatch.setattr(ShardWriter, "write_on_batch_end", crash_after_two)
    with pytest.raises(_Crash):
        _score(guard_dir, inputs, out)
    assert not (out / "verdicts.jsonl").exists()  # nothing merged: the run died
    (shard,) = (out / "shards").glob("*.jsonl")
    killed_run = shard.name.split(".rank")[0]
    with open(shard, "a") as fh:
        fh.write('{"record": {"path": "torn')  # a write cut by the kill
    monkeypatch.setattr(ShardWriter, "write_on_batch_end", plain)
    evaluated: list[int] = []
    from safegen_guard.guard import Guard

    evaluate = Guard.evaluate
    monkeypatch.setattr(
        Guard, "evaluate", lambda self, x, **kw: evaluated.append(len(x)) or evaluate(self, x, **kw)
    )
    assert _score(guard_dir, inputs, out, "--resume") == 0
    summary = json.loads((out / "summary.json").read_text())
    records = _records(out)
    first = [r for r in records if r["run_id"] == killed_run]
    second = [r for r in records if r["run_id"] == summary["run_id"]]
    # 2 batches of 2 files were appended: batch.npy (2 images), img0, img1, img2
    assert len(first) == summary["recovered_images"] == 5
    assert summary["images"] == len(second) == sum(evaluated) == 8 - len(first)
    assert summary["already_scored_files"] == len({r["path"] for r in first})
    assert _by_image(records) == _by_image(_records(reference))  # same verdicts, once each
    assert not list((out / "shards").glob("*.jsonl"))
    evaluated.clear()
    assert _score(guard_dir, inputs, out, "--resume") == 0  # a third run: nothing left to do
    assert evaluated == [] and len(_records(out)) == 8


def test_kill9_mid_run_then_resume(guard_dir, inputs, tmp_path, capsys):
    """A real SIGKILL after 3 appended batches; --resume scores only the rest, once."""
    reference = tmp_path / "ref"
    assert _score(guard_dir, inputs, reference) == 0
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1")
    env["KILL_AFTER"] = "3"
    cmd = [sys.executable, str(Path(__file__).with_name("score_kill_driver.py")), "score"]
    cmd += [str(inputs), "--guard", str(guard_dir), "--out", str(out), "--batch-size", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not (out / "verdicts.jsonl").exists()
    assert _score(guard_dir, inputs, out, "--resume") == 0
    summary = json.loads((out / "summary.json").read_text())
    records = _records(out)
    # 3 batches of 2 files were appended before the kill: batch.npy (2 images) + 5 PNGs
    assert summary["recovered_images"] == 7 and summary["already_scored_files"] == 6
    assert summary["images"] == 1  # sub/img4.png alone was left (small.png is skipped)
    assert _by_image(records) == _by_image(_records(reference))
    assert not list((out / "shards").glob("*.jsonl"))


def test_merge_counts_a_file_only_with_its_done_line(tmp_path):
    out = tmp_path
    rec = {"path": "a.png", "input_sha256": "h", "index": 0, "position": 0, "run_id": "r1"}
    lines = [
        {"record": rec},
        {"done": ["a.png", "h"], "run_id": "r1", "position": 0},
        {"record": dict(rec, path="b.png", position=1)},  # killed before its done line
        {"skipped": {"path": "c.png", "error": "bad"}},
    ]
    for rank in (0, 1):  # the same file scored twice (e.g. a padded sampler): added once
        shard = shard_path(out, "r1", rank)
        shard.parent.mkdir(exist_ok=True)
        shard.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = merge_shards(out)
    assert result.added == {"r1": 1} and result.skipped == [{"path": "c.png", "error": "bad"}]
    assert [r["path"] for r in _records(out)] == ["a.png"]
    shard_path(out, "r1", 0).write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert merge_shards(out).added == {}  # a merge killed before removing its shards
    assert len(_records(out)) == 1


@pytest.mark.slow
def test_ddp_two_processes_give_the_same_verdicts(guard_dir, inputs, tmp_path, capsys):
    single = tmp_path / "single"
    assert _score(guard_dir, inputs, single) == 0
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1")
    env.pop("SAFEGEN_SCORE_RUN_ID", None)
    cmd = [sys.executable, "-m", "safegen_guard.cli", "score", str(inputs), "--guard"]
    cmd += [str(guard_dir), "--out", str(out), "--batch-size", "2", "--overlays", "all"]
    cmd += ["--devices", "2", "--strategy", "ddp"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["images"] == 8
    records = _records(out)
    assert _by_image(records) == _by_image(_records(single))
    assert {r["run_id"] for r in records} == {summary["run_id"]}  # one run id on both ranks
    assert {Path(r["overlay"]).parent.name for r in records} == {"rank0", "rank1"}
    assert all((out / r["overlay"]).is_file() for r in records)

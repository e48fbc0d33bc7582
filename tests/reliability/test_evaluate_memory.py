"""``Guard.evaluate`` streams in chunks: its working memory does not grow with the batch.

The issue measured +757 MB for 2000 images at 64 px: every chunk's per-view maps (six
``[B, 1, H, W]`` maps), two copies of the input and the memorization check's candidates were
all held for the whole batch. Each figure here is measured in a fresh process by
``python -m benchmarks.memory`` (peak RSS during one ``evaluate`` above the warmed-up guard's
own memory, minus the returned verdict's tensors, which the caller asked for).
"""

from __future__ import annotations

import json

import pytest
import torch
from faults import run_python

from safegen_guard import Guard
from safegen_guard.memorization import EncoderConfig, MemorizationConfig, MemorizationIndex
from safegen_guard.memorization.verdicts import add_copy_check

SMALL, LARGE = 100, 1200
GROWTH_LIMIT_MB = 24.0
"""Allowed growth of working memory from SMALL to LARGE images at 32 px.

Before streaming, working memory grew by about 80 MB per 1000 images here (six maps and two
copies per image, the copy check's candidates); streamed, a few MB of heap fragmentation.
"""


@pytest.fixture(scope="module")
def guard_dir(tiny_guard, tiny_real, tmp_path_factory):
    """The session's tiny guard plus a tiny memorization index, saved (the fixture is kept)."""
    folder = tmp_path_factory.mktemp("memory") / "guard"
    guard = Guard.load(tiny_guard.save(folder))
    config = MemorizationConfig(
        alpha=0.1, k=4, encoder=EncoderConfig(channels=4, dim=16, steps=10, batch_size=16)
    )
    index = MemorizationIndex.fit(
        tiny_real["train"][:32], tiny_real["val"], config=config, accelerator="cpu"
    )
    guard.attach_memorization(index).save(folder)
    return folder


def _measure(guard_dir, n: int) -> dict:  # noqa: ANN001
    code = "from benchmarks.memory import main; main()"
    proc = run_python(code, "--guard", str(guard_dir), "--n", str(n), "--warmup", "32", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def test_working_memory_does_not_grow_with_the_batch(guard_dir):
    small, large = _measure(guard_dir, SMALL), _measure(guard_dir, LARGE)
    assert small["memorization"] and large["memorization"]
    assert large["output_mb"] > 5 * small["output_mb"] > 0  # the outputs do grow
    growth = large["working_mb"] - small["working_mb"]
    assert growth < GROWTH_LIMIT_MB, (small, large)


def test_streamed_copy_check_matches_one_call(guard_dir, tiny_real):
    guard = Guard.load(guard_dir)
    x = torch.cat([tiny_real["test"][:5], tiny_real["train"][:4]])
    x[2, 0, 3, 3] = float("nan")
    finite = torch.isfinite(x).flatten(1).all(1)
    verdict = guard.evaluate(x)
    one = add_copy_check(guard.memorization, x, verdict, finite, chunk=len(x))
    streamed = add_copy_check(guard.memorization, x, verdict, finite, chunk=2)
    assert torch.equal(one.memorized, streamed.memorized)
    assert torch.equal(one.nearest_index, streamed.nearest_index)
    assert torch.equal(one.copy_p_value.isnan(), streamed.copy_p_value.isnan())
    assert torch.equal(one.copy_p_value.nan_to_num(-1), streamed.copy_p_value.nan_to_num(-1))
    assert int(one.nearest_index[2]) == -1 and bool(one.copy_p_value[2].isnan())
    assert bool(one.memorized[5:].all())  # training images are copies of themselves


def test_chunk_sizes_give_identical_verdicts_with_a_non_finite_image(guard_dir, tiny_real):
    guard = Guard.load(guard_dir)
    x = tiny_real["test"][:7].clone()
    x[3] = float("inf")
    whole, chunked = guard.evaluate(x, batch_size=7), guard.evaluate(x, batch_size=2)
    for name in ("unsafe", "memorized", "nearest_index"):
        assert torch.equal(getattr(whole, name), getattr(chunked, name)), name
    # oneDNN picks its convolution algorithm per batch size: maps agree to float precision
    torch.testing.assert_close(whole.anomaly_map, chunked.anomaly_map, rtol=1e-4, atol=1e-4)
    assert whole.reasons == chunked.reasons and whole.reasons[3] == ("non_finite",)
    assert bool((whole.anomaly_map[3] == 1).all()) and bool(whole.anomaly_map[:3].lt(1).all())

"""The memorization benchmark's index-scale part on a small synthetic index."""

from __future__ import annotations

import json

import torch

from benchmarks.memorization import _figure, _run_training_set, scale


def test_scale_reports_ivf_timing_and_recall_on_a_small_index():
    threads = torch.get_num_threads()
    out = scale(3000, 16, queries=40, nprobe=8, seed=0, threads=1, ivf_threshold=1000)
    assert torch.get_num_threads() == threads  # the caller's setting is restored
    assert out["index"] == "IndexIVFFlat" and out["nlist"] == 54 and out["threads"] == 1
    assert out["embeddings_mb"] > 0 and out["build_s"] >= 0
    near, fresh = out["near_duplicate"], out["fresh_random"]
    assert near["recall_at_1_vs_exact"] >= 0.95 and near["source_in_top_8"] >= 0.95
    for part in (near, fresh):
        assert part["queries"] == 40 and part["query_ms_single_median"] > 0
        assert 0.0 <= part["recall_at_1_vs_exact"] <= 1.0


def test_scale_uses_exact_search_below_the_ivf_threshold():
    out = scale(500, 8, queries=10, nprobe=4, seed=1, threads=1)
    assert out["index"] == "IndexFlatIP" and out["nlist"] is None
    assert out["fresh_random"]["recall_at_1_vs_exact"] == 1.0


def test_a_run_is_indexed_on_exactly_the_images_it_trained_on(tmp_path):
    from safegen_guard.data import load_dataset

    (tmp_path / "subset.json").write_text(
        json.dumps({"data": "mni152", "split": "train", "index": [0, 10, 20]})
    )
    train = _run_training_set(tmp_path, "ct_phantom", 32)  # the run's record wins
    full = load_dataset("mni152", "train", 32).images
    assert train.shape == (3, 1, 32, 32) and torch.equal(train, full[[0, 10, 20]])
    assert len(_run_training_set(tmp_path / "no_record", "mni152", 32)) == len(full)


def test_figure_shows_each_run_above_its_nearest_training_images(tmp_path):
    g = torch.Generator().manual_seed(0)
    panels = [
        (name, torch.rand(k, 1, 32, 32, generator=g), torch.rand(k, 1, 32, 32, generator=g),
         torch.rand(k, generator=g), torch.arange(k) % 2 == 0)
        for name, k in (("sub16", 6), ("full", 4))
    ]  # fmt: skip
    path = tmp_path / "fig" / "copies.png"
    _figure(panels, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000

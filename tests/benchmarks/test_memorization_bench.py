"""The memorization benchmark's index-scale part on a small synthetic index."""

from __future__ import annotations

from benchmarks.memorization import scale


def test_scale_reports_ivf_timing_and_recall_on_a_small_index():
    out = scale(3000, 16, queries=40, nprobe=8, seed=0, threads=1, ivf_threshold=1000)
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

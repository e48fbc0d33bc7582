"""benchmarks.guard_eval: the throughput command on a saved tiny guard."""

from __future__ import annotations

import json

from benchmarks import guard_eval


def test_throughput_only_reports_rates_and_their_ratio(tiny_guard, tmp_path):
    guard_dir = tiny_guard.save(tmp_path / "guard")
    out = tmp_path / "res.json"
    res = guard_eval.main(
        ["--guard", str(guard_dir), "--data", "mni152", "--throughput-only", "--out", str(out)]
    )
    assert "cells" not in res and "false_reject_rate" not in res  # the artifact cells skipped
    assert res["images_per_s"] > 0 and res["autoencoder_images_per_s"] > 0
    ratio = res["autoencoder_images_per_s"] / res["images_per_s"]
    assert abs(res["evaluate_cost_in_forward_passes"] - ratio) <= 0.006
    assert res["fit_seconds"] is None and res["threads"] >= 1
    assert json.loads(out.read_text()) == res

"""Distributed-ready scoring through Lightning's Trainer.predict (single CPU process here)."""

from __future__ import annotations

import json

from benchmarks.predict import predict


def test_predict_writes_one_record_per_image(tiny_guard, tiny_real, tmp_path) -> None:
    images = tiny_real["test"][:10]
    summary = predict(tiny_guard, images, tmp_path, batch_size=4, accelerator="cpu")
    rows = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(10))
    expected = tiny_guard.evaluate(images)
    assert [r["unsafe"] for r in rows] == expected.unsafe.tolist()
    assert summary["n"] == 10 and summary["n_unsafe"] == int(expected.unsafe.sum())
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert not list(tmp_path.glob("verdicts.rank*.jsonl"))

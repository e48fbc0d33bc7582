"""Reader study: crossover schedule, readings stored once, resumable app, study create."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

pytest.importorskip("flask")

from review_helpers import make_study  # noqa: E402

from safegen_guard.review.study import Study, crossover_schedule  # noqa: E402
from safegen_guard.review.study_app import create_study_app  # noqa: E402


def test_schedule_is_a_counterbalanced_crossover_with_washout():
    ids = [f"c{i:02d}" for i in range(20)]
    truths = [i % 2 == 0 for i in range(20)]
    first_arm = Counter()
    for reader in range(4):
        s = crossover_schedule(ids, truths, reader, seed=3, washout=10)
        assert [r["seq"] for r in s] == list(range(40))
        by_case = {}
        for r in s:
            by_case.setdefault(r["case"], []).append(r)
        assert set(by_case) == set(ids)
        for a, b in by_case.values():
            assert {a["arm"], b["arm"]} == {"unassisted", "assisted"}  # once per arm
            assert (a["session"], b["session"]) == (1, 2)
            assert b["seq"] - a["seq"] - 1 >= 10  # washout
            first_arm[(a["case"], a["arm"])] += 1
        session1 = [r for r in s if r["session"] == 1]
        assisted = [r for r in session1 if r["arm"] == "assisted"]
        assert len(assisted) == 10  # half of the cases, balanced by truth
        assert sum(truths[ids.index(r["case"])] for r in assisted) == 5
    # every case is read unassisted first by half of the readers
    assert all(first_arm[(c, "unassisted")] == 2 for c in ids)
    with pytest.raises(ValueError, match=r"`washout` must be in \[0, 19\], got 20"):
        crossover_schedule(ids, truths, 0, 0, 20)


def _read_all(client, reader, n, start=0):
    for k in range(start, n):
        nxt = client.get(f"/api/next?reader={reader}").get_json()
        assert not nxt["done"] and nxt["answered"] == k
        body = {"reader": reader, "seq": nxt["seq"], "decision": "unsafe", "likert": 4, "ms": 900}
        assert client.post("/api/reading", json=body).get_json() == {"stored": True}


def test_app_resumes_after_restart_and_stores_each_reading_once(tmp_path):
    folder = make_study(tmp_path / "study")
    client = create_study_app(folder).test_client()
    _read_all(client, "ann", 3)
    first = client.get("/api/next?reader=ann").get_json()
    assert first["arm"] in ("assisted", "unassisted")
    if first["arm"] == "assisted":
        assert first["image"].startswith("panels/") and "p_value" in first["safegen"]
    else:
        assert first["image"].startswith("images/") and "safegen" not in first
    client = create_study_app(folder).test_client()  # a server restart
    _read_all(client, "ann", 8, start=3)
    assert client.get("/api/next?reader=ann").get_json()["done"]
    again = {"reader": "ann", "seq": 0, "decision": "safe", "likert": 1, "ms": 5}
    assert client.post("/api/reading", json=again).get_json() == {"stored": False}
    with sqlite3.connect(folder / "study.sqlite") as conn:
        rows = conn.execute("SELECT seq, decision FROM readings WHERE reader='ann'").fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sorted(r[0] for r in rows) == list(range(8)) and {r[1] for r in rows} == {"unsafe"}
    for bad in (
        {"reader": "ann", "seq": 99, "decision": "safe", "likert": 3, "ms": 1},
        {"reader": "bob", "seq": 0, "decision": "maybe", "likert": 3, "ms": 1},
        {"reader": "bob", "seq": 0, "decision": "safe", "likert": 6, "ms": 1},
        {"reader": "bob", "seq": 0, "decision": "safe", "likert": 3, "ms": -1},
        {"reader": "", "seq": 0, "decision": "safe", "likert": 3, "ms": 1},
    ):
        assert client.post("/api/reading", json=bad).status_code == 400, bad


def test_app_never_serves_the_truth(tmp_path):
    folder = make_study(tmp_path / "study")
    client = create_study_app(folder).test_client()
    assert client.get("/images/case000.png").status_code == 200
    for path in ("/images/../study.json", "/panels/%2e%2e/study.sqlite", "/study.json"):
        assert client.get(path, follow_redirects=True).status_code == 404, path


def test_study_create_and_analyze_cli(tmp_path, capsys, monkeypatch):
    import json

    from guard_doubles import MeanRuleGuard

    from safegen_guard import Guard
    from safegen_guard.cli import main

    # a fitted guard takes minutes; the study only needs evaluate() and the image size
    monkeypatch.setattr(Guard, "load", staticmethod(lambda directory: MeanRuleGuard()))
    folder = tmp_path / "s"
    args = ["study", "create", str(folder), "--guard", "any"]
    assert main([*args, "--clean", "3", "--artifacts", "3", "--washout", "2"]) == 0
    study = Study.open(folder)
    truths = Counter(c["truth"] for c in study.spec["cases"])
    assert truths == {"safe": 3, "unsafe": 3} and study.spec["washout"] == 2
    assert all((folder / c["panel"]).is_file() for c in study.spec["cases"])
    sources = Counter(c["source"].split(":")[0] for c in study.spec["cases"])
    assert sources == {"real": 3, "artifact": 3}
    assert {c["reasons"] == ["mean"] for c in study.spec["cases"] if c["unsafe"]} <= {True}
    assert main(["study", "analyze", str(folder)]) == 2  # no readings yet: one line
    assert "no readings" in capsys.readouterr().err
    client = create_study_app(folder).test_client()
    for reader in ("ann", "bob"):
        _read_all(client, reader, 12)
    assert main(["study", "analyze", str(folder)]) == 0
    result = json.loads((folder / "analysis.json").read_text())
    assert result["n_readers"] == 2 and result["n_readings"] == 24
    assert (folder / "analysis.html").is_file()

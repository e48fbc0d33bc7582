"""The review app: items, decisions in SQLite (WAL), exports, path traversal, loopback."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

pytest.importorskip("flask")

from safegen_guard.review.app import create_review_app  # noqa: E402
from safegen_guard.review.items import load_items  # noqa: E402
from safegen_guard.review.server import DEFAULT_HOST, ServerThread  # noqa: E402
from safegen_guard.review.store import DecisionStore  # noqa: E402


def test_items_worst_first_and_filtered_by_reason(scored_folder):
    client = create_review_app(scored_folder).test_client()
    items = client.get("/api/items").get_json()
    assert len(items) == 12 and [it["label"] for it in items][:2] == ["img00.png", "img01.png"]
    assert all(it["decision"] is None for it in items)
    noise = client.get("/api/items?reason=noise").get_json()
    assert noise and all("noise" in it["reasons"] for it in noise)
    assert len(noise) == sum("noise" in it["reasons"] for it in items)


def test_decisions_are_rows_with_reviewer_and_time(scored_folder, tmp_path):
    db = tmp_path / "d.sqlite"
    client = create_review_app(scored_folder, db=db).test_client()
    item = client.get("/api/items").get_json()[1]["id"]
    r = client.post("/api/decide", json={"item": item, "decision": "reject", "reviewer": "ann"})
    assert r.status_code == 200 and r.get_json()["reviewer"] == "ann"
    client.post(
        "/api/decide", json={"item": item, "decision": "unsure", "reviewer": "bob", "note": "n"}
    )
    latest = {it["id"]: it["decision"] for it in client.get("/api/items").get_json()}
    assert latest[item]["decision"] == "unsure" and latest[item]["note"] == "n"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT item, decision, reviewer, decided_at FROM decisions").fetchall()
    assert [r[1:3] for r in rows] == [("reject", "ann"), ("unsure", "bob")]
    assert all(r[0] == item and r[3].endswith("+00:00") for r in rows)
    bad = [
        {"item": "nope", "decision": "reject", "reviewer": "ann"},
        {"item": item, "decision": "maybe", "reviewer": "ann"},
        {"item": item, "decision": "accept", "reviewer": " "},
    ]
    for body in bad:
        assert client.post("/api/decide", json=body).status_code == 400
    assert len(DecisionStore(db).rows()) == 2  # refused decisions leave nothing behind


def test_exports_csv_and_jsonl(scored_folder, tmp_path):
    client = create_review_app(scored_folder).test_client()
    item = client.get("/api/items").get_json()[0]["id"]
    client.post("/api/decide", json={"item": item, "decision": "accept", "reviewer": "ann"})
    rows = list(csv.DictReader(io.StringIO(client.get("/export.csv").get_data(as_text=True))))
    assert len(rows) == 1 and rows[0]["item"] == item and rows[0]["decision"] == "accept"
    lines = client.get("/export.jsonl").get_data(as_text=True).splitlines()
    assert json.loads(lines[0])["reviewer"] == "ann"
    store = DecisionStore(scored_folder / "review.sqlite")
    assert store.export(tmp_path / "d.csv").read_text().startswith("id,item,decision")
    with pytest.raises(ValueError, match="must end in .csv or .jsonl, got 'd.txt'"):
        store.export(tmp_path / "d.txt")


def test_serves_only_files_under_the_folder(scored_folder):
    client = create_review_app(scored_folder).test_client()
    assert client.get("/files/overlays/img00.png").status_code == 200
    for path in (
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/overlays/../../secret.txt",
        "/files/..%2fsecret.txt",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
    ):
        r = client.get(path, follow_redirects=True)
        assert r.status_code == 404, path
        assert b"do not serve" not in r.data and b"root:" not in r.data


def test_binds_to_loopback_by_default(scored_folder):
    from safegen_guard.cli import build_parser

    args = build_parser().parse_args(["review", str(scored_folder)])
    assert args.host == DEFAULT_HOST == "127.0.0.1"
    server = ServerThread(create_review_app(scored_folder))
    try:
        assert server.server.server_address[0] == "127.0.0.1"
    finally:
        server.stop()
    other = build_parser().parse_args(["review", str(scored_folder), "--host", "0.0.0.0"])
    assert other.host == "0.0.0.0"


def test_quarantine_folder_and_missing_folder(tmp_path, capsys):
    from PIL import Image

    from safegen_guard.cli import main

    q = tmp_path / "q"
    q.mkdir()
    Image.new("L", (8, 8)).save(q / "step1_0000.png")
    (q / "step1_0000.json").write_text(json.dumps({"unsafe": True, "p_value": 0.01}))
    assert [it["id"] for it in load_items(q)] == ["step1_0000.png"]
    assert main(["review", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"safegen: error: review folder {tmp_path / 'missing'} does not exist"
    )

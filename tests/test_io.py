"""Tests of safegen_guard.io: atomic writes and the append-only JSONL log."""

from __future__ import annotations

import json
import os

import pytest

from safegen_guard import io as sg_io
from safegen_guard.io import append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "deeper" / "f.bin"
    assert atomic_write_bytes(target, b"old content, longer") == target
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_atomic_write_text_and_json(tmp_path):
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_bytes() == "héllo".encode()
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": [1, 2]})
    text = (tmp_path / "j.json").read_text()
    assert json.loads(text) == {"a": [1, 2], "b": 1}
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json", "t.txt"]


def test_failed_atomic_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("original")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(sg_io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_append_jsonl_appends_and_never_rewrites(tmp_path):
    log = tmp_path / "logs" / "v.jsonl"
    append_jsonl(log, [{"i": 0, "x": float("inf")}, {"i": 1}])
    first = log.read_bytes()
    inode = os.stat(log).st_ino
    append_jsonl(log, [{"i": 2}])
    append_jsonl(log, [])
    data = log.read_bytes()
    assert data.startswith(first)
    assert os.stat(log).st_ino == inode  # same file, not replaced
    lines = data.decode().splitlines()
    assert [json.loads(line)["i"] for line in lines] == [0, 1, 2]

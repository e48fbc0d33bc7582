"""Durable writes under faults: full disk (RLIMIT_FSIZE), short writes, read-only folders."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from faults import run_python, run_unprivileged, world_dir

from safegen_guard import io as sg_io
from safegen_guard.io import (
    append_jsonl,
    atomic_write_bytes,
    read_jsonl,
    remove_stale_temp_files,
    repair_jsonl,
)

_FULL_DISK = r"""
import json, resource, signal, sys
from safegen_guard.io import append_jsonl
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
ok = []
for i in range(10):
    try:
        append_jsonl(sys.argv[1], [{"i": i, "pad": "x" * 200}])
        ok.append(i)
    except OSError as err:
        pass
print(json.dumps(ok))
"""


def test_full_disk_keeps_whole_records_only(tmp_path):
    """RLIMIT_FSIZE: 1000 bytes hold 4 of 10 records (~222 bytes); main kept a cut-off 5th."""
    log = tmp_path / "a.jsonl"
    proc = run_python(_FULL_DISK, str(log))
    assert proc.returncode == 0, proc.stderr
    ok = json.loads(proc.stdout)
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a complete line
    assert [json.loads(x)["i"] for x in lines[:-1]] == ok == [0, 1, 2, 3]


def test_short_writes_are_retried(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[: max(1, len(data) // 3)]))

    monkeypatch.setattr(sg_io.os, "write", short_write)
    append_jsonl(tmp_path / "a.jsonl", [{"i": i} for i in range(3)])
    atomic_write_bytes(tmp_path / "b.bin", b"0123456789" * 10)
    monkeypatch.undo()
    assert len(calls) > 4  # several partial writes happened
    assert [r["i"] for r in read_jsonl(tmp_path / "a.jsonl")] == [0, 1, 2]
    assert (tmp_path / "b.bin").read_bytes() == b"0123456789" * 10


def test_failed_append_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    log = tmp_path / "a.jsonl"
    append_jsonl(log, [{"i": 0}])
    before = log.read_bytes()
    real_write = os.write

    def half_then_fail(fd, data):
        if len(data) < 8:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data[: len(data) // 2]))

    monkeypatch.setattr(sg_io.os, "write", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        append_jsonl(log, [{"i": 1, "pad": "y" * 50}, {"i": 2}])
    monkeypatch.undo()
    assert log.read_bytes() == before
    append_jsonl(log, [{"i": 3}])
    assert [r["i"] for r in read_jsonl(log)] == [0, 3]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, umask):
    """Every writer, and a guard's files: ``0o666 & ~umask`` (main forced 0600)."""
    from safegen_guard.checkpoint import write_checkpoint
    from safegen_guard.io import atomic_extend_jsonl, atomic_write_json, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_bytes(tmp_path / "x.bin", b"x", exclusive=True)
        atomic_write_text(tmp_path / "t.txt", "x")
        atomic_write_json(tmp_path / "j.json", {})
        append_jsonl(tmp_path / "b.jsonl", [{}])
        atomic_extend_jsonl(tmp_path / "e.jsonl", [{}])
        write_checkpoint(tmp_path / "guard", {"w": torch.zeros(2)}, {"k": 1})
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 8
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_a_replaced_file_keeps_its_mode(tmp_path):
    from safegen_guard.io import atomic_extend_jsonl

    for name in ("a.bin", "e.jsonl"):
        (tmp_path / name).write_bytes(b"{}\n")
        (tmp_path / name).chmod(0o600)  # the user made it private
    atomic_write_bytes(tmp_path / "a.bin", b"new")
    atomic_extend_jsonl(tmp_path / "e.jsonl", [{"i": 1}])
    append_jsonl(tmp_path / "e.jsonl", [{"i": 2}])
    for name in ("a.bin", "e.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert [r.get("i") for r in read_jsonl(tmp_path / "e.jsonl")] == [None, 1, 2]


def test_read_only_folder_raises_and_keeps_the_old_file(tmp_path):
    folder = world_dir(tmp_path, "ro")
    target = folder / "f.txt"
    target.write_text("original")
    target.chmod(0o644)
    folder.chmod(0o555)

    def child():
        with pytest.raises(PermissionError):
            atomic_write_bytes(target, b"new")
        with pytest.raises(PermissionError):
            append_jsonl(target, [{"i": 1}])
        assert target.read_text() == "original"
        assert sorted(p.name for p in folder.iterdir()) == ["f.txt"]

    try:
        run_unprivileged(child)
    finally:
        folder.chmod(0o755)


def test_repair_jsonl_cuts_an_unfinished_line(tmp_path, caplog):
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'{"i": 0}\n{"i": 1, "x"')
    with caplog.at_level("WARNING", logger="safegen_guard.io"):
        assert repair_jsonl(log) == len(b'{"i": 1, "x"')
    assert "unfinished last line" in caplog.text
    assert log.read_bytes() == b'{"i": 0}\n'
    assert repair_jsonl(log) == 0 and repair_jsonl(tmp_path / "none.jsonl") == 0


def test_remove_stale_temp_files(tmp_path, caplog):
    (tmp_path / ".x.png.ab_c12.tmp").write_bytes(b"partial")
    (tmp_path / "keep.tmp").write_bytes(b"user file")  # not one of ours
    (tmp_path / "x.png").write_bytes(b"done")
    with caplog.at_level("WARNING", logger="safegen_guard.io"):
        removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".x.png.ab_c12.tmp"]
    assert "removed 1 temporary file" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp", "x.png"]
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_read_jsonl_rejects_a_broken_complete_line(tmp_path):
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'{"i": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"a.jsonl:2 is not a JSON line"):
        read_jsonl(log)
    log.write_bytes(b"[1]\n")
    with pytest.raises(ValueError, match=r"must hold a JSON object, got list"):
        read_jsonl(log)

"""Per-rank shard files of a `safegen score` run and their atomic merge into verdicts.jsonl.

Each rank appends ``{"record": ...}`` lines and one ``{"done": [path, sha256], "run_id",
"position"}`` line per file (one durable append per batch) to
``shards/<run_id>.rank<r>.jsonl``; :func:`merge_shards` moves complete files into
``verdicts.jsonl`` in one atomic rewrite, so a killed run or a killed merge never loses or
duplicates a record.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safegen_guard.io import atomic_extend_jsonl, repair_jsonl

__all__ = [
    "SHARDS",
    "VERDICTS",
    "MergeResult",
    "merge_shards",
    "run_records",
    "scored_keys",
    "shard_path",
]

SHARDS = "shards"
VERDICTS = "verdicts.jsonl"


def shard_path(out: Path, run_id: str, rank: int) -> Path:
    """``out/shards/<run_id>.rank<rank>.jsonl``."""
    return Path(out) / SHARDS / f"{run_id}.rank{rank}.jsonl"


def scored_keys(out: Path, *, with_run: bool = False) -> set[tuple[str, ...]]:
    """Keys of the records in ``out/verdicts.jsonl`` (streamed).

    ``(path, input_sha256)`` (what resuming skips), or with ``with_run``
    ``(run_id, path, input_sha256)`` (what a merge never adds twice).
    """
    keys: set[tuple[str, ...]] = set()
    for r in _read_lines(Path(out) / VERDICTS):
        if "input_sha256" in r:
            key = (r["path"], r["input_sha256"])
            keys.add((r.get("run_id", ""), *key) if with_run else key)
    return keys


@dataclass
class MergeResult:
    """What :func:`merge_shards` moved into ``verdicts.jsonl``.

    Attributes:
        added: records added, per run id.
        skipped: ``{"path", "error"}`` of the files no rank could score.
        already_scored: files skipped because they were scored before (resume).
    """

    added: dict[str, int]
    skipped: list[dict[str, Any]]
    already_scored: int


def merge_shards(out: Path) -> MergeResult:
    """Move complete files from every shard into ``verdicts.jsonl`` (atomic), remove shards.

    A file's records count only when its ``done`` line is in the shard (written in the same
    append, so a killed write never counts half a file); a file already merged for the same
    run (a merge killed before it removed the shards) or scored twice is added once. Records
    are streamed in input order (``position``, then ``index``), never held all in memory.
    """
    out = Path(out)
    shards = sorted((out / SHARDS).glob("*.rank*.jsonl"))
    if not shards:
        return MergeResult({}, [], 0)
    merged = scored_keys(out, with_run=True)
    complete: set[tuple[str, ...]] = set()
    skipped: dict[str, dict[str, Any]] = {}
    already: set[str] = set()
    for shard in shards:
        repair_jsonl(shard)
        for line in _read_lines(shard):
            if "done" in line:
                complete.add((line["run_id"], *line["done"]))
            elif "skipped" in line:
                skipped.setdefault(line["skipped"]["path"], line["skipped"])
            elif "already_scored" in line:
                already.add(line["already_scored"])
    complete -= merged
    added: dict[str, int] = {}
    emitted: set[tuple[str, ...]] = set()

    def records() -> Iterator[dict[str, Any]]:
        streams = [_shard_records(shard, k) for k, shard in enumerate(shards)]
        for *_, r in heapq.merge(*streams):
            key = (r["run_id"], r["path"], r["input_sha256"])
            if key in complete and (*key, r["index"]) not in emitted:
                emitted.add((*key, r["index"]))
                added[r["run_id"]] = added.get(r["run_id"], 0) + 1
                yield r

    atomic_extend_jsonl(out / VERDICTS, records())
    for shard in shards:
        shard.unlink()
    return MergeResult(added, list(skipped.values()), len(already))


def _shard_records(shard: Path, k: int) -> Iterator[tuple[int, int, int, int, dict[str, Any]]]:
    """``(position, index, shard number, line number, record)`` in file order."""
    for n, line in enumerate(_read_lines(shard)):
        if "record" in line:
            r = line["record"]
            yield r["position"], r["index"], k, n, r


def run_records(out: Path, run_id: str) -> Iterator[dict[str, Any]]:
    """The records of one run in ``out/verdicts.jsonl``, streamed in file order."""
    for r in _read_lines(Path(out) / VERDICTS):
        if r.get("run_id") == run_id:
            yield r


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)

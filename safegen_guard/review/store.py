"""SQLite storage of review decisions: WAL mode, one transaction per decision, nothing rewritten.

Every decision is a new row (who, what, when, note); the current decision of an item is its
latest row, so a change of mind keeps the earlier one for the audit trail.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from safegen_guard.io import atomic_write_text

__all__ = ["DECISIONS", "DecisionStore", "connect", "utc_now"]

#: decision name -> keyboard key in the review app.
DECISIONS = {"accept": "a", "reject": "r", "unsure": "u"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'unsure')),
    note TEXT NOT NULL DEFAULT '',
    reviewer TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_item ON decisions (item, id);
"""
_FIELDS = ("id", "item", "decision", "note", "reviewer", "decided_at")


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database in WAL mode with ``schema`` applied.

    Autocommit mode: each ``with conn:`` block is one transaction.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(schema)
    return conn


class DecisionStore:
    """Review decisions in the SQLite file ``path`` (a connection per call: thread-safe).

    Args:
        path: database file (created with its folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        connect(self.path, _SCHEMA).close()

    def record(self, item: str, decision: str, reviewer: str, note: str = "") -> dict:
        """Store one decision in its own transaction and return the stored row.

        Raises:
            ValueError: unknown ``decision``, empty ``item`` or ``reviewer``.
        """
        if decision not in DECISIONS:
            raise ValueError(f"`decision` must be one of {list(DECISIONS)}, got {decision!r}")
        for name, value in (("item", item), ("reviewer", reviewer)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"`{name}` must be a non-empty string, got {value!r}")
        conn = connect(self.path, _SCHEMA)
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.execute(
                    "INSERT INTO decisions (item, decision, note, reviewer, decided_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (item, decision, str(note or ""), reviewer.strip(), utc_now()),
                )
                row = conn.execute("SELECT * FROM decisions WHERE id = ?", (cur.lastrowid,))
                return dict(row.fetchone())
        finally:
            conn.close()

    def rows(self) -> list[dict]:
        """Every decision, oldest first."""
        conn = connect(self.path, _SCHEMA)
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM decisions ORDER BY id")]
        finally:
            conn.close()

    def latest(self) -> dict[str, dict]:
        """Map each item to its most recent decision."""
        return {r["item"]: r for r in self.rows()}

    def to_csv(self) -> str:
        """Every decision as CSV text (header ``id,item,decision,note,reviewer,decided_at``)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def to_jsonl(self) -> str:
        """Every decision as JSON lines."""
        return "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows())

    def export(self, path: str | Path) -> Path:
        """Write every decision to ``path`` (``.csv`` or ``.jsonl``), atomically.

        Raises:
            ValueError: another suffix.
        """
        path = Path(path)
        if path.suffix not in (".csv", ".jsonl"):
            raise ValueError(f"export path must end in .csv or .jsonl, got {path.name!r}")
        return atomic_write_text(path, self.to_csv() if path.suffix == ".csv" else self.to_jsonl())

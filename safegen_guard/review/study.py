"""Reader study: cases with ground truth, a counterbalanced crossover schedule, SQLite readings.

Design. The cases are split into halves A and B, balanced by ground truth. Readers are put in
two groups by the order in which they join (odd/even). Session 1 shows every case once:
group 0 reads A unassisted and B assisted, group 1 the reverse; session 2 shows every case again
in the other arm. So each reader reads each case once per arm, and each case is read
unassisted first by half of the readers (the carry-over effect cancels). The washout is the
number of other readings between a case's two readings: the session-2 order is drawn until
every case's gap is at least ``washout`` (default half the cases).

Storage. ``study.json`` (written once by ``create``) holds the cases; ``study.sqlite`` (WAL)
holds readers (join order) and readings, keyed by ``(reader, seq)`` so a reading is stored
once however often a browser re-sends it. All state is on the server: a reader who reloads
the page, or a restarted server, continues at the first unanswered reading.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from safegen_guard.io import atomic_write_json
from safegen_guard.review.store import connect, utc_now

__all__ = ["ARMS", "Study", "StudyStore", "crossover_schedule", "write_study"]

ARMS = ("unassisted", "assisted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readers (
    reader TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    joined_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    reader TEXT NOT NULL REFERENCES readers (reader),
    seq INTEGER NOT NULL,
    case_id TEXT NOT NULL,
    arm TEXT NOT NULL CHECK (arm IN ('unassisted', 'assisted')),
    decision TEXT NOT NULL CHECK (decision IN ('safe', 'unsafe')),
    likert INTEGER NOT NULL CHECK (likert BETWEEN 1 AND 5),
    decision_ms REAL NOT NULL CHECK (decision_ms >= 0),
    answered_at TEXT NOT NULL,
    PRIMARY KEY (reader, seq)
);
"""


def crossover_schedule(
    case_ids: list[str], truths: list[bool], reader_number: int, seed: int, washout: int
) -> list[dict]:
    """The ``2 n`` readings of one reader, in order.

    Args:
        case_ids: the ``n`` case ids.
        truths: ``n`` ground truths (``True`` = unsafe), used to balance the halves.
        reader_number: 0-based join order; its parity is the reader's group.
        seed: the study's seed (halves); the order also depends on ``reader_number``.
        washout: least number of other readings between a case's two readings
            (at most ``n - 1``).

    Returns:
        dicts ``{"seq", "case", "arm", "session"}``, ``seq`` = 0 .. 2n-1.

    Raises:
        ValueError: ``washout`` outside ``[0, n - 1]`` or mismatched lengths.
    """
    n = len(case_ids)
    if len(truths) != n or n == 0:
        raise ValueError(f"`truths` must have {n} > 0 entries like `case_ids`, got {len(truths)}")
    if not 0 <= washout <= n - 1:
        raise ValueError(f"`washout` must be in [0, {n - 1}], got {washout}")
    half_b = _half_b(case_ids, truths, seed)
    group = reader_number % 2
    rng = random.Random(f"{seed}/{reader_number}")
    first = list(case_ids)
    rng.shuffle(first)
    # session 2, position j: any unused case with (n - 1 - pos1) + j >= washout, i.e. among
    # the first n - washout + j of session 1; these sets grow with j, so a random pick from
    # them never runs out (n - washout candidates are always left)
    second: list[str] = []
    left = list(first)
    for j in range(n):
        eligible = [c for c in left[: n - washout + j - len(second)]]
        pick = rng.choice(eligible)
        left.remove(pick)
        second.append(pick)
    out = []
    for session, order in ((1, first), (2, second)):
        for c in order:
            assisted = (c in half_b) ^ bool(group) ^ (session == 2)
            arm = ARMS[int(assisted)]
            out.append({"seq": len(out), "case": c, "arm": arm, "session": session})
    return out


def _half_b(case_ids: list[str], truths: list[bool], seed: int) -> set[str]:
    rng = random.Random(f"{seed}/halves")
    half: set[str] = set()
    for label in (False, True):
        group = sorted(c for c, t in zip(case_ids, truths) if t == label)
        rng.shuffle(group)
        half |= set(group[: len(group) // 2])
    return half


def write_study(
    folder: str | Path, cases: list[dict], *, seed: int = 0, washout: int | None = None
) -> Path:
    """Write ``study.json`` for ``cases`` (image files already under ``folder``).

    Args:
        folder: the study folder.
        cases: dicts with ``id``, ``image`` (unassisted view, relative path), ``panel``
            (assisted view), ``truth`` (``"safe"``/``"unsafe"``), ``source`` and the guard's
            ``unsafe``, ``p_value`` and ``reasons``.
        seed: schedule seed.
        washout: least gap between a case's two readings (default ``n // 2``).

    Raises:
        ValueError: duplicate ids, a truth other than safe/unsafe, or a bad washout.
    """
    ids = [c["id"] for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    bad = sorted({c["truth"] for c in cases} - {"safe", "unsafe"})
    if bad:
        raise ValueError(f"`truth` must be 'safe' or 'unsafe', got {bad}")
    washout = len(cases) // 2 if washout is None else washout
    crossover_schedule(ids, [c["truth"] == "unsafe" for c in cases], 0, seed, washout)  # check
    spec = {"version": 1, "seed": seed, "washout": washout, "cases": cases}
    return atomic_write_json(Path(folder) / "study.json", spec)


@dataclass
class Study:
    """A study folder: its cases and its readings database."""

    folder: Path
    spec: dict

    @classmethod
    def open(cls, folder: str | Path) -> Study:
        """Read ``folder/study.json``.

        Raises:
            FileNotFoundError: no ``study.json`` (create one with ``safegen study create``).
        """
        folder = Path(folder)
        path = folder / "study.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; create it with `safegen study create`")
        return cls(folder, json.loads(path.read_text()))

    @property
    def cases(self) -> dict[str, dict]:
        """Case id -> case."""
        return {c["id"]: c for c in self.spec["cases"]}

    def schedule(self, reader_number: int) -> list[dict]:
        """The reading order of the reader who joined ``reader_number``-th (0-based)."""
        cases = self.spec["cases"]
        return crossover_schedule(
            [c["id"] for c in cases],
            [c["truth"] == "unsafe" for c in cases],
            reader_number,
            int(self.spec["seed"]),
            int(self.spec["washout"]),
        )

    def store(self) -> StudyStore:
        """The readings database ``folder/study.sqlite``."""
        return StudyStore(self.folder / "study.sqlite")


class StudyStore:
    """Readers and readings in SQLite (WAL; a connection per call; one transaction per write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        connect(self.path, _SCHEMA).close()

    def _conn(self) -> sqlite3.Connection:
        return connect(self.path, _SCHEMA)

    def join(self, reader: str) -> int:
        """The reader's 0-based join number (assigned on the first call).

        Raises:
            ValueError: empty or over-long reader id.
        """
        reader = reader.strip() if isinstance(reader, str) else ""
        if not reader or len(reader) > 64:
            raise ValueError(f"reader id must be 1-64 characters, got {reader!r}")
        conn = self._conn()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT number FROM readers WHERE reader = ?", (reader,))
                found = row.fetchone()
                if found is not None:
                    return int(found[0])
                number = conn.execute("SELECT COUNT(*) FROM readers").fetchone()[0]
                conn.execute(
                    "INSERT INTO readers (reader, number, joined_at) VALUES (?, ?, ?)",
                    (reader, number, utc_now()),
                )
                return int(number)
        finally:
            conn.close()

    def answered(self, reader: str) -> set[int]:
        """The ``seq`` numbers the reader has answered."""
        conn = self._conn()
        try:
            rows = conn.execute("SELECT seq FROM readings WHERE reader = ?", (reader,))
            return {int(r[0]) for r in rows}
        finally:
            conn.close()

    def record(self, reader: str, reading: dict, decision: str, likert: int, ms: float) -> bool:
        """Store one reading; ``False`` (and nothing written) if ``(reader, seq)`` exists.

        Raises:
            ValueError: decision not safe/unsafe, Likert outside 1-5 or negative time.
        """
        if decision not in ("safe", "unsafe"):
            raise ValueError(f"`decision` must be 'safe' or 'unsafe', got {decision!r}")
        if isinstance(likert, bool) or not isinstance(likert, int) or not 1 <= likert <= 5:
            raise ValueError(f"`likert` must be an int in 1..5, got {likert!r}")
        if not isinstance(ms, (int, float)) or not ms >= 0:
            raise ValueError(f"`ms` must be a non-negative number, got {ms!r}")
        conn = self._conn()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.execute(
                    "INSERT OR IGNORE INTO readings (reader, seq, case_id, arm, decision, likert, "
                    "decision_ms, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        reader,
                        reading["seq"],
                        reading["case"],
                        reading["arm"],
                        decision,
                        likert,
                        float(ms),
                        utc_now(),
                    ),
                )
                return cur.rowcount == 1
        finally:
            conn.close()

    def readings(self) -> list[dict]:
        """Every reading, by reader and sequence."""
        conn = self._conn()
        try:
            rows = conn.execute("SELECT * FROM readings ORDER BY reader, seq")
            return [dict(r) for r in rows]
        finally:
            conn.close()

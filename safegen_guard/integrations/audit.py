"""Nothing is lost: an append-only JSONL audit log and a quarantine folder for unsafe samples."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from safegen_guard.io import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    read_jsonl,
    remove_stale_temp_files,
    repair_jsonl,
)
from safegen_guard.verdict import Verdict
from safegen_guard.viz import save_png, to_uint8

__all__ = ["AuditLog", "Quarantine", "audit_invalid", "image_sha256", "new_run_id", "recover"]

log = logging.getLogger(__name__)


def image_sha256(image: torch.Tensor) -> str:
    """16-hex SHA-256 of an image's float32 bytes (ties an audit record to its pixels).

    Args:
        image: ``[C, H, W]`` float image (any values, NaN included).
    """
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


class AuditLog:
    """Append-only JSONL log: one line per scored image, naming the guard that judged it.

    Args:
        path: the ``.jsonl`` file (created with its folders; existing lines are kept).
        guard_fingerprint: fingerprint of the guard (``guard.fingerprint``); recorded on
            every line even when a verdict carries none.

    Example:
        >>> log = AuditLog(tmp / "audit.jsonl", guard.fingerprint)  # doctest: +SKIP
        >>> log.write(verdict, images, step=100, source="lightning")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, guard_fingerprint: str) -> None:
        if not isinstance(guard_fingerprint, str) or not guard_fingerprint:
            raise ValueError(
                f"`guard_fingerprint` must be a non-empty str, got {guard_fingerprint!r}"
            )
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"`audit_log` must be a file path, got the folder {self.path}")
        self.guard_fingerprint = guard_fingerprint

    def write(
        self,
        verdict: Verdict,
        images: torch.Tensor,
        *,
        step: int | None = None,
        rank: int | Sequence[int] = 0,
        source: str = "safegen",
        extra: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Append one record per image (all or none, durably) and return the records.

        Arguments as in :meth:`records`.
        """
        records = self.records(verdict, images, step=step, rank=rank, source=source, extra=extra)
        self.append(records)
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records built by :meth:`records` (or by hand): all of them or none.

        Raises:
            OSError: nothing was appended.
        """
        append_jsonl(self.path, records)

    def records(
        self,
        verdict: Verdict,
        images: torch.Tensor,
        *,
        step: int | None = None,
        rank: int | Sequence[int] = 0,
        source: str = "safegen",
        extra: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """One record per image (the verdict, who produced it, the image's hash), not written.

        Args:
            verdict: verdicts of ``B`` images.
            images: ``[B, C, H, W]`` the images judged (hashed, not stored).
            step: training step or sampling call index.
            rank: producing rank, one for all or ``B`` values (per image).
            source: who produced the images (``"lightning"``, ``"diffusers"``, ...).
            extra: extra fields, one dict for all or ``B`` dicts (e.g. quarantine paths).

        Raises:
            ValueError: ``images``, ``rank`` or ``extra`` do not have ``B`` entries.
        """
        b = len(verdict)
        ranks = [rank] * b if isinstance(rank, int) else list(rank)
        extras = [extra or {}] * b if extra is None or isinstance(extra, dict) else list(extra)
        if images.shape[0] != b or len(ranks) != b or len(extras) != b:
            raise ValueError(
                f"`images`, `rank` and `extra` must have {b} entries like `verdict`, got "
                f"{images.shape[0]}, {len(ranks)}, {len(extras)}"
            )
        now = time.time()
        records = []
        for rec, img, r, ex in zip(verdict.to_records(), images, ranks, extras):
            rec.update(step=step, rank=int(r), source=source, time=now)
            rec.update(guard_fingerprint=self.guard_fingerprint, image_sha256=image_sha256(img))
            rec.update(ex)
            records.append(rec)
        return records


_SAMPLE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def new_run_id() -> str:
    """A name part unique to one run: UTC time to the second + 8 random hex digits."""
    return time.strftime("run%Y%m%dT%H%M%S", time.gmtime()) + secrets.token_hex(4)


class Quarantine:
    """A folder that keeps rejected samples: ``<sample_id>.png`` + ``<sample_id>.json`` each.

    ``sample_id`` starts with a run id (:func:`new_run_id`), so a second run into the same
    folder never reuses a name; a file is never overwritten. The JSON (the sample's full
    verdict record) is written before the PNG, and the audit line after both, so after a crash
    every PNG has its JSON, and :func:`recover` finishes what the audit log is missing.
    PNGs are 8-bit grayscale (non-finite pixels written as 0; the JSON says how many there
    were). Every file is written atomically and durably.

    Args:
        directory: the quarantine folder (created on first use).
        run_id: name prefix of this run's samples; default a fresh :func:`new_run_id`.

    Raises:
        ValueError: ``directory`` exists and is not a folder.
    """

    def __init__(self, directory: str | os.PathLike, run_id: str | None = None) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"`quarantine_dir` must be a folder, got the file {self.directory}")
        self.run_id = new_run_id() if run_id is None else run_id
        if not _SAMPLE_ID.match(self.run_id):
            raise ValueError(f"`run_id` must match {_SAMPLE_ID.pattern}, got {self.run_id!r}")

    def sample_id(self, prefix: str, index: int) -> str:
        """``<run_id>_<prefix>_<index:04d>``: the file stem of one quarantined sample."""
        return f"{self.run_id}_{prefix}_{index:04d}"

    def store_record(self, image: torch.Tensor, record: dict[str, Any]) -> Path:
        """Write one sample: its record as ``<sample_id>.json``, then its ``.png``.

        Args:
            image: ``[1, H, W]`` float image in ``[0, 1]`` (NaN/Inf allowed).
            record: the sample's record with a ``sample_id``; ``quarantine_path``,
                ``image_sha256`` and ``non_finite_pixels`` are added to the JSON.

        Returns:
            The PNG path.

        Raises:
            ValueError: ``record["sample_id"]`` is missing or not a plain file stem.
            FileExistsError: a file of that sample already exists (never overwritten).
            OSError: the folder cannot be written.
        """
        sid = str(record.get("sample_id", ""))
        if not _SAMPLE_ID.match(sid):
            raise ValueError(f"`record['sample_id']` must match {_SAMPLE_ID.pattern}, got {sid!r}")
        png = self.directory / f"{sid}.png"
        rec = dict(record, quarantine_path=str(png), image_sha256=image_sha256(image))
        rec["non_finite_pixels"] = int((~torch.isfinite(image)).sum())
        atomic_write_json(png.with_suffix(".json"), rec, exclusive=True)
        try:
            save_png(to_uint8(image[0]), png, exclusive=True)
        except BaseException:
            png.with_suffix(".json").unlink(missing_ok=True)
            raise
        return png

    def store(
        self,
        images: torch.Tensor,
        verdict: Verdict,
        indices: Sequence[int] | torch.Tensor,
        prefix: str,
    ) -> list[Path]:
        """Write the selected samples and their verdicts; return the PNG paths.

        Args:
            images: ``[B, 1, H, W]`` float images in ``[0, 1]`` (NaN/Inf allowed).
            verdict: verdicts of the ``B`` images.
            indices: which images to keep (e.g. ``verdict.unsafe.nonzero().flatten()``).
            prefix: file-name part after the run id, e.g. ``"step00000100_check00003"``.

        Raises:
            ValueError: ``images`` and ``verdict`` differ in length, or an index is out of range.
        """
        b = len(verdict)
        idx = [int(i) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
        if images.shape[0] != b or any(not 0 <= i < b for i in idx):
            raise ValueError(
                f"`images` ({images.shape[0]}) must match `verdict` ({b}) and `indices` must "
                f"lie in [0, {b}), got {idx}"
            )
        records = verdict.to_records()
        return [
            self.store_record(images[i], dict(records[i], sample_id=self.sample_id(prefix, i)))
            for i in idx
        ]


def audit_invalid(
    audit: AuditLog,
    quarantine: Quarantine | None,
    images: torch.Tensor,
    error: Exception,
    *,
    sample_id: str,
    step: int | None,
    rank: int,
    source: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record samples the guard refused to judge (wrong shape, range, ...): nothing is lost.

    The raw tensor goes to ``<quarantine>/<sample_id>.safetensors`` (when a quarantine is
    set), then one audit line (``unsafe``, reason ``invalid_samples``, the error, the shape
    and the tensor's hash) is appended.

    Args:
        audit: the audit log.
        quarantine: where to keep the tensor, or ``None``.
        images: the refused tensor, any shape.
        error: why it was refused.
        sample_id: unique file stem (starts with the run id).
        step: training step or call index.
        rank: producing rank.
        source: who produced the images.
        extra: more fields for the record.

    Returns:
        The record appended.
    """
    rec: dict[str, Any] = {
        "sample_id": sample_id, "step": step, "rank": rank, "source": source,
        "time": time.time(), "unsafe": True, "reasons": ["invalid_samples"],
        "error": f"{type(error).__name__}: {error}", "shape": list(images.shape),
        "guard_fingerprint": audit.guard_fingerprint, "quarantine_path": None,
        "tensor_sha256": image_sha256(images), **(extra or {}),
    }  # fmt: skip
    if quarantine is not None:
        path = quarantine.directory / f"{sample_id}.safetensors"
        blob = save_safetensors({"samples": images.detach().cpu().contiguous()})
        rec["quarantine_path"] = str(atomic_write_bytes(path, blob, exclusive=True))
    audit.append([rec])
    return rec


def recover(quarantine: Quarantine | None, audit: AuditLog) -> dict[str, int]:
    """Finish what a killed run left half-done; call it when a run starts (rank zero).

    1. an unfinished last line of the audit log is cut off (it was never committed);
    2. temporary files of interrupted writes are removed from both folders;
    3. a quarantined sample whose JSON exists but whose audit line does not gets its line
       (``"recovered": true``); if its PNG was never written the line says so
       (``quarantine_path`` null) and the lone JSON is removed.

    Every action is logged as a warning.

    Returns:
        Counts ``{"cut_bytes", "temp_files", "recovered", "missing_images"}``.
    """
    out = {"cut_bytes": repair_jsonl(audit.path), "temp_files": 0}
    folders = {audit.path.parent} | ({quarantine.directory} if quarantine is not None else set())
    for folder in sorted(folders):
        out["temp_files"] += len(remove_stale_temp_files(folder))
    out["recovered"] = out["missing_images"] = 0
    if quarantine is None or not quarantine.directory.is_dir():
        return out
    committed = {r.get("sample_id") for r in read_jsonl(audit.path)}
    pending, lone = [], []
    for side in sorted(quarantine.directory.glob("*.json")):
        rec = _read_sidecar(side)
        if rec is None or rec["sample_id"] in committed:
            continue
        if side.with_suffix(".png").is_file():
            pending.append(dict(rec, recovered=True))
        else:
            pending.append(
                dict(
                    rec,
                    recovered=True,
                    quarantine_path=None,
                    quarantine_error="interrupted before the image was written",
                )
            )
            lone.append(side)
    if pending:
        append_jsonl(audit.path, pending)
        for side in lone:
            side.unlink(missing_ok=True)
        out["recovered"], out["missing_images"] = len(pending) - len(lone), len(lone)
        log.warning(
            "%s: added %d audit line(s) for quarantined samples an interrupted run had not "
            "recorded (%d without their image)",
            audit.path,
            len(pending),
            len(lone),
        )
    return out


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The record in a quarantine JSON written by :meth:`Quarantine.store_record`, else None."""
    try:
        rec = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("sample_id") != path.stem:
        return None
    return rec

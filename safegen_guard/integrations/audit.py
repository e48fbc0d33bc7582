"""Nothing is lost: an append-only JSONL audit log and a quarantine folder for unsafe samples."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from safegen_guard.io import append_jsonl, atomic_write_json
from safegen_guard.verdict import Verdict
from safegen_guard.viz import save_png, to_uint8

__all__ = ["AuditLog", "Quarantine", "image_sha256"]


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
        """Append one record per image and return the records.

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
        append_jsonl(self.path, records)
        return records


class Quarantine:
    """A folder that keeps rejected samples: ``<prefix>_<index>.png`` + ``.json`` verdict each.

    PNGs are 8-bit grayscale (non-finite pixels written as 0; the JSON says how many there
    were). Every file is written atomically.

    Args:
        directory: the quarantine folder (created on first use).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

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
            prefix: file-name prefix, e.g. ``"step0000100_rank0"``.

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
        paths = []
        for i in idx:
            stem = self.directory / f"{prefix}_{i:04d}"
            png = save_png(to_uint8(images[i, 0]), stem.with_suffix(".png"))
            rec = dict(records[i], image_sha256=image_sha256(images[i]))
            rec["non_finite_pixels"] = int((~torch.isfinite(images[i])).sum())
            atomic_write_json(stem.with_suffix(".json"), rec)
            paths.append(png)
        return paths

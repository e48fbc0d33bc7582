"""One check's records: quarantine the unsafe samples, then append every verdict."""

from __future__ import annotations

from pathlib import Path

import torch

from safegen_guard.integrations.audit import AuditLog, Quarantine, new_run_id
from safegen_guard.memorization.index import MemorizationIndex
from safegen_guard.memorization.quarantine import store_nearest
from safegen_guard.verdict import Verdict

__all__ = ["write_check_audit"]


def write_check_audit(
    audit: AuditLog,
    quarantine: Quarantine | None,
    memorization: MemorizationIndex | None,
    images: torch.Tensor,
    verdict: Verdict,
    ranks: list[int],
    *,
    step: int,
    index: int,
    stage: str,
) -> None:
    """Quarantine the unsafe samples, then append every verdict (the commit point).

    A sample that cannot be quarantined keeps its audit line (``quarantine_path`` null,
    ``quarantine_error`` saying why); the failure is raised after the append.
    """
    prefix = f"step{step:08d}_check{index:05d}"
    run_id = quarantine.run_id if quarantine is not None else new_run_id()
    extra = [
        {"check": index, "stage": stage, "quarantine_path": None,
         "sample_id": f"{run_id}_{prefix}_{i:04d}"}
        for i in range(len(verdict))
    ]  # fmt: skip
    records = audit.records(verdict, images, step=step, rank=ranks, source="lightning", extra=extra)
    failures: list[Exception] = []
    stored: dict[int, Path] = {}
    keep = (verdict.unsafe | verdict.memorized).nonzero().flatten().tolist()
    for i in keep if quarantine is not None else []:
        try:
            stored[i] = quarantine.store_record(images[i], records[i])
            records[i]["quarantine_path"] = str(stored[i])
        except Exception as exc:  # the verdict is kept in the audit log below
            records[i]["quarantine_error"] = f"{type(exc).__name__}: {exc}"
            failures.append(exc)
    if stored and memorization is not None:  # each copy beside its training image
        try:
            store_nearest(memorization, verdict.select(list(stored)), list(stored.values()))
        except Exception as exc:
            failures.append(exc)
    audit.append(records)
    if failures:
        raise RuntimeError(
            f"{len(failures)} unsafe sample(s) could not be quarantined (first: "
            f"{failures[0]}); their verdicts are in {audit.path}"
        ) from failures[0]

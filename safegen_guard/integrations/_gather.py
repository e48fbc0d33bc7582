"""All-gather per-rank verdicts into one batch (padded to equal sizes so gloo never aborts)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from safegen_guard.guard import Guard
from safegen_guard.verdict import Verdict

__all__ = ["gather_verdicts"]


def gather_verdicts(
    pl_module: pl.LightningModule,
    guard: Guard,
    images: torch.Tensor | None,
    verdict: Verdict | None,
    capacity: int,
    errors: int,
) -> tuple[torch.Tensor | None, Verdict | None, list[int], int]:
    """Collect every rank's images and verdicts; must be called on every rank.

    Args:
        pl_module: the module whose ``all_gather`` is used (``(world, ...)`` under DDP).
        guard: the guard that produced the verdicts (fixes shapes and reason names).
        images: ``[n, C, S, S]`` this rank's images, or ``None`` when its check failed.
        verdict: their verdicts, or ``None``.
        capacity: the largest ``n`` any rank can have (rows are padded to it).
        errors: this rank's error count (summed over ranks).

    Returns:
        ``(images [N, C, S, S], verdict of N, rank of each image, total errors)`` identical on
        every rank; images and verdict are ``None`` when no rank produced samples.
    """
    packed = _pack(guard, images, verdict, capacity, errors)
    out = pl_module.all_gather({k: v.to(pl_module.device) for k, v in packed.items()})
    if pl_module.trainer.world_size == 1 or out["count"].ndim == 1:
        out = {k: v.unsqueeze(0) for k, v in out.items()}
    out = {k: v.cpu() for k, v in out.items()}
    counts = [int(c) for c in out["count"].flatten()]
    total_errors = int(out["errors"].sum())
    if sum(counts) == 0:
        return None, None, [], total_errors
    rows = {k: torch.cat([out[k][r, :c] for r, c in enumerate(counts)]) for k in _ROW_KEYS}
    ranks = [r for r, c in enumerate(counts) for _ in range(c)]
    return rows["images"], _unpack_verdict(guard, rows), ranks, total_errors


_ROW_KEYS = ("images", "amap", "mask", "score", "p_value", "unsafe", "reasons", "vs", "vp", "copy")


def _vocabulary(guard: Guard) -> list[str]:
    return ["non_finite", "memorized", *guard.detector.view_names, "other"]


def _pack(
    guard: Guard, images: torch.Tensor | None, verdict: Verdict | None, capacity: int, errors: int
) -> dict[str, torch.Tensor]:
    c, s = guard.config.channels, guard.config.image_size
    views, vocab = guard.detector.view_names, _vocabulary(guard)
    n = 0 if verdict is None or images is None else len(verdict)
    z = torch.zeros
    p = {
        "images": z(capacity, c, s, s),
        "amap": z(capacity, 1, s, s),
        "mask": z(capacity, 1, s, s),
        "score": z(capacity),
        "p_value": z(capacity),
        "unsafe": z(capacity),
        "reasons": z(capacity, len(vocab)),
        "vs": z(capacity, len(views)),
        "vp": z(capacity, len(views)),
        "copy": z(capacity, 3, dtype=torch.float64),  # memorized, copy_p_value, nearest_index
        "count": torch.tensor([n], dtype=torch.float32),
        "errors": torch.tensor([errors], dtype=torch.float32),
    }
    if n:
        p["images"][:n] = images
        p["amap"][:n], p["mask"][:n] = verdict.anomaly_map, verdict.mask.float()
        p["score"][:n], p["p_value"][:n] = verdict.score, verdict.p_value
        p["unsafe"][:n] = verdict.unsafe.float()
        for i, reasons in enumerate(verdict.reasons):
            for r in reasons:
                p["reasons"][i, vocab.index(r) if r in vocab else len(vocab) - 1] = 1.0
        p["copy"][:n] = torch.stack(
            [
                verdict.memorized.double(),
                verdict.copy_p_value.double(),
                verdict.nearest_index.double(),
            ],
            dim=1,
        )
        for j, name in enumerate(views):
            if name in verdict.view_scores:
                p["vs"][:n, j] = verdict.view_scores[name]
                p["vp"][:n, j] = verdict.view_p_values[name]
    return p


def _unpack_verdict(guard: Guard, rows: dict[str, torch.Tensor]) -> Verdict:
    vocab, views = _vocabulary(guard), guard.detector.view_names
    reasons = [tuple(vocab[j] for j in row.nonzero().flatten().tolist()) for row in rows["reasons"]]
    return Verdict(
        score=rows["score"],
        p_value=rows["p_value"],
        unsafe=rows["unsafe"] > 0.5,
        anomaly_map=rows["amap"],
        mask=rows["mask"] > 0.5,
        reasons=reasons,
        view_scores={n: rows["vs"][:, j] for j, n in enumerate(views)},
        view_p_values={n: rows["vp"][:, j] for j, n in enumerate(views)},
        threshold=guard.calibrator.alpha,
        guard_fingerprint=guard.fingerprint,
        memorized=rows["copy"][:, 0] > 0.5,
        copy_p_value=rows["copy"][:, 1],
        nearest_index=rows["copy"][:, 2].long(),
    )

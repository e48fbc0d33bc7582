"""Add the memorization check to a guard's :class:`~safegen_guard.verdict.Verdict`."""

from __future__ import annotations

from dataclasses import replace

import torch

from safegen_guard.memorization.index import MemorizationIndex
from safegen_guard.verdict import Verdict

__all__ = ["add_copy_check", "CHECK_CHUNK"]

CHECK_CHUNK = 64
"""Images per :meth:`MemorizationIndex.check` call (about 60 MB of working memory at 64 px)."""


def add_copy_check(
    index: MemorizationIndex,
    x: torch.Tensor,
    verdict: Verdict,
    finite: torch.Tensor,
    chunk: int = CHECK_CHUNK,
) -> Verdict:
    """Fill ``memorized``, ``copy_p_value``, ``nearest_index`` and the ``memorized`` reason.

    Non-finite images are not checked (they are already unsafe). A memorized image is also
    ``unsafe`` unless the index was configured with ``mark_unsafe=False``.

    Args:
        index: The guard's memorization index.
        x: ``[B, 1, S, S]`` images in ``[0, 1]`` (non-finite ones are never read).
        verdict: The realism verdict of ``x``.
        finite: ``[B]`` bool, images without NaN/Inf.
        chunk: Images checked at a time (working memory grows with it, not with ``B``).

    Returns:
        A new verdict (the input is not modified).
    """
    b = len(verdict)
    memorized = torch.zeros(b, dtype=torch.bool)
    p_value = torch.full((b,), float("nan"), dtype=torch.float64)
    nearest = torch.full((b,), -1, dtype=torch.long)
    for idx in finite.nonzero().flatten().split(chunk):  # memory bounded by the chunk
        result = index.check(x[idx])
        memorized[idx], p_value[idx], nearest[idx] = (
            result.memorized,
            result.p_value,
            result.nearest_index,
        )
    reasons = [r + ("memorized",) if bool(m) else r for r, m in zip(verdict.reasons, memorized)]
    unsafe = verdict.unsafe | memorized if index.config.mark_unsafe else verdict.unsafe
    return replace(
        verdict,
        unsafe=unsafe,
        reasons=reasons,
        memorized=memorized,
        copy_p_value=p_value,
        nearest_index=nearest,
    )

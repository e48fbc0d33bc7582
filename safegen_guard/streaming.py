"""Chunked scoring and explanation for ``Guard.evaluate``: memory bounded by the chunk.

Only per-image results are kept from one chunk to the next: raw statistics ``[B, V]``, the
foreground fraction ``[B]`` and the combined anomaly map ``[B, 1, H, W]`` (and each requested
explanation map). Every output is allocated once, before the first chunk, and written in
place: small tensors that outlived each chunk between its temporaries fragmented the heap,
so the process grew with the batch even though nothing else was kept (measured with
``python -m benchmarks.memory``).
"""

from __future__ import annotations

from typing import Any

import torch

from safegen_guard.calibration import Calibrator, foreground_fraction
from safegen_guard.detector.detector import Detector
from safegen_guard.explain.protocol import EXPLANATIONS, ExplainContext

__all__ = ["finite_copy", "score_stream", "explain_stream"]


def finite_copy(x: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """The chunk ``x`` as a new contiguous CPU float32 tensor, its non-finite images zeroed.

    One layout and dtype whatever the caller passed (bitwise-stable scores), and a normal
    tensor even under ``torch.inference_mode`` (the explainers need autograd).

    Args:
        x: ``[b, C, H, W]`` float images, any device.
        finite: ``[b]`` bool, images without NaN/Inf.
    """
    with torch.inference_mode(False):
        out = torch.empty(x.shape, dtype=torch.float32).copy_(x.detach())
        if not bool(finite.all()):
            out[~finite] = 0.0
        return out


def score_stream(
    detector: Detector,
    calibrator: Calibrator,
    x: torch.Tensor,
    finite: torch.Tensor,
    batch_size: int,
    combine: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Score ``x`` chunk by chunk, keeping per-image results only.

    Each chunk's per-view maps are combined (``combine``) or dropped before the next chunk
    is scored, so working memory does not grow with the batch; only the outputs do.

    Args:
        detector: The guard's detector.
        calibrator: The guard's calibrator (combines the per-view maps).
        x: ``[B, C, H, W]`` float images (any device); non-finite ones are scored as zeros.
        finite: ``[B]`` bool, images without NaN/Inf.
        batch_size: Images per chunk.
        combine: Also return the combined anomaly map.

    Returns:
        ``stats`` ``[B, V]``, the combined map ``[B, 1, H, W]`` in ``[0, 1)`` (``None``
        unless ``combine``) and the foreground fraction ``[B]``.
    """
    b, _, h, w = x.shape
    with torch.inference_mode(False), torch.no_grad():
        stats: torch.Tensor | None = None
        cond = torch.empty(b)
        amap = torch.empty(b, 1, h, w) if combine else None
        for start in range(0, b, batch_size):
            stop = min(start + batch_size, b)
            chunk = finite_copy(x[start:stop], finite[start:stop])
            s, maps, fg = detector.score(chunk)
            if stats is None:
                stats = torch.empty((b, s.shape[1]), dtype=s.dtype)
            stats[start:stop] = s
            cond[start:stop] = foreground_fraction(fg)
            if amap is not None:
                amap[start:stop] = calibrator.combine_maps(maps)
            del chunk, s, maps, fg
    return stats, amap, cond  # type: ignore[return-value]  # b >= 1: stats is set


def explain_stream(
    explainer: Any,
    context: ExplainContext,
    x: torch.Tensor,
    finite: torch.Tensor,
    anomaly_map: torch.Tensor,
    methods: tuple[str, ...] | None,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """Run ``explainer.explain`` chunk by chunk into preallocated ``[B, ...]`` outputs.

    Args:
        explainer: The guard's explainer (:class:`~safegen_guard.explain.protocol.Explainer`).
        context: What the guard hands its explainer.
        x: ``[B, C, H, W]`` float images; non-finite ones are explained as zeros.
        finite: ``[B]`` bool, images without NaN/Inf.
        anomaly_map: ``[B, 1, H, W]`` the verdict's anomaly map.
        methods: Names among :data:`EXPLANATIONS`; ``None`` for all the explainer offers.
        batch_size: Images per chunk.

    Raises:
        ValueError: the explainer returned a name outside :data:`EXPLANATIONS`.
    """
    out: dict[str, torch.Tensor] = {}
    for start in range(0, len(x), batch_size):
        stop = min(start + batch_size, len(x))
        chunk = finite_copy(x[start:stop], finite[start:stop])
        part = explainer.explain(context, chunk, anomaly_map[start:stop], methods)
        unknown = sorted(set(part) - set(EXPLANATIONS))
        if unknown:
            raise ValueError(
                f"the explainer returned {unknown}; explanations must be among {EXPLANATIONS}"
            )
        for name, t in part.items():
            if name not in out:
                out[name] = torch.empty((len(x), *t.shape[1:]), dtype=t.dtype)
            out[name][start:stop] = t
    return out

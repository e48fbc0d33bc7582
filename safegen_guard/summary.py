"""`summarize`: the one summary of a batch of verdicts (callback metrics, CLI, score runs)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from safegen_guard.verdict import Verdict, verdict_schema

__all__ = ["summarize"]


def summarize(
    verdicts: Verdict | Iterable[Mapping[str, Any]],
    reasons: Sequence[str] = (),
    *,
    schema: type[Verdict] = Verdict,
) -> dict[str, float]:
    """Scalar summary of verdicts, derived from the fields' ``summary`` metadata.

    For each field of the schema (see :class:`~safegen_guard.verdict.FieldSpec`):
    ``"rate"`` gives ``<name>_rate`` (0 for no images) and ``num_<name>``;
    ``"distribution"`` gives ``<name>_mean`` and ``<name>_p95`` over finite values (NaN when
    none is finite); ``"counts"`` gives ``<prefix>/<value>`` counts, with ``<prefix>`` the
    field name without its plural ``s`` (``reason/recon``). Always ``num_samples``.

    Args:
        verdicts: a :class:`Verdict`, or its records (``Verdict.to_records`` rows, e.g. read
            back from ``verdicts.jsonl``; streamed once).
        reasons: names whose count is always present (0 when unused), e.g. the guard's
            ``("non_finite", "memorized", *view_names)``.
        schema: the verdict class whose fields describe the records (default
            :class:`Verdict`; ignored when ``verdicts`` is a verdict).

    Returns:
        ``{"num_samples", "score_mean", "score_p95", "unsafe_rate", "num_unsafe",
        "memorized_rate", "num_memorized", "reason/<name>", ...}`` as floats.
    """
    if isinstance(verdicts, Verdict):
        schema, verdicts = type(verdicts), verdicts.to_records()
    summarised = [(n, s) for n, s in verdict_schema(schema) if s.summary and s.record]
    columns: dict[str, list[Any]] = {n: [] for n, _ in summarised}
    count = 0
    for record in verdicts:
        count += 1
        for name, spec in summarised:
            columns[name].append(record.get(spec.record))
    out: dict[str, float] = {"num_samples": float(count)}
    for name, spec in summarised:
        values = columns[name]
        if spec.summary == "rate":
            hits = sum(bool(v) for v in values)
            out[f"{name}_rate"] = hits / max(count, 1)
            out[f"num_{name}"] = float(hits)
        elif spec.summary == "distribution":
            finite = [float(v) for v in values if _is_finite_number(v)]
            out[f"{name}_mean"] = float(np.mean(finite)) if finite else math.nan
            out[f"{name}_p95"] = float(np.quantile(finite, 0.95)) if finite else math.nan
        else:  # counts
            prefix = name[:-1] if name.endswith("s") else name
            counts = Counter(item for v in values for item in (v or ()))
            for key in dict.fromkeys([*reasons, *sorted(counts)]):
                out[f"{prefix}/{key}"] = float(counts.get(key, 0))
    return out


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

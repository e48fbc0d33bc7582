"""`Verdict`: the batched result of `Guard.evaluate`, and the one schema of every verdict form.

Each field is declared once with :func:`verdict_field`, whose metadata (:class:`FieldSpec`)
says what the field is per image (a scalar, a vector, a pixel map, a per-view dict, a Python
value) and where it goes. Everything else is derived from these declarations: validation,
:meth:`Verdict.select` / :meth:`Verdict.cat` / :meth:`Verdict.to`, :meth:`Verdict.to_records`
(JSONL, audit log, CLI), :meth:`Verdict.outputs` (the diffusers filter output), the DDP gather
(:mod:`safegen_guard.integrations._gather`) and :func:`safegen_guard.summary.summarize`. Adding
a field to the dataclass (or to a subclass) is therefore a one-place change.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, Literal

import torch

__all__ = ["KINDS", "FieldSpec", "Verdict", "field_spec", "verdict_field", "verdict_schema"]

Kind = Literal["scalar", "vector", "map", "dict", "list", "constant"]
KINDS: tuple[str, ...] = ("scalar", "vector", "map", "dict", "list", "constant")
_PER_IMAGE_TENSOR = ("scalar", "vector", "map")
_SUMMARIES = (None, "rate", "distribution", "counts")
_META_KEY = "safegen"


@dataclass(frozen=True)
class FieldSpec:
    """What a :class:`Verdict` field is and where it goes (the field's metadata).

    Attributes:
        kind: ``"scalar"`` ``[B]`` tensor, ``"vector"`` ``[B, K]`` tensor, ``"map"``
            ``[B, 1, H, W]`` tensor, ``"dict"`` name -> ``[B]`` tensor, ``"list"`` ``B``
            JSON-serialisable Python values, ``"constant"`` one JSON-serialisable value for the
            whole batch. Selection, concatenation and the DDP gather follow from the kind.
        record: key of the field in :meth:`Verdict.to_records` (``True``: its own name);
            ``False`` / ``None`` keeps it out of records (maps: their names are listed under
            ``maps``).
        encode: turns one image's value (a 0-d tensor, a ``[K]`` / ``[1, H, W]`` tensor, a
            list item, the constant) into JSON; default by kind and dtype (bool, int, float
            with ``"inf"`` / ``"nan"`` as strings, list).
        output: attribute name in ``SafeGenFilterOutput`` (``True``: its own name);
            ``False`` / ``None`` keeps it out.
        summary: ``"rate"`` (bool field: ``<name>_rate`` and ``num_<name>``),
            ``"distribution"`` (``<name>_mean`` / ``<name>_p95`` over finite values) or
            ``"counts"`` (list of name tuples: ``reason/<name>`` counts); ``None``: not
            summarised.
        fill: value of a ``scalar`` field left ``None`` (filled as a ``[B]`` tensor of
            ``dtype``); ``None``: the field stays ``None`` (optional maps).
        dtype: dtype of the filled tensor.
    """

    kind: Kind
    record: str | bool | None = True
    encode: Callable[[Any], Any] | None = None
    output: str | bool | None = True
    summary: str | None = None
    fill: float | int | bool | None = None
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {self.kind!r}")
        if self.summary not in _SUMMARIES:
            raise ValueError(f"`summary` must be one of {_SUMMARIES}, got {self.summary!r}")
        if self.fill is not None and self.kind != "scalar":
            raise ValueError(f"`fill` is for scalar fields, got it on a {self.kind!r} field")


def verdict_field(
    kind: Kind,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    record: str | bool = True,
    encode: Callable[[Any], Any] | None = None,
    output: str | bool = True,
    summary: str | None = None,
    fill: float | int | bool | None = None,
    dtype: torch.dtype | None = None,
) -> Any:
    """Declare a :class:`Verdict` field: a dataclass ``field`` carrying its :class:`FieldSpec`.

    Args:
        kind: see :class:`FieldSpec`.
        default: the dataclass default (a field with ``fill`` defaults to ``None``).
        default_factory: the dataclass default factory.
        record: ``True`` records it under its own name, a string under that key, ``False``
            keeps it out of records. A map needs an explicit key and an ``encode`` that
            reduces it (``mask`` -> ``mask_fraction``); ``maps`` lists the maps present.
        encode: JSON encoder of one image's value (see :class:`FieldSpec`).
        output: ``True`` exposes it in the filter output under its own name (per-image kinds
            only), a string under that name, ``False`` not at all.
        summary: see :class:`FieldSpec`.
        fill: see :class:`FieldSpec`.
        dtype: see :class:`FieldSpec`.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class MyVerdict(Verdict):
        ...     sharpness: torch.Tensor | None = verdict_field("scalar", fill=0.0)
    """
    spec = FieldSpec(kind, record, encode, output, summary, fill, dtype)
    if fill is not None and default is MISSING and default_factory is MISSING:
        default = None
    return field(default=default, default_factory=default_factory, metadata={_META_KEY: spec})


def field_spec(f: Field) -> FieldSpec:
    """The :class:`FieldSpec` of a :class:`Verdict` dataclass field, names resolved.

    ``record`` and ``output`` come back as a key or ``None``: a map is recorded only under an
    explicit key (with an ``encode`` that reduces it), constants never go into the filter
    output.

    Raises:
        TypeError: the field was not declared with :func:`verdict_field`.
    """
    spec = f.metadata.get(_META_KEY)
    if not isinstance(spec, FieldSpec):
        raise TypeError(
            f"Verdict field `{f.name}` must be declared with verdict_field(...), got a plain "
            "dataclass field"
        )
    record = False if spec.kind == "map" and spec.record is True else spec.record
    output = False if spec.kind == "constant" else spec.output
    return replace(
        spec,
        record=f.name if record is True else (record or None),
        output=f.name if output is True else (output or None),
    )


def verdict_schema(verdict: Verdict | type[Verdict]) -> tuple[tuple[str, FieldSpec], ...]:
    """``(name, spec)`` of every field of a verdict (or verdict class), in declaration order."""
    return _class_schema(verdict if isinstance(verdict, type) else type(verdict))


@functools.cache
def _class_schema(cls: type[Verdict]) -> tuple[tuple[str, FieldSpec], ...]:
    return tuple((f.name, field_spec(f)) for f in fields(cls))


@dataclass
class Verdict:
    """Safety verdicts for a batch of ``B`` images, with the evidence behind them.

    Attributes:
        score: ``[B]`` float, severity: ``-log10`` of the continuous tail of the fused
            statistic among real calibration images (about ``-log10(p_value)`` inside the
            calibration range, and still growing beyond it, so rejects are ranked; see
            :mod:`safegen_guard.calibration` step 3b); ``unsafe`` iff
            ``score > -log10(threshold)``. Higher = more anomalous; ``inf`` for non-finite
            images.
        p_value: ``[B]`` float in ``(0, 1]``, calibrated on real held-out images: the share of
            real calibration images whose fused statistic is at least as extreme.
        unsafe: ``[B]`` bool, ``p_value <= alpha`` where ``alpha`` gives the requested
            false-reject rate on real images; always ``True`` for non-finite images.
        anomaly_map: ``[B, 1, H, W]`` float in ``[0, 1]``, pixel anomaly evidence (0 = normal).
        mask: ``[B, 1, H, W]`` bool, pixels judged anomalous (``anomaly_map > 0.5``; the
            map is calibrated so that 0.5 is the pixel threshold ``tau``).
        reasons: ``B`` tuples of reason names (views that fired, ``"non_finite"``,
            ``"memorized"``); empty for safe images.
        view_scores: per view, ``[B]`` raw statistic of that view.
        view_p_values: per view, ``[B]`` calibrated p-value of that view.
        threshold: p-value threshold ``alpha`` used for ``unsafe``.
        guard_fingerprint: fingerprint of the guard that produced the verdict.
        gradcam: optional ``[B, 1, H, W]`` Grad-CAM map in ``[0, 1]``.
        shap: optional ``[B, 1, H, W]`` absolute SHAP map in ``[0, 1]``.
        heatmap: optional ``[B, 1, H, W]`` combined heatmap in ``[0, 1]``.
        heatmap_mask: optional ``[B, 1, H, W]`` bool, the explainer's mask of the combined
            heatmap (``heatmap > tau`` of the explainer); ``mask`` keeps its own meaning.
        memorized: ``[B]`` bool, the image copies a training image (see
            :mod:`safegen_guard.memorization`); all ``False`` when the guard has no index.
        copy_p_value: ``[B]`` float, share of real held-out images at least as close to the
            training set; ``NaN`` when not checked (no index, non-finite image).
        nearest_index: ``[B]`` long, the most similar training image; ``-1`` when not checked.

    Each field's :class:`FieldSpec` (see :func:`verdict_field`) decides its records, filter
    output name, summary and how it is selected, concatenated and gathered across ranks.
    """

    score: torch.Tensor = verdict_field("scalar", output="scores", summary="distribution")
    p_value: torch.Tensor = verdict_field("scalar", output="p_values")
    unsafe: torch.Tensor = verdict_field("scalar", summary="rate")
    anomaly_map: torch.Tensor = verdict_field("map", output="anomaly_maps")
    mask: torch.Tensor = verdict_field(
        "map", output="masks", record="mask_fraction", encode=lambda m: float(m.float().mean())
    )
    reasons: list[tuple[str, ...]] = verdict_field("list", encode=list, summary="counts")
    view_scores: dict[str, torch.Tensor] = verdict_field("dict", default_factory=dict)
    view_p_values: dict[str, torch.Tensor] = verdict_field("dict", default_factory=dict)
    threshold: float = verdict_field("constant", default=0.05, encode=float)
    guard_fingerprint: str = verdict_field("constant", default="", encode=str)
    gradcam: torch.Tensor | None = verdict_field("map", default=None, output="gradcams")
    shap: torch.Tensor | None = verdict_field("map", default=None, output="shaps")
    heatmap: torch.Tensor | None = verdict_field("map", default=None, output="heatmaps")
    heatmap_mask: torch.Tensor | None = verdict_field(
        "map",
        default=None,
        output="heatmap_masks",
        record="heatmap_mask_fraction",
        encode=lambda m: float(m.float().mean()),
    )
    memorized: torch.Tensor | None = verdict_field(
        "scalar", fill=False, dtype=torch.bool, summary="rate"
    )
    copy_p_value: torch.Tensor | None = verdict_field(
        "scalar", fill=float("nan"), dtype=torch.float64, encode=lambda t: _none_if(t, math.isnan)
    )
    nearest_index: torch.Tensor | None = verdict_field(
        "scalar", fill=-1, dtype=torch.long, encode=lambda t: _none_if(t, lambda v: v < 0)
    )

    def __post_init__(self) -> None:
        b = int(self.score.shape[0]) if self.score.ndim == 1 else -1
        for name, spec in verdict_schema(self):
            value = getattr(self, name)
            if value is None and spec.fill is not None:
                setattr(self, name, torch.full((max(b, 0),), spec.fill, dtype=spec.dtype))
            _validate(name, spec.kind, getattr(self, name), b)

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @property
    def safe(self) -> torch.Tensor:
        """``[B]`` bool, the complement of ``unsafe``."""
        return ~self.unsafe

    def select(self, index: torch.Tensor | Sequence[int] | slice) -> Verdict:
        """Return the verdicts of a subset of the batch (bool mask, indices or slice)."""
        if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
            index = index.nonzero().flatten()
        if isinstance(index, slice):  # tensors reject negative steps: go through indices
            index = list(range(len(self))[index])
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        positions = idx.tolist()
        kwargs = {}
        for name, spec in verdict_schema(self):
            v = getattr(self, name)
            if v is None or spec.kind == "constant":
                continue
            if spec.kind == "dict":
                kwargs[name] = {k: t[idx] for k, t in v.items()}
            elif spec.kind == "list":
                kwargs[name] = [v[i] for i in positions]
            else:
                kwargs[name] = v[idx]
        return replace(self, **kwargs)

    @staticmethod
    def cat(verdicts: Sequence[Verdict]) -> Verdict:
        """Concatenate verdicts of one guard along the batch dimension.

        Raises:
            ValueError: no verdicts, or an optional field present in some and not others.
        """
        if not verdicts:
            raise ValueError("`verdicts` must hold at least one Verdict, got an empty sequence")
        first = verdicts[0]
        kwargs = {}
        for name, spec in verdict_schema(first):
            values = [getattr(x, name) for x in verdicts]
            if spec.kind == "constant":
                continue
            if any(v is None for v in values):
                if not all(v is None for v in values):
                    raise ValueError(
                        f"cannot concatenate verdicts where `{name}` is present in some and "
                        f"None in others ({sum(v is None for v in values)} of {len(values)})"
                    )
                continue
            if spec.kind == "dict":
                kwargs[name] = {k: torch.cat([v[k] for v in values]) for k in values[0]}
            elif spec.kind == "list":
                kwargs[name] = [item for v in values for item in v]
            else:
                kwargs[name] = torch.cat(values)
        return replace(first, **kwargs)

    def to(self, device: torch.device | str) -> Verdict:
        """Move every tensor to ``device``."""
        kwargs = {}
        for name, spec in verdict_schema(self):
            v = getattr(self, name)
            if spec.kind == "dict":
                kwargs[name] = {k: t.to(device) for k, t in v.items()}
            elif isinstance(v, torch.Tensor):
                kwargs[name] = v.to(device)
        return replace(self, **kwargs)

    def to_records(self) -> list[dict]:
        """One JSON-serialisable dict per image (no pixel maps; ``maps`` names those present).

        The keys are ``index``, every field with a ``record`` key (in declaration order) and
        ``maps``.

        Example:
            >>> import torch
            >>> v = Verdict(score=torch.tensor([0.5]), p_value=torch.tensor([0.3]),
            ...             unsafe=torch.tensor([False]), anomaly_map=torch.zeros(1, 1, 4, 4),
            ...             mask=torch.zeros(1, 1, 4, 4, dtype=torch.bool), reasons=[()])
            >>> v.to_records()[0]["unsafe"]
            False
        """
        specs = verdict_schema(self)
        maps = [n for n, s in specs if s.kind == "map" and getattr(self, n) is not None]
        records: list[dict] = [{"index": i} for i in range(len(self))]
        for name, spec in specs:
            value = getattr(self, name)
            if spec.record is None or value is None:
                continue
            encode = spec.encode or _default_encoder(spec.kind)
            for i, rec in enumerate(records):
                if spec.kind == "dict":
                    rec[spec.record] = {k: encode(t[i]) for k, t in value.items()}
                elif spec.kind == "constant":
                    rec[spec.record] = encode(value)
                else:
                    rec[spec.record] = encode(value[i])
        for rec in records:
            rec["maps"] = list(maps)
        return records

    def outputs(self) -> dict[str, Any]:
        """The per-image fields under their filter-output names (``scores``, ``masks``, ...)."""
        return {s.output: getattr(self, n) for n, s in verdict_schema(self) if s.output is not None}


def _validate(name: str, kind: str, value: Any, b: int) -> None:
    """Raise ``ValueError`` when a field's value does not fit a batch of ``b`` images."""
    if value is None or kind == "constant":
        return
    if kind == "list":
        if len(value) != b:
            raise ValueError(f"`{name}` must have {b} entries, got {len(value)}")
    elif kind == "dict":
        for key, t in value.items():
            if t.shape != (b,):
                raise ValueError(f"`{name}[{key!r}]` must have shape ({b},), got {tuple(t.shape)}")
    elif kind == "scalar" and value.shape != (b,):
        raise ValueError(f"`{name}` must have shape ({b},), got {tuple(value.shape)}")
    elif kind == "vector" and (value.ndim != 2 or value.shape[0] != b):
        raise ValueError(f"`{name}` must have shape ({b}, K), got {tuple(value.shape)}")
    elif kind == "map" and (value.ndim != 4 or value.shape[0] != b or value.shape[1] != 1):
        raise ValueError(f"`{name}` must have shape ({b}, 1, H, W), got {tuple(value.shape)}")


def _default_encoder(kind: str) -> Callable[[Any], Any]:
    if kind == "list":
        return list
    if kind == "constant":
        return lambda v: v
    if kind == "vector":
        return lambda t: [_encode_number(x) for x in t]
    return _encode_number


def _encode_number(t: torch.Tensor) -> bool | int | float | str:
    """One tensor element as JSON: bool, int, finite float, or ``"inf"`` / ``"nan"``."""
    if t.dtype == torch.bool:
        return bool(t)
    if not t.is_floating_point():
        return int(t)
    v = float(t)
    return v if math.isfinite(v) else str(v)


def _none_if(t: torch.Tensor, missing: Callable[[float], bool]) -> float | int | None:
    v = t.item()
    return None if missing(v) else v

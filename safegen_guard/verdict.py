"""`Verdict`: the batched result of `Guard.evaluate`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch

__all__ = ["Verdict"]

_MAP_FIELDS = ("anomaly_map", "mask", "gradcam", "shap", "heatmap")
_COPY_DEFAULTS = (  # memorization fields and their "not checked" values
    ("memorized", False, torch.bool),
    ("copy_p_value", float("nan"), torch.float64),
    ("nearest_index", -1, torch.long),
)


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
        mask: ``[B, 1, H, W]`` bool, pixels judged anomalous (map above the calibrated ``tau``).
        reasons: ``B`` tuples of reason names (views that fired, ``"non_finite"``,
            ``"memorized"``); empty for safe images.
        view_scores: per view, ``[B]`` raw statistic of that view.
        view_p_values: per view, ``[B]`` calibrated p-value of that view.
        threshold: p-value threshold ``alpha`` used for ``unsafe``.
        guard_fingerprint: fingerprint of the guard that produced the verdict.
        gradcam: optional ``[B, 1, H, W]`` Grad-CAM map in ``[0, 1]``.
        shap: optional ``[B, 1, H, W]`` absolute SHAP map in ``[0, 1]``.
        heatmap: optional ``[B, 1, H, W]`` combined heatmap in ``[0, 1]``.
        memorized: ``[B]`` bool, the image copies a training image (see
            :mod:`safegen_guard.memorization`); all ``False`` when the guard has no index.
        copy_p_value: ``[B]`` float, share of real held-out images at least as close to the
            training set; ``NaN`` when not checked (no index, non-finite image).
        nearest_index: ``[B]`` long, the most similar training image; ``-1`` when not checked.
    """

    score: torch.Tensor
    p_value: torch.Tensor
    unsafe: torch.Tensor
    anomaly_map: torch.Tensor
    mask: torch.Tensor
    reasons: list[tuple[str, ...]]
    view_scores: dict[str, torch.Tensor] = field(default_factory=dict)
    view_p_values: dict[str, torch.Tensor] = field(default_factory=dict)
    threshold: float = 0.05
    guard_fingerprint: str = ""
    gradcam: torch.Tensor | None = None
    shap: torch.Tensor | None = None
    heatmap: torch.Tensor | None = None
    memorized: torch.Tensor | None = None
    copy_p_value: torch.Tensor | None = None
    nearest_index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b = int(self.score.shape[0]) if self.score.ndim == 1 else -1
        for name, fill, dtype in _COPY_DEFAULTS:
            if getattr(self, name) is None:
                setattr(self, name, torch.full((max(b, 0),), fill, dtype=dtype))
        for name in ("p_value", "unsafe", *(c[0] for c in _COPY_DEFAULTS)):
            t = getattr(self, name)
            if t.shape != (b,):
                raise ValueError(f"`{name}` must have shape ({b},), got {tuple(t.shape)}")
        for name in _MAP_FIELDS:
            t = getattr(self, name)
            if t is not None and (t.ndim != 4 or t.shape[0] != b or t.shape[1] != 1):
                raise ValueError(f"`{name}` must have shape ({b}, 1, H, W), got {tuple(t.shape)}")
        if len(self.reasons) != b:
            raise ValueError(f"`reasons` must have {b} entries, got {len(self.reasons)}")

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
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                kwargs[f.name] = v[idx]
            elif isinstance(v, dict):
                kwargs[f.name] = {k: t[idx] for k, t in v.items()}
        kwargs["reasons"] = [self.reasons[i] for i in positions]
        return replace(self, **kwargs)

    @staticmethod
    def cat(verdicts: Sequence[Verdict]) -> Verdict:
        """Concatenate verdicts of one guard along the batch dimension."""
        if not verdicts:
            raise ValueError("`verdicts` must hold at least one Verdict, got an empty sequence")
        first = verdicts[0]
        kwargs = {}
        for f in fields(first):
            v = getattr(first, f.name)
            if isinstance(v, torch.Tensor):
                kwargs[f.name] = torch.cat([getattr(x, f.name) for x in verdicts])
            elif isinstance(v, dict):
                kwargs[f.name] = {
                    k: torch.cat([getattr(x, f.name)[k] for x in verdicts]) for k in v
                }
            elif v is None and f.name in _MAP_FIELDS:
                kwargs[f.name] = None
        kwargs["reasons"] = [r for x in verdicts for r in x.reasons]
        return replace(first, **kwargs)

    def to(self, device: torch.device | str) -> Verdict:
        """Move every tensor to ``device``."""
        kwargs = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                kwargs[f.name] = v.to(device)
            elif isinstance(v, dict):
                kwargs[f.name] = {k: t.to(device) for k, t in v.items()}
        return replace(self, **kwargs)

    def to_records(self) -> list[dict]:
        """One JSON-serialisable dict per image (no pixel maps; ``maps`` names those present).

        Example:
            >>> import torch
            >>> v = Verdict(score=torch.tensor([0.5]), p_value=torch.tensor([0.3]),
            ...             unsafe=torch.tensor([False]), anomaly_map=torch.zeros(1, 1, 4, 4),
            ...             mask=torch.zeros(1, 1, 4, 4, dtype=torch.bool), reasons=[()])
            >>> v.to_records()[0]["unsafe"]
            False
        """
        records = []
        mask_frac = self.mask.flatten(1).float().mean(1)
        for i in range(len(self)):
            score = float(self.score[i])
            records.append(
                {
                    "index": i,
                    "unsafe": bool(self.unsafe[i]),
                    "score": score if score != float("inf") else "inf",
                    "p_value": float(self.p_value[i]),
                    "threshold": float(self.threshold),
                    "reasons": list(self.reasons[i]),
                    "mask_fraction": float(mask_frac[i]),
                    "view_scores": {k: _finite_or_str(v[i]) for k, v in self.view_scores.items()},
                    "view_p_values": {k: float(v[i]) for k, v in self.view_p_values.items()},
                    "guard_fingerprint": self.guard_fingerprint,
                    "memorized": bool(self.memorized[i]),
                    "copy_p_value": _float_or_none(self.copy_p_value[i]),
                    "nearest_index": _int_or_none(self.nearest_index[i]),
                    "maps": [n for n in _MAP_FIELDS if getattr(self, n) is not None],
                }
            )
        return records


def _finite_or_str(t: torch.Tensor) -> float | str:
    v = float(t)
    return v if v == v and abs(v) != float("inf") else str(v)


def _float_or_none(t: torch.Tensor) -> float | None:
    v = float(t)
    return None if v != v else v


def _int_or_none(t: torch.Tensor) -> int | None:
    v = int(t)
    return None if v < 0 else v

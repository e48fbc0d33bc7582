"""A verdict class with three fields added in one place (shared by tests and gather_script)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from guard_doubles import MeanRuleGuard

from safegen_guard.verdict import Verdict, verdict_field


@dataclass
class ExtVerdict(Verdict):
    """A verdict with three new fields, declared here and nowhere else."""

    sharpness: torch.Tensor | None = verdict_field(
        "scalar", fill=float("nan"), dtype=torch.float32, summary="distribution"
    )
    blurry: torch.Tensor | None = verdict_field(
        "scalar", fill=False, dtype=torch.bool, summary="rate"
    )
    edges: torch.Tensor | None = verdict_field("map", default=None)


def extend(v: Verdict, offset: float = 0.0) -> ExtVerdict:
    """``v`` as an :class:`ExtVerdict` with the new fields filled."""
    b, s = len(v), v.anomaly_map.shape[-1]
    base = {f.name: getattr(v, f.name) for f in fields(v)}
    return ExtVerdict(
        **base,
        sharpness=torch.arange(b, dtype=torch.float32) + offset,
        blurry=torch.arange(b) % 2 == 0,
        edges=torch.full((b, 1, s, s), 0.25) + offset,
    )


def make_verdict(b: int, offset: float = 0.0, maps: bool = True) -> ExtVerdict:
    """A deterministic extended verdict of ``b`` 8x8 images, explanation maps included."""
    x = torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(b))
    v = MeanRuleGuard().evaluate(x)
    v.view_scores = {"mean": x.mean((1, 2, 3)) + offset}
    v.view_p_values = {"mean": v.p_value.clone()}
    if maps:  # explanation maps travel too
        v.gradcam, v.heatmap = x * 0.5, x.flip(-1)
    return extend(v, offset)

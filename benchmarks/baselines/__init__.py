"""Baselines compared with SAFEGEN, all behind :class:`~benchmarks.baselines.base.Baseline`."""

from __future__ import annotations

from benchmarks.baselines.base import Baseline
from benchmarks.baselines.dae import DenoisingAE
from benchmarks.baselines.dia import DiaStyle
from benchmarks.baselines.phanes import PhanesStyle
from benchmarks.baselines.plain_ae import PlainAE

__all__ = ["BASELINES", "Baseline", "DenoisingAE", "DiaStyle", "PhanesStyle", "PlainAE"]

BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (PlainAE, DenoisingAE, PhanesStyle, DiaStyle)
}
"""Baseline classes by their ``results.json`` key, in report order."""

"""SAFEGEN: calibrated, interpretable safety checks for generated medical images.

Public API (imported lazily so ``import safegen_guard`` stays light):

- :class:`Guard`, :class:`GuardConfig`: fit on real scans, ``evaluate`` generated batches.
- :class:`Verdict`: batched scores, p-values, verdicts, maps and reasons.
- :class:`SafeGenCallback`: Lightning callback for generator training.
- :class:`SafeGenFilter`: post-sampling filter for diffusers pipelines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Guard": "safegen_guard.guard",
    "GuardConfig": "safegen_guard.config",
    "Verdict": "safegen_guard.verdict",
    "SafeGenCallback": "safegen_guard.integrations.lightning",
    "SafeGenFilter": "safegen_guard.integrations.diffusers",
    "SafeGenError": "safegen_guard.errors",
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:  # pragma: no cover  (static type checkers only)
    from safegen_guard.config import GuardConfig  # noqa: F401
    from safegen_guard.errors import SafeGenError  # noqa: F401
    from safegen_guard.guard import Guard  # noqa: F401
    from safegen_guard.integrations.diffusers import SafeGenFilter  # noqa: F401
    from safegen_guard.integrations.lightning import SafeGenCallback  # noqa: F401
    from safegen_guard.verdict import Verdict  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'safegen_guard' has no attribute {name!r}")

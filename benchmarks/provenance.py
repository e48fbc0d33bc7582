"""Versions, platform and time stamp recorded in every ``results.json``."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform

__all__ = ["provenance"]

_PACKAGES = (
    "safegen-guard",
    "torch",
    "lightning",
    "numpy",
    "scipy",
    "scikit-learn",
    "diffusers",
    "matplotlib",
)


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def provenance() -> dict:
    """``created`` (UTC ISO time), ``versions`` (python + packages) and ``platform``."""
    import torch

    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in _PACKAGES}},
        "platform": {
            "machine": platform.machine(),
            "system": platform.system(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
    }

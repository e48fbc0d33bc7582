"""Controlled artifact injection with ground-truth masks.

Used to build the anomalous test cases of the benchmark: the detector is trained on real
images only, and these artifacts are what it must find.

Example:
    >>> import torch
    >>> from safegen_guard.artifacts import inject, list_artifacts
    >>> x = torch.zeros(1, 1, 32, 32)
    >>> x[..., 6:26, 6:26] = 0.6
    >>> corrupted, mask = inject(x, "blur_local", "mild", torch.Generator().manual_seed(1))
    >>> corrupted.shape == x.shape and mask.dtype == torch.bool
    True
"""

from __future__ import annotations

# importing the kind modules registers them
from safegen_guard.artifacts import blur, ct, mri, noise, structural  # noqa: F401
from safegen_guard.artifacts.masks import change_mask, estimate_foreground
from safegen_guard.artifacts.registry import (
    ARTIFACTS,
    SEVERITY_PRESETS,
    ArtifactKind,
    inject,
    list_artifacts,
    register_artifact,
    resolve_severity,
)

__all__ = [
    "ARTIFACTS",
    "SEVERITY_PRESETS",
    "ArtifactKind",
    "change_mask",
    "estimate_foreground",
    "inject",
    "list_artifacts",
    "register_artifact",
    "resolve_severity",
]

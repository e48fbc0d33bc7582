"""Safe persistence of a guard: safetensors weights + JSON metadata, no pickle.

Layout of a guard folder::

    guard.json          format version, GuardConfig, view names, fingerprints, sha256 of weights
    guard.safetensors   every tensor (autoencoder weights, view references, calibration)

Loading checks the major format version and the SHA-256 of the weights file; a mismatch is
a :class:`~safegen_guard.errors.CheckpointError` (tampered or corrupted file).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from safegen_guard.errors import CheckpointError
from safegen_guard.io import atomic_write_bytes, atomic_write_json

__all__ = ["FORMAT_VERSION", "write_checkpoint", "read_checkpoint"]

FORMAT_VERSION = "3.0"  # 3: learned views, tail-significance calibration
"""Major version bumps when saved tensors change meaning. 2.0: the texture view gained
fitted references (position and brightness); 1.x guards must be re-fitted."""
META_NAME = "guard.json"
WEIGHTS_NAME = "guard.safetensors"


def write_checkpoint(
    directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> str:
    """Write ``tensors`` and ``meta`` atomically; return the weights' SHA-256 (hex)."""
    directory = Path(directory)
    blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(directory / WEIGHTS_NAME, blob)
    atomic_write_json(
        directory / META_NAME,
        {**meta, "format_version": FORMAT_VERSION, "weights_sha256": digest},
    )
    return digest


def read_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a guard folder written by :func:`write_checkpoint`.

    Raises:
        CheckpointError: missing files, unreadable JSON, other major format version, or
            weights whose SHA-256 differs from the recorded one.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / META_NAME, directory / WEIGHTS_NAME
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"not a SAFEGEN guard folder: {p} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path} is not valid JSON: {err}") from err
    version = str(meta.get("format_version", "?"))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise CheckpointError(
            f"guard format version {version} is not supported by this SAFEGEN "
            f"(expected major version {FORMAT_VERSION.split('.')[0]}); re-fit or upgrade"
        )
    blob = weights_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise CheckpointError(
            f"{weights_path} was modified after saving (sha256 {digest[:12]}... does not match "
            f"the recorded {str(meta.get('weights_sha256'))[:12]}...); refusing to load"
        )
    try:
        tensors = load_safetensors(blob)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {err}") from err
    return tensors, meta

"""Safe persistence of a guard: safetensors weights + JSON metadata, no pickle.

Layout of a guard folder::

    guard.json                    format version, GuardConfig, view names, explainer spec,
                                  fingerprints, the weights' file name and SHA-256, and the
                                  SHA-256 of all of that (``meta_sha256``)
    guard-<sha256[:16]>.safetensors   every tensor (autoencoder weights, view references,
                                  calibration), named by its own hash

Saving writes the new weights file under its own name first and ``guard.json`` (the commit
point) second, both durably, and only then deletes the weights the old ``guard.json`` named:
a save interrupted at any moment leaves the old guard or the new one, never neither.

Loading accepts exactly the pair ``guard.json`` names and refuses (``CheckpointError``) any
change: JSON bytes not in the form SAFEGEN writes, a ``meta_sha256`` that does not match the
JSON's content, a missing key, weights whose SHA-256 differs, another major format version.
These hashes catch edits and corruption, not a forger who recomputes them (that needs a
signature, which SAFEGEN does not add).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from safegen_guard.errors import CheckpointError
from safegen_guard.io import atomic_write_bytes, json_bytes, remove_stale_temp_files

__all__ = ["FORMAT_VERSION", "write_checkpoint", "read_checkpoint", "meta_digest"]

FORMAT_VERSION = "4.3"
"""Major version bumps when saved tensors or the folder layout change meaning; minor when
tensors are added that older guards load without (4.3: which views' maps enter the mask and
the combined map's averaging radius, absent = every map, none; 4.2: the preparation groups a
guard decides with, absent = all; 4.1: the calibrator's preparation groups, absent = one
group). 4.0: weights named by their hash, ``meta_sha256`` over the whole JSON; 3.0: learned views,
tail-significance calibration. Older guards must be re-fitted."""
META_NAME = "guard.json"
_WEIGHTS_RE = re.compile(r"^guard-[0-9a-f]{16}\.safetensors$")
_OLD_WEIGHTS = "guard.safetensors"
REQUIRED_KEYS = ("format_version", "weights_file", "weights_sha256", "meta_sha256")


def meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``meta`` without its ``meta_sha256`` key, in canonical JSON form."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json_bytes(body)).hexdigest()


def write_checkpoint(
    directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> str:
    """Write ``tensors`` and ``meta`` so that an interruption leaves the old or the new pair.

    Returns:
        The weights' SHA-256 (hex).
    """
    directory = Path(directory)
    blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(blob).hexdigest()
    weights = f"guard-{digest[:16]}.safetensors"
    full = {**meta, "format_version": FORMAT_VERSION, "weights_file": weights}
    full["weights_sha256"] = digest
    full["meta_sha256"] = meta_digest(full)
    atomic_write_bytes(directory / weights, blob)
    atomic_write_bytes(directory / META_NAME, json_bytes(full))  # the commit point
    for old in directory.iterdir():  # weights no guard.json names any more
        if old.name != weights and (_WEIGHTS_RE.match(old.name) or old.name == _OLD_WEIGHTS):
            old.unlink(missing_ok=True)
    remove_stale_temp_files(directory)
    return digest


def read_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a guard folder written by :func:`write_checkpoint`.

    Raises:
        CheckpointError: missing files, JSON that is not an object or not byte-identical to
            what SAFEGEN writes, a missing key, another major format version, a JSON or
            weights hash that does not match.
    """
    directory = Path(directory)
    meta_path = directory / META_NAME
    if not meta_path.is_file():
        raise CheckpointError(f"not a SAFEGEN guard folder: {meta_path} is missing")
    meta = _read_meta(meta_path)
    weights_path = directory / str(meta["weights_file"])
    if not weights_path.is_file():
        raise CheckpointError(f"not a SAFEGEN guard folder: {weights_path} is missing")
    blob = weights_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta["weights_sha256"]:
        raise CheckpointError(
            f"{weights_path} was modified after saving (sha256 {digest[:12]}... does not match "
            f"the recorded {str(meta['weights_sha256'])[:12]}...); refusing to load"
        )
    try:
        tensors = load_safetensors(blob)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {err}") from err
    return tensors, meta


def _read_meta(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    version = str(meta.get("format_version", "?"))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise CheckpointError(
            f"guard format version {version} is not supported by this SAFEGEN "
            f"(expected major version {FORMAT_VERSION.split('.')[0]}); re-fit or upgrade"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; refusing to load an unverifiable guard")
    if meta_digest(meta) != meta["meta_sha256"] or json_bytes(meta) != raw:
        raise CheckpointError(
            f"{path} was modified after saving (its content does not match the recorded "
            "meta_sha256 or is not byte-identical to what SAFEGEN wrote); refusing to load"
        )
    if not _WEIGHTS_RE.match(str(meta["weights_file"])):
        raise CheckpointError(f"{path}: weights_file {meta['weights_file']!r} is not a guard file")
    return meta

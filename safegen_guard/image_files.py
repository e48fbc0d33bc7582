"""The image files `safegen score` judges: find them (files, folders, globs) and read them."""

from __future__ import annotations

import glob
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "SUFFIXES", "expand_inputs", "read_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".pt")
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[dict]]:
    """Files to score, and the inputs that gave none (``{"path", "error"}`` each).

    A glob pattern that matches nothing, a path that does not exist and a dangling symbolic
    link (given, or found in a folder) are reported, never read as a literal file name.
    """
    paths: list[Path] = []
    skipped: list[dict] = []
    for item in inputs:
        matches = sorted(glob.glob(item))
        if not matches:
            if glob.has_magic(item):
                reason = "the glob pattern matched no files"
            elif os.path.islink(item):
                reason = f"dangling symbolic link (to {os.readlink(item)!r})"
            else:
                reason = "no such file or folder"
            skipped.append({"path": item, "error": reason})
        for m in map(Path, matches):
            found = (
                sorted(q for q in m.rglob("*") if q.suffix.lower() in SUFFIXES)
                if m.is_dir()
                else [m]
            )
            for q in found:
                if q.is_symlink() and not q.exists():
                    skipped.append(
                        {"path": str(q), "error": f"dangling symbolic link (to {os.readlink(q)!r})"}
                    )
                elif q.is_dir():
                    continue
                else:
                    paths.append(q)
    return paths, skipped


def read_images(path: Path) -> torch.Tensor:
    """Read one file as ``[N, 1, H, W]`` float32 in ``[0, 1]``.

    PNG/JPG (8- or 16-bit grey or colour, converted to grey), ``.npy`` arrays and ``.pt``
    tensors (loaded with ``weights_only=True``) of shape ``[H,W]``, ``[1,H,W]`` or
    ``[N,1,H,W]`` already in ``[0, 1]``.

    Raises:
        ValueError: unreadable file or unsupported shape/suffix.
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("I;16") if im.mode.startswith("I;16") else im.convert("L"))
        scale = 65535.0 if arr.dtype == np.uint16 else 255.0
        t = torch.from_numpy(arr.astype(np.float32) / scale)
    elif suffix == ".npy":
        t = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    elif suffix == ".pt":
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise ValueError(
                f"{path} is not a plain tensor file: torch refused it with weights_only=True "
                f"({type(err).__name__}; it holds pickled Python objects or is damaged); not "
                "loaded, since loading it otherwise could run code"
            ) from err
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"expected a tensor in {path}, got {type(t).__name__}")
        t = t.float()
    else:
        raise ValueError(
            f"unsupported file type {suffix!r} ({path}); expected "
            f"{', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)}"
        )
    while t.ndim < 4:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"expected [H,W], [1,H,W] or [N,1,H,W] in {path}, got {tuple(t.shape)}")
    return t

"""User scans as 2-D slices: NIfTI, DICOM series and PNG/JPG, read through MONAI ``LoadImage``.

What counts as one *item* (one scan):

* a ``.nii`` / ``.nii.gz`` file (``NibabelReader``);
* a DICOM series: all ``.dcm`` files, or extension-less files with the ``DICM`` preamble, of
  one folder (``PydicomReader`` on the folder; a single DICOM file on its own works too);
* a ``.png`` / ``.jpg`` / ``.jpeg`` image (``PILReader``; colour is averaged to grey).

Volumes are oriented to RAS (``Orientation``), so axial is the last axis, and resampled
(``Spacing``) to square in-plane pixels at the finest in-plane spacing. The through-plane
spacing is kept on purpose: only axial slices are used, and isotropic resampling of a 5 mm
series would multiply its memory for nothing. Intensities are clipped to the [0.5, 99.5]
percentiles of the *foreground* (Otsu threshold) and scaled to [0, 1]; whole-frame
percentiles (``ScaleIntensityRangePercentiles``) would be dominated by air. Slices are kept,
padded and resized with the same rules as MNI152 (:mod:`safegen_guard.data.foreground`).

Every call reads all items (so unreadable files are reported whatever the split); splits are
then made among the readable ones. With >= 3 readable items, by item: items are ordered by a
CRC32 hash of their path relative to the search root and cut 70/10/20 (at least one item in
val and test). With fewer, each volume is split by interleaved slice blocks as MNI152.
Unreadable files are skipped with a warning and listed in ``info["skipped"]``.

``acquisition="default"`` means *no* simulated variation here, since real data already
carries real noise; pass an ``AcquisitionConfig`` to add some anyway.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from skimage.filters import threshold_otsu

from safegen_guard.data.acquisition import (
    AcquisitionConfig,
    realise_variants,
    resolve_acquisition,
)
from safegen_guard.data.dataset import SliceDataset
from safegen_guard.data.foreground import (
    axial_to_display,
    foreground_mask,
    interleaved_split,
    kept_slices,
    pad_to_square,
    resize_images,
    resize_masks,
)
from safegen_guard.data.mni152 import check_common_args, make_generator
from safegen_guard.errors import DataLoadError

__all__ = ["load_folder", "find_items"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_READERS = {"nifti": "NibabelReader", "dicom": "PydicomReader", "image": "PILReader"}


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(_IMAGE_SUFFIXES):
        return "image"
    if name.endswith(".dcm"):
        return "dicom"
    if path.suffix == "" and path.is_file():
        with open(path, "rb") as handle:
            return "dicom" if handle.read(132)[128:132] == b"DICM" else None
    return None


def find_items(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """Scan items under ``paths``: ``(kind, path)`` with kind in nifti/dicom/image.

    DICOM files of one folder form one item whose path is the folder.

    Raises:
        DataLoadError: a path does not exist.
    """
    items: set[tuple[str, Path]] = set()
    for root in paths:
        if not root.exists():
            raise DataLoadError(f"path does not exist: {str(root)!r}")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for link in [] if root.is_file() else root.rglob("*"):
            if link.is_symlink() and not link.exists():
                warnings.warn(f"skipping dangling symbolic link {str(link)!r}", stacklevel=3)
        for f in files:
            if f.name.startswith("."):
                continue
            kind = _kind(f)
            if kind == "dicom" and root.is_dir():
                items.add(("dicom", f.parent))
            elif kind is not None:
                items.add((kind, f))
    return sorted(items, key=lambda item: str(item[1]))


def _read(kind: str, path: Path) -> np.ndarray:
    """Load one item as a ``[X, Y, Z]`` float32 array (RAS for volumes, ``[H, W, 1]`` images)."""
    from monai.transforms import LoadImage, Orientation, Spacing  # lazy: slow import

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
        image = LoadImage(image_only=True, reader=_READERS[kind], ensure_channel_first=True)(
            str(path)
        )
    if kind == "image":  # PILReader gives [C, W, H]
        grey = torch.as_tensor(image).float().mean(0).numpy()  # [W, H]
        return np.ascontiguousarray(grey[:, ::-1, None])  # axial_to_display gives back [H, W]
    if kind != "image" and image.ndim == 4 and image.shape[0] > 1:
        raise ValueError(
            f"a 4-D volume ({image.shape[0]} volumes of {tuple(image.shape[1:])}); SAFEGEN reads "
            "3-D volumes: split it (e.g. `fslsplit`) and pass the volume to use"
        )
    if image.ndim == 3:
        image = image[..., None]
    image = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(image)
    spacing = [float(s) for s in image.pixdim[:3]]
    in_plane = min(spacing[0], spacing[1])
    if abs(spacing[0] - spacing[1]) > 1e-3:
        image = Spacing(pixdim=(in_plane, in_plane, spacing[2]), mode="bilinear")(image)
    return np.asarray(torch.as_tensor(image)[0], dtype=np.float32)


def _normalise(volume: np.ndarray) -> np.ndarray:
    """Clip to the [0.5, 99.5] foreground percentiles and scale to [0, 1]."""
    finite = volume[np.isfinite(volume)]
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        raise ValueError("image is constant or has no finite values")
    foreground = finite[finite > threshold_otsu(finite)]
    lo, hi = np.percentile(foreground if foreground.size > 10 else finite, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    out = np.clip((np.nan_to_num(volume, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return out.astype(np.float32)


def _slices(kind: str, volume: np.ndarray, size: int) -> dict | None:
    """All kept slices of one normalised volume, padded and resized (``None`` if none kept)."""
    mask = foreground_mask(volume, threshold=0.1)
    kept = np.arange(volume.shape[2]) if kind == "image" else kept_slices(mask)
    if len(kept) == 0:
        return None
    images = torch.stack([axial_to_display(volume[..., z]) for z in kept])[:, None]
    masks = torch.stack([axial_to_display(mask[..., z]) for z in kept])[:, None]
    span = max(int(kept[-1] - kept[0]), 1)
    positions = (kept - kept[0]) / span if kind != "image" else np.full(len(kept), np.nan)
    return {
        "images": resize_images(pad_to_square(images), size).clamp(0.0, 1.0),
        "masks": resize_masks(pad_to_square(masks.float()) > 0.5, size),
        "positions": torch.tensor(positions, dtype=torch.float32),
        "indices": kept,
    }


def _assign_items(paths: list[str], root: Path | None) -> dict[str, str]:
    """Split of every item path (>= 3 items): CRC32 order of the relative path, 70/10/20."""

    def key(path: str) -> int:
        p = Path(path)
        rel = p.relative_to(root) if root is not None and p.is_relative_to(root) else p
        return zlib.crc32(rel.as_posix().encode())

    ordered = sorted(paths, key=key)
    n = len(ordered)
    n_val, n_test = max(1, round(0.1 * n)), max(1, round(0.2 * n))
    labels = ["val"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
    return dict(zip(ordered, labels))


def _read_all(items: list, size: int) -> tuple[list[dict], list[dict]]:
    """Read every item; unreadable ones are skipped with a warning and reported."""
    parts, skipped = [], []
    for kind, path in items:
        try:
            part = _slices(kind, _normalise(_read(kind, path)), size)
        except Exception as error:  # any reader failure means: skip this file
            first_line = str(error).splitlines()[0] if str(error) else ""
            reason = f"{type(error).__name__}: {first_line}"
            warnings.warn(f"skipping unreadable file {str(path)!r}: {reason}", stacklevel=4)
            skipped.append({"path": str(path), "reason": reason})
            continue
        if part is not None:
            parts.append({**part, "path": str(path), "kind": kind})
    return parts, skipped


def _select(parts: list[dict], split: str, root: Path | None) -> list[dict]:
    """Keep the parts (by item) or the slices (by interleaved blocks) of ``split``."""
    if len(parts) >= 3:
        labels = _assign_items([p["path"] for p in parts], root)
        return [p for p in parts if labels[p["path"]] == split]
    selected = []
    for p in parts:
        keep = np.isin(p["indices"], interleaved_split(p["indices"], split))
        if keep.any():
            rows = torch.from_numpy(keep)
            chosen = {k: p[k][rows] for k in ("images", "masks", "positions")}
            selected.append({**p, **chosen, "indices": p["indices"][keep]})
    return selected


def load_folder(
    source: str | Path | Sequence[str | Path],
    split: str = "train",
    size: int = 64,
    *,
    variants: int = 1,
    acquisition: object = "default",
    augment: bool = False,
    seed: int = 0,
) -> SliceDataset:
    """Load one split of the user's NIfTI / DICOM / PNG data (rules in the module docstring).

    Args:
        source: A folder (searched recursively), a file, or a list of them.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: Output side ``H = W`` in pixels (>= 16).
        variants: Draws per slice (only differ with acquisition variation or augmentation).
        acquisition: ``"default"``/``None``/``"none"`` -> none; or an ``AcquisitionConfig``.
        augment: Light geometric + intensity augmentation.
        seed: Seed of the local generator.

    Returns:
        ``SliceDataset``: images ``[N, 1, size, size]`` float32 in ``[0, 1]``, foreground
        masks, positions (NaN for 2-D images); ``info["skipped"]`` lists unreadable files.

    Raises:
        DataLoadError: a path does not exist, nothing readable was found, or the split is empty.
    """
    check_common_args(split, size, variants, seed)
    config = None if acquisition == "default" else resolve_acquisition(acquisition)
    roots, items = _roots_and_items(source)
    root = roots[0] if len(roots) == 1 and roots[0].is_dir() else None
    readable, skipped = _read_all(items, size)
    parts = _select(readable, split, root)
    if not parts:
        raise DataLoadError(
            f"no usable slices for split {split!r} from {len(items)} item(s) under "
            f"{[str(r) for r in roots]} ({len(readable)} readable, {len(skipped)} unreadable "
            f"file(s) skipped)"
        )
    images, masks = realise_variants(
        torch.cat([p["images"] for p in parts]),
        torch.cat([p["masks"] for p in parts]),
        variants=variants,
        config=config,
        augment=bool(augment),
        generator=make_generator(str(roots[0]), split, seed),
    )
    positions = torch.cat([p["positions"] for p in parts]).repeat_interleave(variants)
    info = _info(parts, skipped, len(readable) >= 3, config)
    info.update(variants=variants, augment=bool(augment), seed=seed)
    name = str(roots[0]) if len(roots) == 1 else f"{roots[0]} (+{len(roots) - 1})"
    return SliceDataset(images, masks, positions, name=name, split=split, info=info)


def _roots_and_items(source: object) -> tuple[list[Path], list[tuple[str, Path]]]:
    """Paths named by ``source`` and the items found under them; raises if there are none."""
    roots = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    roots = [r.expanduser() for r in roots]
    if not roots:
        raise DataLoadError("expected at least one path, got an empty list")
    items = find_items(roots)
    if not items:
        raise DataLoadError(
            f"no NIfTI (.nii, .nii.gz), DICOM or PNG/JPG files found under "
            f"{[str(r) for r in roots]}"
        )
    return roots, items


def _info(parts: list, skipped: list, by_item: bool, config: AcquisitionConfig | None) -> dict:
    return {
        "sources": [
            {"path": p["path"], "kind": p["kind"], "slices": [int(i) for i in p["indices"]]}
            for p in parts
        ],
        "skipped": skipped,
        "split_by": "item" if by_item else "slice_blocks",
        "acquisition": None if config is None else asdict(config),
    }

"""Heatmap overlays and titled grids of verdicts, as ``uint8`` RGB arrays and PNG files."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from safegen_guard.io import atomic_write_bytes
from safegen_guard.validation import check_positive_int, check_probability

if TYPE_CHECKING:
    from safegen_guard.verdict import Verdict

__all__ = [
    "evidence_mask",
    "overlay",
    "overlay_grid",
    "save_png",
    "verdict_panel",
    "verdict_titles",
    "to_uint8",
]

_CONTOUR_RGB = np.array([0, 255, 0], dtype=np.uint8)
_TITLE_HEIGHT = 12
_CHAR_WIDTH = 6  # PIL's default bitmap font
_PAD = 2


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Convert an image in ``[0, 1]`` to ``uint8`` (NaN -> 0, +Inf -> 255, values clipped).

    Args:
        image: ``[H, W]`` or ``[1, H, W]`` float image, intensities in ``[0, 1]``.

    Returns:
        ``[H, W]`` ``np.uint8`` array.
    """
    arr = _as_2d(image)
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def overlay(
    image: torch.Tensor | np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    alpha: float = 0.5,
    *,
    scale: int = 1,
    cmap: str = "inferno",
) -> np.ndarray:
    """Blend a heatmap over a grayscale image and draw the mask boundary.

    Args:
        image: ``[1, H, W]`` or ``[H, W]`` float image in ``[0, 1]`` (non-finite shown black).
        heatmap: same spatial shape, float in ``[0, 1]`` (0 = normal).
        mask: optional same-shape bool mask; its boundary (mask XOR eroded mask) is drawn in
            bright green.
        alpha: heatmap opacity in ``[0, 1]``.
        scale: integer nearest-neighbour upscaling so 32/64 px images stay visible.
        cmap: a matplotlib colormap name.

    Returns:
        ``[H * scale, W * scale, 3]`` ``np.uint8`` RGB array.

    Raises:
        ValueError: shapes differ, ``alpha`` is outside ``[0, 1]`` or ``scale < 1``.

    Example:
        >>> overlay(torch.rand(1, 8, 8), torch.rand(8, 8), alpha=0.3, scale=2).shape
        (16, 16, 3)
    """
    import matplotlib

    alpha = check_probability(alpha, "alpha", open_interval=False)
    check_positive_int(scale, "scale")
    gray = to_uint8(image).astype(np.float32) / 255.0
    heat = np.nan_to_num(_as_2d(heatmap), nan=1.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    if heat.shape != gray.shape:
        raise ValueError(f"`heatmap` must be {gray.shape}, got {heat.shape}")
    colour = matplotlib.colormaps[cmap](heat)[..., :3].astype(np.float32)
    rgb = (1.0 - alpha) * gray[..., None] + alpha * colour
    out = np.round(rgb * 255.0).astype(np.uint8)
    out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    if mask is not None:
        m = _as_2d(mask).astype(bool)
        if m.shape != gray.shape:
            raise ValueError(f"`mask` must be {gray.shape}, got {m.shape}")
        m = m.repeat(scale, axis=0).repeat(scale, axis=1)
        out[mask_boundary(m)] = _CONTOUR_RGB
    return out


def evidence_mask(verdict: Verdict) -> torch.Tensor:
    """``[B, 1, H, W]`` bool mask drawn on a verdict's shown map.

    The combined heatmap is shown with its own mask (``heatmap_mask``) when the explainer gave
    both; otherwise the anomaly map is shown with ``mask`` (``anomaly_map > 0.5``).
    """
    if verdict.heatmap is not None and getattr(verdict, "heatmap_mask", None) is not None:
        return verdict.heatmap_mask
    return verdict.mask


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Return the inner boundary of a bool mask ``[H, W]``: ``mask & ~erode(mask)`` (4-neighbour).

    Example:
        >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
        >>> int(mask_boundary(m).sum())
        8
    """
    p = np.pad(mask, 1, constant_values=False)
    eroded = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~eroded


def verdict_titles(verdict: Verdict) -> list[str]:
    """One short title per image: ``"p=0.003 unsafe (noise)"`` or ``"p=0.412 safe"``."""
    titles = []
    for i in range(len(verdict)):
        label = "unsafe" if bool(verdict.unsafe[i]) else "safe"
        reasons = ",".join(verdict.reasons[i])
        suffix = f" ({reasons})" if reasons else ""
        titles.append(f"p={float(verdict.p_value[i]):.3g} {label}{suffix}")
    return titles


def overlay_grid(
    images: torch.Tensor,
    verdict: Verdict | None = None,
    *,
    heatmaps: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    ncol: int = 4,
    titles: Sequence[str] | None = None,
    scale: int = 2,
    alpha: float = 0.5,
) -> np.ndarray:
    """Tile overlays of a batch into one RGB image, with a title above each tile.

    Args:
        images: ``[B, 1, H, W]`` float images in ``[0, 1]``.
        verdict: a :class:`~safegen_guard.verdict.Verdict` for the batch; supplies heatmaps
            (``heatmap`` if present, else ``anomaly_map``), masks and default titles.
        heatmaps: ``[B, 1, H, W]`` in ``[0, 1]``, used when ``verdict`` is ``None``.
        masks: optional ``[B, 1, H, W]`` bool, used when ``verdict`` is ``None``.
        ncol: tiles per row.
        titles: ``B`` strings (default: :func:`verdict_titles`, or none).
        scale: integer upscaling of every tile.
        alpha: heatmap opacity.

    Returns:
        ``[rows * (H*scale + title + pad), ncol * (W*scale + pad), 3]`` ``np.uint8`` array.

    Raises:
        ValueError: neither ``verdict`` nor ``heatmaps`` is given, or lengths differ.
    """
    check_positive_int(ncol, "ncol")
    if verdict is not None:
        heatmaps = verdict.heatmap if verdict.heatmap is not None else verdict.anomaly_map
        masks = evidence_mask(verdict)
        titles = verdict_titles(verdict) if titles is None else titles
    if heatmaps is None:
        raise ValueError("`overlay_grid` needs a `verdict` or `heatmaps`, got neither")
    b = int(images.shape[0])
    if heatmaps.shape[0] != b or (titles is not None and len(titles) != b):
        raise ValueError(f"`heatmaps` and `titles` must have {b} entries like `images`")
    tiles = [
        overlay(images[i], heatmaps[i], None if masks is None else masks[i], alpha, scale=scale)
        for i in range(b)
    ]
    if titles is not None:
        width = max(tiles[0].shape[1] // _CHAR_WIDTH, 1)
        n_lines = max(len(_wrap(s, width)) for s in titles)
        tiles = [_add_title(t, s, n_lines) for t, s in zip(tiles, titles)]
    return _tile(tiles, ncol)


def verdict_panel(
    image: torch.Tensor,
    maps: dict[str, torch.Tensor],
    mask: torch.Tensor | None,
    title: str,
    *,
    min_size: int = 128,
    alpha: float = 0.5,
) -> np.ndarray:
    """One image's evidence side by side: the original, each map as an overlay, the mask.

    Tiles are upscaled (nearest neighbour) to at least ``min_size`` pixels, labelled, and a
    colour bar (0 = normal, 1 = most anomalous) is drawn below them.

    Args:
        image: ``[1, H, W]`` float image in ``[0, 1]``.
        maps: label -> ``[1, H, W]`` map in ``[0, 1]`` (e.g. ``{"heatmap": ..., "SHAP": ...}``);
            the mask contour is drawn on the first one.
        mask: optional ``[1, H, W]`` bool mask, also shown on its own.
        title: text above the panel (e.g. from :func:`verdict_titles`).
        min_size: smallest tile side in pixels.
        alpha: map opacity.

    Returns:
        ``[H', W', 3]`` ``np.uint8`` RGB array.

    Example:
        >>> m = {"heatmap": torch.rand(1, 32, 32)}
        >>> verdict_panel(torch.rand(1, 32, 32), m, None, "p=0.01 unsafe").shape[1]
        260
    """
    check_positive_int(min_size, "min_size")
    scale = max(1, -(-min_size // int(image.shape[-1])))
    gray = np.repeat(to_uint8(image).repeat(scale, 0).repeat(scale, 1)[..., None], 3, axis=2)
    tiles = [_add_title(gray, "image")]
    for k, (name, heat) in enumerate(maps.items()):
        m = mask if k == 0 else None
        tiles.append(_add_title(overlay(image, heat, m, alpha, scale=scale), name))
    if mask is not None:
        binary = to_uint8(_as_2d(mask).astype(np.float32)).repeat(scale, 0).repeat(scale, 1)
        tiles.append(_add_title(np.repeat(binary[..., None], 3, axis=2), "mask"))
    row = _tile(tiles, len(tiles))
    bar = _colour_bar(row.shape[1])
    return _add_title(np.concatenate([row, bar]), title, n_lines=2)


def _colour_bar(width: int, cmap: str = "inferno") -> np.ndarray:
    """``[24, width, 3]`` legend: the colour map from 0 (normal) to 1 (most anomalous)."""
    import matplotlib
    from PIL import Image, ImageDraw

    ramp = matplotlib.colormaps[cmap](np.linspace(0, 1, max(width - 4, 1)))[:, :3]
    bar = np.zeros((24, width, 3), np.uint8)
    bar[2:10, 2 : 2 + len(ramp)] = np.round(ramp * 255).astype(np.uint8)[None]
    canvas = Image.fromarray(bar)
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 11), "0 normal", fill=(220, 220, 220))
    draw.text((max(width - 6 * 16 - 4, 60), 11), "1 most anomalous", fill=(220, 220, 220))
    return np.asarray(canvas)


def save_png(array: np.ndarray, path: str | os.PathLike, *, exclusive: bool = False) -> Path:
    """Write a ``[H, W]`` or ``[H, W, 3]`` ``uint8`` array as a PNG, atomically.

    ``exclusive=True`` refuses to replace an existing file (``FileExistsError``).

    Raises:
        ValueError: the array is not ``uint8`` of rank 2 or 3.
    """
    from PIL import Image

    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(
            f"`array` must be uint8 [H, W] or [H, W, 3], got {array.dtype} {array.shape}"
        )
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue(), exclusive=exclusive)


def _as_2d(x: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected an image [1, H, W] or [H, W], got shape {arr.shape}")
    return arr


def _add_title(tile: np.ndarray, text: str, n_lines: int = 1) -> np.ndarray:
    """Put ``text`` above ``tile`` on ``n_lines`` lines wrapped to the tile's width."""
    from PIL import Image, ImageDraw

    lines = _wrap(text, max(tile.shape[1] // _CHAR_WIDTH, 1), max_lines=max(n_lines, 1))
    top = _TITLE_HEIGHT * max(n_lines, 1)
    canvas = Image.new("RGB", (tile.shape[1], tile.shape[0] + top))
    canvas.paste(Image.fromarray(tile), (0, top))
    colour = (255, 96, 96) if "unsafe" in text else (220, 220, 220)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((1, k * _TITLE_HEIGHT), line, fill=colour)
    return np.asarray(canvas)


def _wrap(text: str, width: int, max_lines: int = 3) -> list[str]:
    """Wrap at commas/spaces to ``width`` characters; the last line ends in ``..`` if cut."""
    import textwrap

    lines = textwrap.wrap(text.replace(",", ", "), width, break_long_words=True) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(width - 2, 0)] + ".."
    return lines


def _tile(tiles: list[np.ndarray], ncol: int) -> np.ndarray:
    h = max(t.shape[0] for t in tiles) + _PAD
    w = max(t.shape[1] for t in tiles) + _PAD
    ncol = min(ncol, len(tiles))
    nrow = -(-len(tiles) // ncol)
    grid = np.zeros((nrow * h, ncol * w, 3), dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncol)
        grid[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t
    return grid

"""Leave-one-family-out choice of the mask: which maps, how much averaging, which pixel rate.

The guard's ``mask`` is ``c > tau`` where ``c`` is the pixel-wise maximum of the calibrated
per-view maps, box-averaged over ``(2 r + 1)^2`` pixels, and ``tau`` the ``1 - pixel_fpr``
quantile of ``c`` on real foreground pixels (:mod:`safegen_guard.calibration`, step 4). This
benchmark measures the Dice of that mask on every *local* artifact family of
:mod:`benchmarks.families` for a grid of settings (the maps of the given views, each of them
left out; radius; pixel rate) and, for each family ``F``, picks the setting with the best mean
Dice on the other families and scores ``F`` with it (unseen). The product's setting (its
modality's ``pixel_fpr``) is reported beside it on the same images.

``tau`` comes from fresh acquisition draws of the data set's *val* split (half augmented,
half plain, like the guard's calibration), never from the test images the Dice is measured
on. The guard must hold every view named (e.g. the all-views guard ``benchmarks.loo``
saves in ``OUT/guard``); the maps of a guard with fewer views are those of the same views.

Run::

    python -m benchmarks.mask_choice --guard results_loo/guard --data mni152 --out results_mask

Writes ``mask_<data>.json`` and ``mask_<data>.md``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.families import corrupt, families_for
from benchmarks.loo import SEVERITIES, cell_seed, load_test
from safegen_guard import Guard
from safegen_guard.calibration import MAP_RADIUS_AT_64, map_radius, max_average
from safegen_guard.config import PIXEL_FPR_DEFAULTS
from safegen_guard.console import run_main
from safegen_guard.io import atomic_write_json, atomic_write_text
from safegen_guard.metrics import dice

log = logging.getLogger(__name__)

__all__ = ["Setting", "MapCell", "dice_grid", "family_mean", "leave_one_family_out", "main"]

RADII: tuple[int, ...] = (0, 1, 2, 3, 4)
"""Averaging radii at 64 px (scaled with the image size like the product's)."""
PIXEL_FPRS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1)
"""Pixel false-positive rates on real foreground tried."""
_MAX_PIXELS = 2_000_000


@dataclass(frozen=True)
class Setting:
    """One mask setting: the views whose maps are combined, radius at 64 px, pixel rate."""

    views: tuple[str, ...]
    radius: int
    pixel_fpr: float


@dataclass
class MapCell:
    """Per-view maps of one corrupted test cell and its ground truth.

    Attributes:
        family: Family name.
        kind: Artifact kind.
        severity: ``"mild"`` or ``"strong"``.
        validation_only: The kind is not in :mod:`safegen_guard.artifacts`.
        maps: ``[N, M, H, W]`` calibrated maps (each divided by the guard's map scale).
        gt: ``[N, 1, H, W]`` bool ground truth.
        foreground: ``[N, 1, H, W]`` bool foreground the guard found (for the trivial
            reference mask: all of it), or ``None``.
    """

    family: str
    kind: str
    severity: str
    validation_only: bool
    maps: torch.Tensor
    gt: torch.Tensor
    foreground: torch.Tensor | None = None


def family_mean(
    grid: dict[Setting, list[float]], cells: list[MapCell], setting: Setting, family: str
) -> float:
    """Mean Dice of ``setting`` over the cells of ``family`` (``grid`` from :func:`dice_grid`)."""
    return float(np.mean([d for d, c in zip(grid[setting], cells) if c.family == family]))


def dice_grid(
    map_names: list[str],
    val_maps: torch.Tensor,
    val_foreground: torch.Tensor,
    cells: list[MapCell],
    settings: list[Setting],
    image_size: int,
    seed: int = 0,
) -> dict[Setting, list[float]]:
    """Mean Dice of each setting's mask on every cell.

    Args:
        map_names: Names of the ``M`` map columns.
        val_maps: ``[n, M, H, W]`` calibrated maps of real images (sets ``tau``).
        val_foreground: ``[n, 1, H, W]`` bool foreground of those images.
        cells: The corrupted cells.
        settings: Settings to measure (their radius is at 64 px).
        image_size: Side of the images (scales the radius).
        seed: Seed of the pixel subsample for the quantile.

    Returns:
        ``{setting: [Dice per cell, in the order of cells]}``.
    """
    out: dict[Setting, list[float]] = {}
    g = torch.Generator().manual_seed(seed)
    groups = itertools.groupby(
        sorted(settings, key=lambda s: (s.views, s.radius)), key=lambda s: (s.views, s.radius)
    )
    for (views, radius), same in groups:
        cols = [map_names.index(v) for v in views]
        r = map_radius(image_size, radius)  # scaled as the product scales its own
        real = max_average(val_maps[:, cols].float(), r)[val_foreground]
        if real.numel() > _MAX_PIXELS:
            real = real[torch.randperm(real.numel(), generator=g)[:_MAX_PIXELS]]
        combined = [max_average(c.maps[:, cols].float(), r) for c in cells]
        for s in same:
            tau = float(torch.quantile(real, 1.0 - s.pixel_fpr))
            out[s] = [float(dice(cm > tau, c.gt).mean()) for cm, c in zip(combined, cells)]
    return out


def leave_one_family_out(
    grid: dict[Setting, list[float]], cells: list[MapCell]
) -> dict[str, tuple[Setting, float]]:
    """Per family: the setting best on the *other* families, and its Dice on this one.

    Args:
        grid: Output of :func:`dice_grid`.
        cells: The cells the grid was measured on.

    Returns:
        ``{family: (chosen setting, mean Dice of the family's cells with it)}``.
    """
    families = sorted({c.family for c in cells})
    out = {}
    for fam in families:
        others = [f for f in families if f != fam]
        if not others:
            raise ValueError(f"leave-one-family-out needs two families or more, got {families}")
        best = max(grid, key=lambda s: np.mean([family_mean(grid, cells, s, f) for f in others]))
        out[fam] = (best, family_mean(grid, cells, best, fam))
    return out


def _maps(guard: Guard, x: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    scale = guard.calibrator.map_scale[None, :, None, None]
    ms, fgs = [], []
    with torch.no_grad():
        for chunk in x.split(batch):
            _, m, fg = guard.detector.score(chunk)
            ms.append((m / scale).half())
            fgs.append(fg)
    return torch.cat(ms), torch.cat(fgs)


def _markdown(result: dict, title: str) -> str:
    lines = [
        f"### Mask choice, leave-one-family-out {title}",
        "",
        f"Maps of `{', '.join(result['views'])}`; product setting: radius "
        f"{result['product']['radius']} at 64 px, pixel_fpr {result['product']['pixel_fpr']}, "
        f"without `{', '.join(result['product']['left_out']) or '-'}`.",
        "",
        "| family | validation-only | Dice, chosen without it | chosen setting | Dice, product "
        "| Dice, whole foreground |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["families"]:
        s = r["chosen"]
        lines.append(
            f"| {r['family']} | {'yes' if r['validation_only'] else ''} | {r['unseen']:.3f} | "
            f"maps {', '.join(s['views'])}; radius {s['radius']}; pixel_fpr {s['pixel_fpr']} | "
            f"{r['product']:.3f} | {r['whole_foreground']:.3f} |"
        )
    lines += [
        "",
        f"Mean Dice, unseen: all local families {result['unseen_mean']:.3f}, validation-only "
        f"{result['unseen_validation_only']:.3f}. Product setting: {result['product_mean']:.3f}"
        f" / {result['product_validation_only']:.3f}. Before this choice (every map, no "
        f"averaging, pixel_fpr 0.005): {result['before_mean']:.3f} / "
        f"{result['before_validation_only']:.3f}. The whole foreground as the mask (no "
        f"localisation): {result['whole_foreground_mean']:.3f} / "
        f"{result['whole_foreground_validation_only']:.3f}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Command line: measure the grid on a saved guard and write the tables."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mask_choice", description=__doc__.split("\n")[0]
    )
    p.add_argument("--guard", required=True, help="a saved guard holding every view named")
    p.add_argument("--data", default="mni152", help="mni152, ct_phantom or a folder of scans")
    p.add_argument("--modality", choices=("mri", "ct"), help="default: ct for ct_phantom")
    p.add_argument("--views", help="comma-separated map views (default: the modality's)")
    p.add_argument("--test-variants", type=int, default=8, help="acquisition draws per slice")
    p.add_argument("--seed", type=int, default=0, help="seed of the test draws and corruptions")
    p.add_argument("--out", default="results_mask", help="output folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from safegen_guard.data import load_dataset
    from safegen_guard.detector.registry import default_views

    modality = args.modality or ("ct" if "ct" in str(args.data) else "mri")
    guard = Guard.load(args.guard)
    size = guard.config.image_size
    names, held = guard.detector.map_view_names, guard.detector.views
    wanted = args.views.split(",") if args.views else list(default_views(modality))
    missing = [v for v in wanted if v not in held]
    views = [v for v in wanted if v in names]
    if missing or not views:
        raise ValueError(
            f"views {wanted} need a guard holding them with a map among them; this guard has "
            f"views {list(held)}, maps {names}"
        )
    val = [
        load_dataset(args.data, "val", size, variants=4, augment=True, seed=args.seed + 101),
        load_dataset(args.data, "val", size, variants=4, seed=args.seed + 102),
    ]
    val_maps, val_fg = _maps(guard, torch.cat([d.images for d in val]))
    clean, fg = load_test(args.data, size, args.test_variants, args.seed)
    cells = []
    for fam in families_for(modality):
        if not fam.local:
            continue
        for kind, sev in itertools.product(fam.kinds, SEVERITIES):
            g = torch.Generator().manual_seed(cell_seed(kind, sev, args.seed))
            x, gt = corrupt(clean, fg, kind, sev, g)
            maps, found = _maps(guard, x)
            cells.append(MapCell(fam.name, kind, sev, fam.validation_only, maps, gt, found))
            log.info("mapped %s/%s", kind, sev)
    subsets = [tuple(views)] + [tuple(v for v in views if v != d) for d in views if len(views) > 1]
    settings = [Setting(s, r, f) for s in subsets for r in RADII for f in PIXEL_FPRS]
    grid = dice_grid(names, val_maps, val_fg, cells, settings, size, args.seed)
    chosen = leave_one_family_out(grid, cells)
    in_mask = [v for v in views if held[v].in_mask]
    product = Setting(tuple(in_mask), MAP_RADIUS_AT_64, PIXEL_FPR_DEFAULTS[modality])
    before = Setting(tuple(views), 0, 0.005)
    for s in (product, before):
        if s not in grid:
            grid.update(dice_grid(names, val_maps, val_fg, cells, [s], size, args.seed))

    def fam_mean(s: Setting, fam: str) -> float:
        return family_mean(grid, cells, s, fam)

    # the trivial reference: the whole foreground as the mask
    whole = {f: float(np.mean([dice(c.foreground, c.gt).mean() for c in cells if c.family == f]))
             for f in chosen}  # fmt: skip

    fams = sorted(chosen)
    vo = sorted({c.family for c in cells if c.validation_only})
    rows = [
        {
            "family": f,
            "validation_only": f in vo,
            "unseen": round(chosen[f][1], 3),
            "chosen": {"views": list(chosen[f][0].views), "radius": chosen[f][0].radius,
                       "pixel_fpr": chosen[f][0].pixel_fpr},
            "product": round(fam_mean(product, f), 3),
            "whole_foreground": round(whole[f], 3),
        }
        for f in fams
    ]  # fmt: skip

    def mean(key: str, only: list[str] | None = None) -> float:
        return round(
            float(np.mean([r[key] for r in rows if only is None or r["family"] in only])), 3
        )

    result = {
        "data": str(args.data),
        "image_size": size,
        "views": views,
        "product": {"radius": MAP_RADIUS_AT_64, "pixel_fpr": product.pixel_fpr,
                    "left_out": [v for v in views if v not in in_mask]},
        "families": rows,
        "unseen_mean": mean("unseen"),
        "unseen_validation_only": mean("unseen", vo) if vo else None,
        "product_mean": mean("product"),
        "product_validation_only": mean("product", vo) if vo else None,
        "whole_foreground_mean": mean("whole_foreground"),
        "whole_foreground_validation_only": mean("whole_foreground", vo) if vo else None,
        "before_mean": round(float(np.mean([fam_mean(before, f) for f in fams])), 3),
        "before_validation_only": round(float(np.mean([fam_mean(before, f) for f in vo])), 3)
        if vo else None,
        "n_clean": len(clean),
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(str(args.data)).name
    md = _markdown(result, f"({name}, {size} px)")
    atomic_write_json(out / f"mask_{name}.json", result)
    atomic_write_text(out / f"mask_{name}.md", md)
    print(md)
    return result


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.mask_choice"))

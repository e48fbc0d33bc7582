"""Score every method on the same test cells and turn the scores into metric tables.

One *cell* is one artifact kind at one severity, injected into copies of the clean real test
slices; the clean slices are the negatives of every cell. ``overall`` pools every cell's
anomalous images against the clean images; ``by_severity`` pools per severity; pixel metrics
are reported on *local* kinds (whose mask is a patch, not the whole frame).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmarks import metrics
from benchmarks.baselines.base import Baseline
from benchmarks.guard_eval import Calibrated
from benchmarks.stats import paired_comparison

__all__ = ["Scored", "score_all", "cell_metrics", "pooled_metrics", "comparisons"]


@dataclass
class Scored:
    """Scores of one method on the clean images and on every cell.

    Attributes:
        clean: ``[n0]`` scores of clean test images; ``clean_maps`` ``[n0,1,H,W]`` or None.
        cells: per cell, ``[n1]`` scores; ``cell_maps`` per cell ``[n1,1,H,W]`` or None.
        images_per_s: Scoring throughput over every test image.
    """

    clean: torch.Tensor
    clean_maps: torch.Tensor | None
    cells: list[torch.Tensor]
    cell_maps: list[torch.Tensor | None]
    images_per_s: float


PIXEL_METRICS: tuple[str, ...] = (
    "iou",
    "dice",
    "pixel_auroc",
    "pixel_auprc",
    "pointing_game",
    "topk_intersection",
    "insertion_auc",
    "deletion_auc",
)
"""Pixel-level metrics of a cell (``None`` for a method without maps or a global cell)."""


def score_all(method: Baseline, clean: torch.Tensor, suite: list[dict]) -> Scored:
    """Score the clean images and every cell in one pass (timed for throughput)."""
    x = torch.cat([clean] + [c["images"] for c in suite])
    t0 = time.perf_counter()
    scores, maps = method.score_chunked(x)
    rate = len(x) / max(time.perf_counter() - t0, 1e-9)
    sizes = [len(clean)] + [len(c["images"]) for c in suite]
    s_parts = list(scores.split(sizes))
    m_parts = [None] * len(sizes) if maps is None else list(maps.split(sizes))
    return Scored(s_parts[0], m_parts[0], s_parts[1:], m_parts[1:], rate)


def _clean_or_nan(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def cell_metrics(
    method: Baseline,
    scored: Scored,
    cal: Calibrated,
    cell: dict,
    index: int,
    n_insdel: int,
) -> dict:
    """Every metric of one method on one cell (pixel metrics ``None`` without maps)."""
    out = metrics.image_metrics(scored.clean, scored.cells[index], cal.threshold)
    out["false_reject_rate"] = float((scored.clean > cal.threshold).double().mean())
    maps, gt = scored.cell_maps[index], cell["masks"]
    out.update(dict.fromkeys(PIXEL_METRICS))
    if maps is None or not cell.get("local", True):
        return _clean_or_nan(out)
    out.update(metrics.mask_overlap(maps > cal.pixel_threshold, gt))
    out.update(metrics.pixel_ranking(maps, gt))
    out["pointing_game"] = metrics.pointing_game(maps, gt)
    out["topk_intersection"] = metrics.topk_intersection(maps, gt)
    if n_insdel > 0:
        k = min(n_insdel, len(gt))
        res = metrics.insertion_deletion(
            lambda x: method.score_chunked(x)[0],
            cell["clean"][:k],
            cell["images"][:k],
            maps[:k],
            gt[:k],
        )
        out["insertion_auc"], out["deletion_auc"] = res["insertion_auc"], res["deletion_auc"]
    return _clean_or_nan(out)


def pooled_metrics(scored: Scored, cal: Calibrated, select: list[int], cells: list[dict]) -> dict:
    """Image metrics pooled over the cells in ``select``; pixel metrics = mean over them."""
    anom = torch.cat([scored.cells[i] for i in select])
    out = metrics.image_metrics(scored.clean, anom, cal.threshold)
    out["false_reject_rate"] = float((scored.clean > cal.threshold).double().mean())
    for key in PIXEL_METRICS:
        vals = [cells[i][key] for i in select if cells[i].get(key) is not None]
        out[key] = float(sum(vals) / len(vals)) if vals else None
    return out


def comparisons(
    scored: dict[str, Scored],
    suite: list[dict],
    groups: dict[str, list[int]],
    seed: int,
    n_boot: int,
) -> list[dict]:
    """Paired SAFEGEN-vs-baseline tests for every cell and pooled group."""
    ref = scored["safegen"]
    items = [(f"{c['kind']}/{c['severity']}", [i]) for i, c in enumerate(suite)]
    items += list(groups.items())
    out = []
    for name, other in scored.items():
        if name == "safegen":
            continue
        for label, idx in tqdm(items, desc=f"paired tests vs {name}", leave=False):
            res = paired_comparison(
                ref.clean,
                torch.cat([ref.cells[i] for i in idx]),
                other.clean,
                torch.cat([other.cells[i] for i in idx]),
                n_boot=n_boot,
                seed=seed,
            )
            out.append({"cell": label, "baseline": name, **res})
    return out

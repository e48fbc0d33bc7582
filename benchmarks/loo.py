"""Leave-one-family-out: view selection validated on artifact families it never saw.

For each artifact family ``F`` (:mod:`benchmarks.families`), the view set is chosen by greedy
forward selection on every family *except* ``F``, and ``F`` is then scored with that set as an
unseen family. The "seen" column is the set chosen on all families, scored on each of them:
the gap between the two is what tuning on the test families would have hidden.

The guard is fitted once with every candidate view; a view set is evaluated without refitting
through ``Calibrator.decide(..., columns=...)``, which gives exactly the decisions of a guard
calibrated with just those views (each view's reference tail and calibration half B are
shared). Fusion, thresholds and the severity score are the product's own.

Run::

    python -m benchmarks.loo --data mni152 --out results_loo
    python -m benchmarks.loo --data ct_phantom --guard path/to/guard --out results_loo_ct

Writes ``loo_<data>.json``, ``loo_<data>.md``, the score table and (when it fitted one) the
all-views guard in ``guard/``.
"""

from __future__ import annotations

import argparse
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmarks.families import Family, corrupt, families_for
from safegen_guard import Guard, GuardConfig
from safegen_guard.console import run_main
from safegen_guard.io import atomic_write_json, atomic_write_text

__all__ = [
    "Cell",
    "ScoreTable",
    "build_table",
    "cell_aurocs",
    "select_views",
    "run_protocol",
    "loo_markdown",
    "main",
]

log = logging.getLogger(__name__)
SEVERITIES = ("mild", "strong")


@dataclass
class Cell:
    """One (kind, severity) test cell: raw view statistics of its corrupted images."""

    family: str
    kind: str
    severity: str
    local: bool
    stats: torch.Tensor
    condition: torch.Tensor
    dice: float | None = None
    _z: tuple | None = field(default=None, repr=False)


@dataclass
class ScoreTable:
    """Raw view statistics of clean test images and of every corrupted cell."""

    views: list[str]
    clean_stats: torch.Tensor
    clean_condition: torch.Tensor
    cells: list[Cell] = field(default_factory=list)
    _z: tuple | None = field(default=None, repr=False)


def _significance(cal: object, holder: object, stats: torch.Tensor, cond: torch.Tensor) -> tuple:
    """Per-view tail significance and bins of ``stats``, computed once and kept on ``holder``."""
    if holder._z is None:
        bins = cal.assign_bins(cond)
        holder._z = (cal.standardise(stats.float(), bins), bins)
    return holder._z


def save_table(table: ScoreTable, path: Path) -> None:
    """Write ``table`` as ``<path>.safetensors`` + ``<path>.json`` (no pickle)."""
    from safetensors.torch import save_file

    tensors = {"clean_stats": table.clean_stats, "clean_condition": table.clean_condition}
    meta = {"views": table.views, "cells": []}
    for i, c in enumerate(table.cells):
        tensors[f"cell{i}_stats"], tensors[f"cell{i}_condition"] = c.stats, c.condition
        meta["cells"].append([c.family, c.kind, c.severity, c.local, c.dice])
    save_file({k: v.contiguous() for k, v in tensors.items()}, f"{path}.safetensors")
    atomic_write_json(f"{path}.json", meta)


def load_table(path: Path) -> ScoreTable:
    """Inverse of :func:`save_table`."""
    import json

    from safetensors.torch import load_file

    t = load_file(f"{path}.safetensors")
    meta = json.loads(Path(f"{path}.json").read_text())
    table = ScoreTable(meta["views"], t["clean_stats"], t["clean_condition"])
    for i, (fam, kind, sev, local, dice) in enumerate(meta["cells"]):
        table.cells.append(
            Cell(fam, kind, sev, local, t[f"cell{i}_stats"], t[f"cell{i}_condition"], dice)
        )
    return table


def cell_seed(kind: str, severity: str, seed: int) -> int:
    """A stable seed from the cell's names (never from its position in a list)."""
    return zlib.crc32(f"loo|{kind}|{severity}|{seed}".encode())


def _dice(pred: torch.Tensor, gt: torch.Tensor) -> float:
    from safegen_guard.metrics import dice

    return float(dice(pred, gt).mean())


def build_table(
    guard: Guard,
    clean: torch.Tensor,
    foreground: torch.Tensor,
    families: tuple[Family, ...],
    seed: int = 0,
) -> ScoreTable:
    """Score clean images and every family's kinds at mild and strong.

    Args:
        guard: A guard fitted with every candidate view.
        clean: ``[N, 1, S, S]`` real test images.
        foreground: ``[N, 1, S, S]`` their head/body masks.
        families: Families to corrupt with.
        seed: Seed of the corruption draws (combined with each cell's names).

    Returns:
        The table; local cells carry the Dice of the guard's ``mask``.
    """
    stats, cond = guard.view_statistics(clean)
    table = ScoreTable(list(guard.detector.view_names), stats, cond)
    for fam in families:
        for kind in fam.kinds:
            for sev in SEVERITIES:
                g = torch.Generator().manual_seed(cell_seed(kind, sev, seed))
                x, gt = corrupt(clean, foreground, kind, sev, g)
                verdict = guard.evaluate(x)
                s = torch.stack([verdict.view_scores[n] for n in table.views], 1)
                c = guard.view_statistics(x)[1]
                d = _dice(verdict.mask, gt) if fam.local else None
                table.cells.append(Cell(fam.name, kind, sev, fam.local, s, c, d))
                log.info("scored %s/%s", kind, sev)
    return table


def cell_aurocs(guard: Guard, table: ScoreTable, views: list[str]) -> dict[tuple[str, str], float]:
    """AUROC clean-vs-corrupted of the fused severity of ``views``, per (kind, severity)."""
    cols = [table.views.index(v) for v in views]
    cal = guard.calibrator

    def severity(z: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        return cal.severity(z[:, cols].max(1).values, bins, cols)

    s0 = severity(*_significance(cal, table, table.clean_stats, table.clean_condition))
    out = {}
    for c in table.cells:
        s1 = severity(*_significance(cal, c, c.stats, c.condition))
        y = np.r_[np.zeros(len(s0)), np.ones(len(s1))]
        score = torch.cat([s0, s1]).clamp_max(1e6).numpy()
        out[(c.kind, c.severity)] = float(roc_auc_score(y, score))
    return out


def _objective(aurocs: dict, table: ScoreTable, families: set[str]) -> float:
    """Mean over the given families of their cells' mean AUROC (each family weighs the same)."""
    per_family: dict[str, list[float]] = {}
    for c in table.cells:
        if c.family in families:
            per_family.setdefault(c.family, []).append(aurocs[(c.kind, c.severity)])
    return float(np.mean([np.mean(v) for v in per_family.values()]))


def select_views(
    guard: Guard,
    table: ScoreTable,
    families: set[str],
    candidates: list[str] | None = None,
    min_gain: float = 0.002,
) -> tuple[list[str], float]:
    """Greedy forward selection of views maximising the mean AUROC over ``families`` only.

    Returns:
        ``(views in order of selection, objective)``.
    """
    candidates = list(candidates or table.views)
    chosen: list[str] = []
    best = -1.0
    cache: dict[str, dict] = {}
    while candidates:
        scores = {}
        for v in candidates:
            key = ",".join(sorted([*chosen, v]))
            if key not in cache:
                cache[key] = cell_aurocs(guard, table, [*chosen, v])
            scores[v] = _objective(cache[key], table, families)
        v, s = max(scores.items(), key=lambda kv: kv[1])
        if s < best + min_gain:
            break
        chosen.append(v)
        candidates.remove(v)
        best = s
    return chosen, best


def _summary(rows: list[dict], key: str) -> dict[str, float]:
    out = {}
    for sev in SEVERITIES:
        vals = [r[key] for r in rows if r["severity"] == sev]
        out[sev] = round(float(np.mean(vals)), 3)
    return out


def run_protocol(guard: Guard, table: ScoreTable) -> dict:
    """The seen selection and the leave-one-family-out unseen scores.

    Returns:
        dict with ``seen_views``, per-cell ``rows`` (``seen`` and ``unseen`` AUROC, the views
        chosen without the family, Dice), per-family means and the summary means.
    """
    fams = sorted({c.family for c in table.cells})
    seen_views, _ = select_views(guard, table, set(fams))
    seen = cell_aurocs(guard, table, seen_views)
    rows = []
    for fam in fams:
        views, _ = select_views(guard, table, set(fams) - {fam})
        unseen = cell_aurocs(guard, table, views)
        for c in table.cells:
            if c.family == fam:
                rows.append(
                    {
                        "family": fam,
                        "kind": c.kind,
                        "severity": c.severity,
                        "seen": round(seen[(c.kind, c.severity)], 3),
                        "unseen": round(unseen[(c.kind, c.severity)], 3),
                        "views_without_family": views,
                        "dice": None if c.dice is None else round(c.dice, 3),
                    }
                )
    local = [r for r in rows if r["dice"] is not None]
    return {
        "views": table.views,
        "seen_views": seen_views,
        "rows": rows,
        "seen": _summary(rows, "seen"),
        "unseen": _summary(rows, "unseen"),
        "dice_local_mean": round(float(np.mean([r["dice"] for r in local])), 3) if local else None,
        "n_clean": len(table.clean_stats),
    }


def loo_markdown(result: dict, title: str = "") -> str:
    """The protocol's result as a Markdown table (one row per kind and severity)."""
    lines = [f"### Leave-one-family-out {title}".rstrip(), ""]
    lines.append(f"Views chosen on all families (seen): `{', '.join(result['seen_views'])}`")
    lines.append("")
    lines.append(
        "| family | kind | severity | AUROC seen | AUROC unseen | Dice | views chosen without it |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        dice = "" if r["dice"] is None else f"{r['dice']:.3f}"
        views = ", ".join(r["views_without_family"])
        lines.append(
            f"| {r['family']} | {r['kind']} | {r['severity']} | {r['seen']:.3f} | "
            f"{r['unseen']:.3f} | {dice} | {views} |"
        )
    s, u = result["seen"], result["unseen"]
    lines.append("")
    lines.append(
        f"Mean AUROC: seen strong {s['strong']:.3f} / mild {s['mild']:.3f}; "
        f"unseen strong {u['strong']:.3f} / mild {u['mild']:.3f}; "
        f"Dice of `mask` on local kinds {result['dice_local_mean']}; "
        f"{result['n_clean']} clean test images."
    )
    return "\n".join(lines) + "\n"


def load_test(
    source: str, size: int, variants: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images (half augmented, half plain draws) and their foreground masks."""
    from safegen_guard.data import load_dataset

    half = max(1, variants // 2)
    parts = [
        load_dataset(source, "test", size, variants=half, augment=True, seed=seed + 2),
        load_dataset(source, "test", size, variants=max(1, variants - half), seed=seed + 3),
    ]
    return torch.cat([p.images for p in parts]), torch.cat([p.masks for p in parts])


def main(argv: list[str] | None = None) -> dict:
    """Command line: fit (or load) a guard with every view and run the protocol."""
    from safegen_guard.detector.registry import list_views

    p = argparse.ArgumentParser(prog="python -m benchmarks.loo", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="mni152", help="mni152, ct_phantom or a folder of scans")
    p.add_argument("--modality", choices=("mri", "ct"), help="default: ct for ct_phantom")
    p.add_argument("--guard", help="a guard saved with every candidate view (else one is fitted)")
    p.add_argument("--profile", default="quick", help="guard profile when fitting")
    p.add_argument("--size", type=int, default=64, help="image size when fitting")
    p.add_argument("--test-variants", type=int, default=8, help="acquisition draws per test slice")
    p.add_argument("--seed", type=int, default=0, help="seed of the test draws and corruptions")
    p.add_argument("--out", default="results_loo", help="output folder")
    p.add_argument("--table", help="reuse a score table saved by an earlier run (path stem)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    modality = args.modality or ("ct" if "ct" in str(args.data) else "mri")
    if args.guard:
        guard = Guard.load(args.guard)
    else:
        cfg = GuardConfig.profile(args.profile, image_size=args.size, views=list_views())
        guard = Guard.fit(args.data, cfg)
    size = guard.config.image_size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.guard:  # kept for view-subset analyses (preparations --view-set, realism --views)
        guard.save(out / "guard")
    name = Path(str(args.data)).name
    if args.table:
        table = load_table(Path(args.table))
    else:
        clean, fg = load_test(args.data, size, args.test_variants, args.seed)
        table = build_table(guard, clean, fg, families_for(modality), args.seed)
        save_table(table, out / f"table_{name}")
    result = run_protocol(guard, table)
    atomic_write_json(out / f"loo_{name}.json", result)
    atomic_write_text(out / f"loo_{name}.md", loo_markdown(result, f"({name}, {size} px)"))
    print(loo_markdown(result, f"({name}, {size} px)"))
    return result


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.loo"))

"""Real slices prepared by other valid pipelines, and the clean false-reject-rate check.

A guard must not reject real scans because a different but valid preparation was used. For
the MNI152 test slices this module builds three alternative preparations of the same template
(never seen by any guard's fit):

* ``bicubic_p99``: bicubic anti-aliased resampling (instead of area averaging) and
  normalisation by the 99.5th intensity percentile (instead of the maximum), clipped;
* ``minmax_after_noise``: the project's acquisition simulation, then per-slice min-max
  normalisation after the noise (instead of clipping to the template's range);
* ``tight_crop``: the volume cropped to the head's bounding box (over all slices) plus a 6 %
  margin before padding to square, as pipelines that crop to the non-zero region do (a
  different field of view: the head appears about 10 % larger).

``python -m benchmarks.preparations --guard DIR`` reports the FRR on each, and on the test
split's plain and augmented draws over several acquisition seeds, as JSON and Markdown. A
rate measured on ``n`` real images has a binomial spread of ``sqrt(alpha (1 - alpha) / n)``
(0.026 at ``alpha = 0.05`` on the 72 MRI test images of one draw at ``--variants 4``, wider
than a +-0.02 band), so the report also pools the draws and gives the exact (Clopper-Pearson)
95 % interval of the pooled rate (:func:`pooled_rate`); ``--variants`` draws more images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from safegen_guard import Guard
from safegen_guard.data.acquisition import realise_variants, resolve_acquisition
from safegen_guard.data.foreground import (
    axial_to_display,
    interleaved_split,
    pad_to_square,
    resize_images,
    resize_masks,
)
from safegen_guard.io import atomic_write_json, atomic_write_text

__all__ = [
    "PREPARATIONS",
    "prepare_mni152",
    "view_columns",
    "unsafe_rates",
    "clean_frr",
    "unsafe_counts",
    "pooled_rate",
    "main",
]

PREPARATIONS = ("bicubic_p99", "minmax_after_noise", "tight_crop")


def _slices(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-resolution display slices ``[N, 1, H, W]`` of the raw template and head masks."""
    from safegen_guard.data.mni152 import _template

    volume, mask, kept = _template()
    idx = interleaved_split(kept, split)
    x = torch.stack([axial_to_display(volume[..., z]) for z in idx])[:, None].float()
    m = torch.stack([axial_to_display(mask[..., z]) for z in idx])[:, None].float()
    return x, m


def prepare_mni152(
    name: str, size: int, variants: int = 4, seed: int = 0, split: str = "test"
) -> torch.Tensor:
    """``[N * variants, 1, size, size]`` slices of ``split`` prepared by pipeline ``name``.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in PREPARATIONS:
        raise ValueError(f"unknown preparation {name!r}; choose from {list(PREPARATIONS)}")
    x, m = _slices(split)
    g = torch.Generator().manual_seed(seed)
    acq = resolve_acquisition("default")
    if name == "bicubic_p99":
        x = x / torch.quantile(x.flatten(1), 0.995, dim=1).clamp_min(1e-6)[:, None, None, None]
        x = F.interpolate(
            pad_to_square(x.clamp(0, 1)), size=(size, size), mode="bicubic", antialias=True
        ).clamp(0, 1)
        ms = resize_masks(pad_to_square(m) > 0.5, size)
        return realise_variants(x, ms, variants=variants, config=acq, augment=False, generator=g)[0]
    if name == "minmax_after_noise":
        x = resize_images(pad_to_square(x), size)
        ms = resize_masks(pad_to_square(m) > 0.5, size)
        noisy, _ = realise_variants(
            x, ms, variants=variants, config=acq, augment=False, generator=g
        )
        lo = noisy.flatten(1).min(1).values[:, None, None, None]
        hi = noisy.flatten(1).max(1).values[:, None, None, None]
        return ((noisy - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    head = m.amax(0)[0] > 0.5  # the volume's head extent, over all slices of the split
    ys, xs = np.nonzero(head.numpy())
    margin = int(0.06 * max(x.shape[-2:]))
    y0, y1 = max(0, ys.min() - margin), min(x.shape[-2], ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(x.shape[-1], xs.max() + margin + 1)
    xs_ = resize_images(pad_to_square(x[..., y0:y1, x0:x1]), size).clamp(0, 1)
    ms_ = resize_masks(pad_to_square(m[..., y0:y1, x0:x1]) > 0.5, size)
    return realise_variants(xs_, ms_, variants=variants, config=acq, augment=False, generator=g)[0]


def view_columns(guard: Guard, views: list[str]) -> list[int]:
    """Column indices of ``views`` in the guard's statistics, for ``Calibrator.decide(columns=)``.

    Raises:
        ValueError: a view the guard was not fitted with.
    """
    names = list(guard.detector.view_names)
    missing = sorted(set(views) - set(names))
    if missing:
        raise ValueError(f"views {missing} are not in the guard; it has {names}")
    return [names.index(v) for v in views]


def unsafe_counts(
    guard: Guard, x: torch.Tensor, view_sets: dict[str, list[str]] | None = None
) -> dict[str, int]:
    """Number of ``x`` rejected by the guard, or by each of its view subsets.

    Same decisions as :func:`unsafe_rates`, as exact counts (for pooling draws).

    Raises:
        ValueError: a view the guard was not fitted with.
    """
    if view_sets is None:
        return {"guard": int(guard.evaluate(x).unsafe.sum())}
    columns = {key: view_columns(guard, views) for key, views in view_sets.items()}
    stats, cond = guard.view_statistics(x)
    return {
        key: int(guard.calibrator.decide(stats, cond, columns=cols)["unsafe"].sum())
        for key, cols in columns.items()
    }


def unsafe_rates(
    guard: Guard, x: torch.Tensor, view_sets: dict[str, list[str]] | None = None
) -> dict[str, float]:
    """Fraction of ``x`` rejected by the guard, or by each of its view subsets.

    A subset's decisions are exactly those of a guard calibrated with only those views
    (:meth:`~safegen_guard.calibration.Calibrator.decide` with ``columns``), so one guard fitted
    with every candidate view answers for every subset.

    Args:
        guard: A fitted guard.
        x: ``[B, C, S, S]`` images in ``[0, 1]``.
        view_sets: Name -> views (each a subset of ``guard.detector.view_names``); ``None``
            gives ``{"guard": rate}`` from :meth:`Guard.evaluate`.

    Returns:
        Name -> unsafe rate in ``[0, 1]``, rounded to 3 digits.

    Raises:
        ValueError: a view the guard was not fitted with.
    """
    return {k: round(c / len(x), 3) for k, c in unsafe_counts(guard, x, view_sets).items()}


def pooled_rate(rejected: list[int], n: int) -> dict[str, float | int]:
    """Pool per-draw rejection counts of ``n`` images each; exact 95 % binomial interval.

    Args:
        rejected: Rejected images in each draw (each in ``[0, n]``).
        n: Images per draw.

    Returns:
        ``{"rejected": k, "images": N, "rate": k / N, "low": ..., "high": ...}``, the
        Clopper-Pearson interval from ``scipy.stats.binomtest``.

    Raises:
        ValueError: no counts, ``n`` not a positive int, or a count outside ``[0, n]``.

    Example:
        >>> pooled_rate([5, 5], 100)["rate"]
        0.05
    """
    from scipy.stats import binomtest

    if not rejected:
        raise ValueError("`rejected` must hold at least one count, got []")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int (images per draw), got {n!r}")
    if any(not 0 <= int(c) <= n for c in rejected):
        raise ValueError(f"every count must lie in [0, {n}], got {list(rejected)}")
    k, total = int(sum(rejected)), n * len(rejected)
    ci = binomtest(k, total).proportion_ci(confidence_level=0.95, method="exact")
    return {
        "rejected": k,
        "images": total,
        "rate": round(k / total, 4),
        "low": round(float(ci.low), 4),
        "high": round(float(ci.high), 4),
    }


def clean_frr(
    guard: Guard,
    source: str,
    seeds: tuple[int, ...] = (11, 12, 13),
    view_sets: dict[str, list[str]] | None = None,
    variants: int = 4,
) -> dict:
    """False-reject rate on the test split: plain and augmented draws, per acquisition seed.

    When the guard was calibrated with the named data set's augmented and plain groups, each
    draw is also judged by ``guard.for_preparation(group)`` of its own preparation (the
    user declares it), reported as ``"<set>, declared"``.

    Args:
        guard: A fitted guard.
        source: The guard's named data set.
        seeds: Acquisition seeds, one draw each.
        view_sets: As in :func:`unsafe_rates`.
        variants: Acquisition variants per test slice in each draw (more images per draw).

    Returns:
        ``{"plain": {set: [rate per seed]}, "augmented": {...}, "images": {"plain": n,
        "augmented": n}, "rejected": {"plain": {set: [count per seed]}, ...}}`` (set
        ``"guard"`` without ``view_sets``; ``n`` images per draw).
    """
    from safegen_guard.data import load_dataset
    from safegen_guard.guard_fit import PREPARATION_GROUPS

    size = guard.config.image_size
    declared = {}
    if guard.calibrator.groups == sorted(PREPARATION_GROUPS.values()):
        declared = {k: guard.for_preparation(g) for k, g in PREPARATION_GROUPS.items()}
    out: dict[str, dict] = {"plain": {}, "augmented": {}, "images": {}, "rejected": {}}
    for s in seeds:
        for key, aug in (("plain", False), ("augmented", True)):
            x = load_dataset(source, "test", size, variants=variants, augment=aug, seed=s).images
            out["images"][key] = len(x)
            counts = unsafe_counts(guard, x, view_sets)
            if key in declared:
                for name, c in unsafe_counts(declared[key], x, view_sets).items():
                    counts[f"{name}, declared"] = c
            for name, c in counts.items():
                out[key].setdefault(name, []).append(round(c / len(x), 3))
                out["rejected"].setdefault(key, {}).setdefault(name, []).append(c)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Command line: FRR of a saved guard on test draws and on the other preparations."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.preparations", description=__doc__.split("\n")[0]
    )
    p.add_argument("--guard", required=True, help="a saved guard folder")
    p.add_argument("--data", default="mni152", help="the guard's data set")
    p.add_argument("--out", default=None, help="folder for frr_<data>_<size>.json/.md")
    p.add_argument(
        "--view-set",
        action="append",
        default=None,
        metavar="NAME=V1,V2",
        help="also report the rates of a guard calibrated with only these views (repeatable; "
        "the guard must have been fitted with them)",
    )
    p.add_argument(
        "--variants",
        type=int,
        default=4,
        help="acquisition variants per test slice in each draw (default 4: 72 MRI / 320 CT "
        "images per draw)",
    )
    args = p.parse_args(argv)
    if args.variants < 1:
        p.error(f"--variants must be a positive int, got {args.variants}")
    guard = Guard.load(args.guard)
    view_sets = None
    if args.view_set:
        view_sets = {"guard": list(guard.detector.view_names)}
        for item in args.view_set:
            name, sep, views = item.partition("=")
            if not sep or not views:
                p.error(f"--view-set expects NAME=V1,V2,..., got {item!r}")
            view_sets[name] = [v.strip() for v in views.split(",") if v.strip()]
    size = guard.config.image_size
    result = {
        "size": size,
        "data": args.data,
        "test_split": clean_frr(guard, args.data, view_sets=view_sets, variants=args.variants),
    }
    images = result["test_split"]["images"]
    result["pooled"] = {
        key: {name: pooled_rate(c, images[key]) for name, c in per_set.items()}
        for key, per_set in result["test_split"]["rejected"].items()
    }
    if args.data == "mni152":
        result["preparations"] = {
            name: unsafe_rates(guard, prepare_mni152(name, size), view_sets)
            for name in PREPARATIONS
        }
    lines = [f"FRR ({args.data}, {size} px, requested {guard.config.false_reject_rate}):"]
    for key, per_set in result["pooled"].items():
        for name, pool in per_set.items():
            vals = result["test_split"][key][name]
            lines.append(
                f"- test split, {key} draws ({len(vals)} acquisition seeds, "
                f"{images[key]} images each), "
                f"{name}: {vals}; pooled {pool['rate']:.3f} "
                f"(95 % CI {pool['low']:.3f}-{pool['high']:.3f})"
            )
    for key, per_set in result.get("preparations", {}).items():
        for name, val in per_set.items():
            lines.append(f"- other preparation `{key}`, {name}: {val}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / f"frr_{args.data}_{size}.json", result)
        atomic_write_text(out / f"frr_{args.data}_{size}.md", text)
    return result


if __name__ == "__main__":
    main()

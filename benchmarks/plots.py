"""Benchmark figures as PNG bytes: ROC curves, localisation overlays, generated samples."""

from __future__ import annotations

import io

import numpy as np
import torch

from benchmarks.baselines.base import Baseline
from benchmarks.guard_eval import Calibrated

__all__ = ["roc_figure", "overlay_figure", "generated_section", "png_bytes", "unit_map"]


def png_bytes(fig) -> bytes:  # noqa: ANN001
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _array_png(arr: np.ndarray) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, arr, format="png")
    return buf.getvalue()


def unit_map(maps: torch.Tensor, pixel_threshold: float) -> torch.Tensor:
    """Map to ``[0, 1)`` as SAFEGEN does: ``m / (m + tau)``, so 0.5 is the calibrated mask."""
    m = maps.clamp_min(0)
    return m / (m + max(pixel_threshold, 1e-12))


def roc_figure(scored: dict, suite: list[dict], info: dict, title: str) -> bytes:
    """ROC curves of every method, pooled over ``mild`` and over ``strong`` cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, severity in zip(axes, ("mild", "strong")):
        idx = [i for i, c in enumerate(suite) if c["severity"] == severity]
        for name, s in scored.items():
            neg, pos = s.clean.double().numpy(), torch.cat([s.cells[i] for i in idx]).numpy()
            y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
            x = np.nan_to_num(np.r_[neg, pos], nan=np.inf, posinf=1e300)
            fpr, tpr, _ = roc_curve(y, x)
            ax.plot(fpr, tpr, label=f"{info[name]['label'][:38]} ({roc_auc_score(y, x):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.axvline(0.05, color="grey", lw=0.6, ls="--")
        ax.set(
            title=f"{title}: all kinds, {severity}",
            xlabel="false-positive rate (clean)",
            ylabel="true-positive rate",
        )
        ax.legend(fontsize=6.5, loc="lower right")
    return png_bytes(fig)


def overlay_figure(
    methods: list[Baseline], scored: dict, cals: dict[str, Calibrated], suite: list[dict]
) -> bytes:
    """One row per local kind (strong, first image): input with GT contour, then each map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from safegen_guard.viz import overlay

    rows = [i for i, c in enumerate(suite) if c["local"] and c["severity"] == "strong"][:6]
    rows = rows or list(range(min(4, len(suite))))
    cols = [m for m in methods if scored[m.name].cell_maps[0] is not None]
    fig, axes = plt.subplots(
        len(rows), 1 + len(cols), figsize=(2 * (1 + len(cols)), 2.1 * len(rows)), squeeze=False
    )
    for r, i in enumerate(rows):
        img, gt = suite[i]["images"][0], suite[i]["masks"][0]
        axes[r, 0].imshow(overlay(img, torch.zeros_like(img), gt, 0.0, scale=2))
        axes[r, 0].set_title(f"{suite[i]['kind']} (GT)", fontsize=7)
        for c, m in enumerate(cols, start=1):
            raw = scored[m.name].cell_maps[i][0]
            tau = cals[m.name].pixel_threshold
            heat = raw if m.name == "safegen" else unit_map(raw, tau)
            axes[r, c].imshow(overlay(img, heat, heat > 0.5, 0.6, scale=2))
            axes[r, c].set_title(m.label.split(" (")[0][:22], fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    return png_bytes(fig)


def _verdicts(method: Baseline, cal: Calibrated, images: torch.Tensor) -> dict:
    scores, _ = method.score_chunked(images)
    s = scores.double()
    flagged = ~(s <= cal.threshold)  # NaN scores count as flagged
    finite = s[torch.isfinite(s)]
    q = (
        torch.quantile(finite, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
        if finite.numel()
        else [None] * 3
    )
    return {
        "flagged_rate": float(flagged.double().mean()),
        "n_flagged": int(flagged.sum()),
        "score_q10": q[0],
        "score_median": q[1],
        "score_q90": q[2],
    }


def generated_section(
    methods: list[Baseline], cals: dict, train: torch.Tensor, gen_cfg: dict, args, skip: bool
) -> tuple[dict, dict[str, bytes]]:  # noqa: ANN001
    """Train generators briefly, sample, score with every method; verdicts + overlay grids."""
    from benchmarks.generated import generate_samples
    from safegen_guard.viz import overlay_grid

    if skip:
        return {"status": "skipped", "reason": "--no-generated"}, {}
    sets, reason = generate_samples(
        train,
        n=gen_cfg["n"],
        seconds_per_model=gen_cfg["seconds"],
        max_steps=gen_cfg["max_steps"],
        preset=gen_cfg["preset"],
        seed=args.seed,
        progress=not args.quiet,
    )
    out: dict = {
        "status": "ok" if reason is None else ("partial" if sets else "skipped"),
        "reason": reason,
        "generators": {},
    }
    figs: dict[str, bytes] = {}
    guard = next(m.guard for m in methods if m.name == "safegen")
    for gs in sets:
        entry = {**gs.info, "n": len(gs.images), "verdicts": {}}
        for m in methods:
            entry["verdicts"][m.name] = _verdicts(m, cals[m.name], gs.images)
        v = guard.evaluate(gs.images)
        reasons: dict[str, int] = {}
        for rs in v.reasons:
            for r in rs:
                reasons[r] = reasons.get(r, 0) + 1
        entry["safegen_reasons"] = reasons
        out["generators"][gs.model] = entry
        k = min(16, len(gs.images))
        sub = v.select(slice(0, k))
        figs[f"{gs.model}.png"] = _array_png(overlay_grid(gs.images[:k], sub, ncol=8))
    return out, figs

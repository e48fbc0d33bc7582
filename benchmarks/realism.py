"""Realism yardstick: how the guard judges generated samples, against a supervised C2ST.

For each generator snapshot (a Lightning checkpoint written by ``generators.train``), ``n``
samples are drawn and scored by the guard, and a classifier two-sample test
(:mod:`benchmarks.c2st`) is run between them and real test slices. Reported per generator:

* ``c2st_auroc``: how separable generated samples are from real ones (supervised bound);
* ``guard_auroc``: the guard's severity as a real-vs-generated score (unsupervised);
* ``guard_accept_rate``: share of samples the guard accepts, and ``real_frr`` on the real
  test slices used (the calibrated false-reject rate must still hold);
* ``accepted_called_fake``: of the accepted samples, the share the C2ST calls fake with
  ``P(fake) > 0.9`` (the issue's target: at most 10 %).

Run::

    python -m benchmarks.realism --guard GUARD_DIR --checkpoint ddpm.ckpt --checkpoint sg2.ckpt

Writes ``realism.json``, ``realism.md`` and a grid of the accepted and rejected samples.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmarks.c2st import classifier_two_sample_test
from safegen_guard import Guard
from safegen_guard.io import atomic_write_json, atomic_write_text

__all__ = ["evaluate_generated", "sample_checkpoint", "realism_markdown", "main"]

log = logging.getLogger(__name__)
CALLED_FAKE = 0.9


def sample_checkpoint(checkpoint: str | Path, n: int, seed: int, size: int) -> torch.Tensor:
    """``[n, 1, size, size]`` samples in ``[0, 1]`` of a ``generators.train`` checkpoint."""
    import torch.nn.functional as F

    from generators.sample import load_generator

    module = load_generator(checkpoint)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.cat([module.sample(min(64, n - i), g) for i in range(0, n, 64)])
    x = x.float().clamp(0, 1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def _decisions(
    guard: Guard, x: torch.Tensor, views: list[str] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B] severity, [B] unsafe)`` of the guard, or of a guard with only ``views``."""
    if views is None:
        v = guard.evaluate(x)
        return v.score, v.unsafe
    from benchmarks.preparations import view_columns

    columns = view_columns(guard, views)
    stats, cond = guard.view_statistics(x)
    d = guard.calibrator.decide(stats, cond, columns=columns)
    return d["severity"].float(), d["unsafe"]


def evaluate_generated(
    guard: Guard,
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    folds: int = 5,
    seed: int = 0,
    views: list[str] | None = None,
) -> dict:
    """Guard verdicts and a C2ST on one generated set against real test images.

    Args:
        guard: A fitted guard.
        real: ``[N, 1, S, S]`` real test images (never used to fit the guard).
        generated: ``[M, 1, S, S]`` generated samples.
        folds: C2ST folds.
        seed: C2ST seed.
        views: Judge with a guard calibrated with only these views (exactly, through
            ``Calibrator.decide(columns=...)``); default the guard itself (``evaluate``, so
            the memorization check included).

    Returns:
        The figures listed in the module docstring, plus ``n_real``, ``n_generated``.
    """
    (s_real, u_real), (s_gen, u_gen) = (
        _decisions(guard, real, views),
        _decisions(guard, generated, views),
    )
    c2st = classifier_two_sample_test(real, generated, folds=folds, seed=seed)
    y = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    severity = torch.cat([s_real, s_gen]).clamp_max(1e6).numpy()
    accepted = ~u_gen.numpy()
    fake = c2st.p_fake_generated > CALLED_FAKE
    return {
        "n_real": len(real),
        "n_generated": len(generated),
        "c2st_auroc": round(c2st.auroc, 3),
        "guard_auroc": round(float(roc_auc_score(y, severity)), 3),
        "guard_accept_rate": round(float(accepted.mean()), 3),
        "real_frr": round(float(u_real.float().mean()), 3),
        "called_fake_rate": round(float(fake.mean()), 3),
        "accepted_called_fake": (
            round(float(fake[accepted].mean()), 3) if accepted.any() else None
        ),
        "n_accepted": int(accepted.sum()),
    }


def realism_markdown(results: dict[str, dict]) -> str:
    """One Markdown row per generator."""
    lines = [
        "| generator | samples | C2ST AUROC | guard AUROC | guard accepts | accepted called fake "
        "(P>0.9) | real FRR |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        acf = (
            "n/a (none accepted)"
            if r["accepted_called_fake"] is None
            else (f"{r['accepted_called_fake']:.3f} of {r['n_accepted']}")
        )
        lines.append(
            f"| {name} | {r['n_generated']} | {r['c2st_auroc']:.3f} | {r['guard_auroc']:.3f} | "
            f"{r['guard_accept_rate']:.3f} | {acf} | {r['real_frr']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Command line (see the module docstring)."""
    from safegen_guard.data import load_dataset
    from safegen_guard.viz import overlay_grid, save_png

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.realism", description=__doc__.split("\n")[0]
    )
    p.add_argument("--guard", required=True, help="a saved guard folder")
    p.add_argument("--checkpoint", action="append", required=True, help="generator checkpoint(s)")
    p.add_argument("--data", default="mni152", help="the real data the generators trained on")
    p.add_argument("-n", type=int, default=256, help="samples per generator")
    p.add_argument("--real-variants", type=int, default=8, help="draws per real test slice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results_realism")
    p.add_argument(
        "--views",
        default=None,
        help="comma-separated views: judge as a guard calibrated with only these (the guard "
        "must have been fitted with them); default the guard as saved",
    )
    args = p.parse_args(argv)
    views = args.views.split(",") if args.views else None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    guard = Guard.load(args.guard)
    size = guard.config.image_size
    half = max(1, args.real_variants // 2)
    real = torch.cat(
        [
            load_dataset(
                args.data, "test", size, variants=half, augment=True, seed=args.seed + 2
            ).images,
            load_dataset(args.data, "test", size, variants=half, seed=args.seed + 3).images,
        ]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for ckpt in args.checkpoint:
        name = Path(ckpt).stem
        x = sample_checkpoint(ckpt, args.n, args.seed, size)
        results[name] = evaluate_generated(guard, real, x, seed=args.seed, views=views)
        verdict = guard.evaluate(x[:16])
        save_png(overlay_grid(x[:16], verdict, ncol=8), out / f"samples_{name}.png")
        log.info("%s: %s", name, results[name])
    atomic_write_json(out / "realism.json", results)
    atomic_write_text(out / "realism.md", realism_markdown(results))
    print(realism_markdown(results))
    return results


if __name__ == "__main__":
    main()

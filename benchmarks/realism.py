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

With ``--batch-test`` the batch realism test (:mod:`safegen_guard.adaptive`) also judges the
generated set as one batch against real training slices (whole slices kept on one side of its
split), and the real test slices as a batch of their own (its false-reject rate on real
held-out scans): ``batch_reject_rate``, ``batch_real_frr``, and the guard and the batch test
together (each at half the guard's false-reject rate, so that together they keep it; a sample
is accepted when both accept it): ``combined_accept_rate``,
``combined_accepted_called_fake``, ``combined_real_frr``.

``--c2st-real train`` runs the C2ST against fresh acquisition draws of the generator's own
training slices instead of the test slices: on one template (MNI152) the test slices are other
positions of the same brain, and the C2ST tells real test from real training slices at AUROC
0.91, so "called fake against test" partly means "looks like a training slice".

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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``([B] severity, [B] unsafe, [B] p-value)`` of the guard (or of only ``views``)."""
    if views is None:
        v = guard.evaluate(x)
        return v.score, v.unsafe, v.p_value.double()
    from benchmarks.preparations import view_columns

    columns = view_columns(guard, views)
    stats, cond = guard.view_statistics(x)
    d = guard.calibrator.decide(stats, cond, columns=columns)
    return d["severity"].float(), d["unsafe"], d["p_value"].double()


def evaluate_generated(
    guard: Guard,
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    folds: int = 5,
    seed: int = 0,
    views: list[str] | None = None,
    c2st_real: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    reference_groups: torch.Tensor | None = None,
    batch_steps: int = 100,
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
        c2st_real: Real images the C2ST compares with (default ``real``).
        reference: Real training images for the batch realism test
            (:func:`~safegen_guard.adaptive.batch_realism_test`); ``None`` skips it.
        reference_groups: ``[N]`` slice/subject group of each reference image.
        batch_steps: Classifier steps of the batch test.

    Returns:
        The figures listed in the module docstring, plus ``n_real``, ``n_generated``.
    """
    (s_real, u_real, p_real), (s_gen, u_gen, p_gen) = (
        _decisions(guard, real, views),
        _decisions(guard, generated, views),
    )
    c2st_ref = real if c2st_real is None else c2st_real
    c2st = classifier_two_sample_test(c2st_ref, generated, folds=folds, seed=seed)
    y = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    severity = torch.cat([s_real, s_gen]).clamp_max(1e6).numpy()
    accepted = ~u_gen.numpy()
    fake = c2st.p_fake_generated > CALLED_FAKE
    extra: dict = {}
    if reference is not None:
        alpha = float(guard.config.false_reject_rate)
        extra = _batch_test(
            generated, real, reference, reference_groups, p_gen, p_real, alpha, fake,
            batch_steps, seed,
        )  # fmt: skip
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
        **extra,
    }


def _batch_test(
    generated: torch.Tensor,
    real: torch.Tensor,
    reference: torch.Tensor,
    groups: torch.Tensor | None,
    p_gen: torch.Tensor,
    p_real: torch.Tensor,
    alpha: float,
    fake: np.ndarray,
    steps: int,
    seed: int,
) -> dict:
    """Batch test on the generated and on the real test batch, and guard + batch test.

    The batch test alone runs at the guard's ``alpha``. The combination keeps the guard's
    false-reject rate by splitting it (Bonferroni): a sample is rejected when the guard's
    p-value or the batch test's is ``<= alpha / 2``, so real scans are rejected at most
    ``alpha`` of the time.
    """
    from safegen_guard.adaptive import batch_realism_test

    on_gen = batch_realism_test(generated, reference, groups=groups, steps=steps, seed=seed)
    on_real = batch_realism_test(real, reference, groups=groups, steps=steps, seed=seed + 1)
    half = alpha / 2
    u_gen = (p_gen <= half) | (on_gen.p_value <= half)
    u_real = (p_real <= half) | (on_real.p_value <= half)
    both = ~u_gen.numpy()
    return {
        "batch_separability": round(on_gen.separability, 3),
        "batch_reject_rate": round(float(on_gen.rejected.float().mean()), 3),
        "batch_real_frr": round(float(on_real.rejected.float().mean()), 3),
        "combined_accept_rate": round(float(both.mean()), 3),
        "combined_accepted_called_fake": (
            round(float(fake[both].mean()), 3) if both.any() else None
        ),
        "combined_n_accepted": int(both.sum()),
        "combined_real_frr": round(float(u_real.float().mean()), 3),
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
    batch = {n: r for n, r in results.items() if "batch_reject_rate" in r}
    if batch:
        lines += [
            "",
            "| generator | batch test rejects | batch test real FRR | guard + batch test accept "
            "| accepted called fake (P>0.9) | real FRR (guard or batch test) |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in batch.items():
            acf = r["combined_accepted_called_fake"]
            acf = (
                "n/a (none accepted)" if acf is None else f"{acf:.3f} of {r['combined_n_accepted']}"
            )
            lines.append(
                f"| {name} | {r['batch_reject_rate']:.3f} | {r['batch_real_frr']:.3f} | "
                f"{r['combined_accept_rate']:.3f} | {acf} | {r['combined_real_frr']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def _draws(
    data: str, split: str, size: int, variants: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, positions)`` of real slices of ``split``, half augmented, half plain.

    ``variants`` augmented draws of every slice (seed ``seed``), then ``variants`` plain
    acquisition draws (seed ``seed + 1``).
    """
    from safegen_guard.data import load_dataset

    parts = [
        load_dataset(data, split, size, variants=variants, augment=aug, seed=seed + k)
        for k, aug in ((0, True), (1, False))
    ]
    return torch.cat([p.images for p in parts]), torch.cat([p.positions for p in parts])


def main(argv: list[str] | None = None) -> dict:
    """Command line (see the module docstring)."""
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
        "--batch-test",
        action="store_true",
        help="also run the batch realism test against real training slices",
    )
    p.add_argument(
        "--c2st-real",
        choices=("test", "train"),
        default="test",
        help="real images of the C2ST: the test slices, or fresh draws of the training slices",
    )
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
    real, _ = _draws(args.data, "test", size, half, args.seed + 2)
    reference = groups = c2st_real = None
    if args.batch_test:
        reference, groups = _draws(args.data, "train", size, half, args.seed + 10)
    if args.c2st_real == "train":
        c2st_real, _ = _draws(args.data, "train", size, 1, args.seed + 20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for ckpt in args.checkpoint:
        name = Path(ckpt).stem
        x = sample_checkpoint(ckpt, args.n, args.seed, size)
        results[name] = evaluate_generated(
            guard,
            real,
            x,
            seed=args.seed,
            views=views,
            c2st_real=c2st_real,
            reference=reference,
            reference_groups=groups,
        )
        verdict = guard.evaluate(x[:16])
        save_png(overlay_grid(x[:16], verdict, ncol=8), out / f"samples_{name}.png")
        log.info("%s: %s", name, results[name])
    atomic_write_json(out / "realism.json", results)
    atomic_write_text(out / "realism.md", realism_markdown(results))
    print(realism_markdown(results))
    return results


if __name__ == "__main__":
    main()

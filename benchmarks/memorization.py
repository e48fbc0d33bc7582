"""Memorization benchmark: near-copies, a 10^6-entry index, and generators that memorize.

Run: ``python -m benchmarks.memorization {copies,scale,generators} [options]``; each part
prints JSON and writes it to ``--out`` (default ``benchmarks/results/memorization_<part>.json``).

- ``copies``: a :class:`~safegen_guard.memorization.MemorizationIndex` is fitted on a data
  set's ``train`` split (null: ``val`` split, 8 acquisition draws per slice). Near-copies are
  training slices with acquisition-level Rician noise, shifts <= 3 px, rotations <= 5 degrees,
  mirrors and gamma jitter (``perturb_copies``); real held-out images are the ``test`` split
  (other slices, or other subjects for CT) with fresh acquisition draws. Reports AUROC, the
  detection rate and the false "memorized" rate at each alpha, and how often the nearest
  training image is the copied one.
- ``scale``: ``N`` random unit-norm embeddings (synthetic; timing only) in the product's
  index (:func:`build_knn`: IVF beyond 10^5 training images): build time, memory, per-query
  time (batched and one by one, ``--threads`` faiss threads) and recall@1 against exact
  search, for near-duplicate and for fresh random queries.
- ``generators``: DDPM runs of ``python -m generators.train`` (e.g. one with ``--subset 16``,
  one on the full split): each run's samples are checked against an index of its own training
  images; reports copy rates and writes a figure of samples beside their nearest training
  image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from safegen_guard.data import load_dataset
from safegen_guard.io import atomic_write_json
from safegen_guard.memorization import (
    MemorizationConfig,
    MemorizationIndex,
    build_knn,
    perturb_copies,
    search_knn,
)
from safegen_guard.memorization.knn import IVF_THRESHOLD

RESULTS = Path("benchmarks/results")


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def copies(
    data: str, size: int, alphas: tuple[float, ...], draws: int, seed: int, steps: int | None
) -> dict:
    """Near-copy detection against real held-out images for one data set."""
    config = MemorizationConfig(seed=seed)
    if steps is not None:
        config = MemorizationConfig.from_dict(
            {**config.to_dict(), "encoder": {**config.encoder.to_dict(), "steps": steps}}
        )
    t0 = time.perf_counter()
    index = MemorizationIndex.fit(data, size=size, config=config, progress=False)
    fit_s = time.perf_counter() - t0
    train = index.images.float()
    source = torch.arange(len(train)).repeat(draws)
    near = perturb_copies(train[source], torch.Generator().manual_seed(seed + 100))
    held = load_dataset(data, "test", size, variants=4, seed=seed + 7).images
    t0 = time.perf_counter()
    c = index.check(near)
    check_ms = 1000 * (time.perf_counter() - t0) / len(near)
    h = index.check(held)
    y = np.r_[np.ones(len(near)), np.zeros(len(held))]
    out = {
        "data": data,
        "size": size,
        "training_images": len(train),
        "null_images": int(index.null.numel()),
        "near_copies": len(near),
        "heldout_images": len(held),
        "auroc": float(roc_auc_score(y, torch.cat([c.similarity, h.similarity]).numpy())),
        "nearest_is_source": float((c.nearest_index == source).float().mean()),
        "fit_s": round(fit_s, 1),
        "check_ms_per_image": round(check_ms, 2),
        "by_alpha": {},
    }
    for alpha in alphas:
        index.with_config(alpha=alpha)
        t = index.threshold
        out["by_alpha"][str(alpha)] = {
            "threshold": t,
            "detection_rate": float((c.similarity > t).float().mean()),
            "false_memorized_rate": float((h.similarity > t).float().mean()),
        }
    return out


def scale(
    n: int,
    dim: int,
    queries: int,
    nprobe: int,
    seed: int,
    threads: int,
    ivf_threshold: int = IVF_THRESHOLD,
) -> dict:
    """Build and query the product's index (:func:`build_knn`) over ``n`` synthetic embeddings.

    The embeddings are random unit vectors of the copy encoder's dimension (timing and memory
    do not depend on their content; IVF recall on unstructured data is a worst case). Two query
    sets: near-duplicates of indexed rows (what a copy looks like: the row plus noise of norm
    about 0.3) and fresh random unit vectors (a sample that copies nothing). Recall@1 of each
    is measured against exact search (``IndexFlatIP``) on the first 200 queries.
    """
    import faiss

    before = (faiss.omp_get_max_threads(), torch.get_num_threads())
    faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)
    try:  # restore the caller's thread counts: later fits in the process depend on them
        return _scale(n, dim, queries, nprobe, seed, ivf_threshold)
    finally:
        faiss.omp_set_num_threads(before[0])
        torch.set_num_threads(before[1])


def _scale(n: int, dim: int, queries: int, nprobe: int, seed: int, ivf_threshold: int) -> dict:
    import faiss

    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    rows_q = torch.randint(0, n, (queries,), generator=g)
    near = torch.nn.functional.normalize(
        emb[rows_q] + 0.3 * torch.randn(queries, dim, generator=g) / dim**0.5, dim=1
    )
    fresh = torch.nn.functional.normalize(torch.randn(queries, dim, generator=g), dim=1)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = build_knn(emb, ivf_threshold=ivf_threshold, nprobe=nprobe, seed=seed)
    build_s = time.perf_counter() - t0
    index_mb = _rss_mb() - rss0
    out = {
        "entries": n,
        "dim": dim,
        "embeddings": "random unit vectors (synthetic; timing only)",
        "index": type(index).__name__,
        "nlist": getattr(index, "nlist", None),
        "nprobe": nprobe,
        "k": 8,
        "threads": faiss.omp_get_max_threads(),
        "build_s": round(build_s, 1),
        "index_memory_mb": round(index_mb, 1),
        "embeddings_mb": round(n * dim * 4 / 2**20, 1),
    }
    exact = faiss.IndexFlatIP(dim)
    exact.add(np.ascontiguousarray(emb.numpy()))
    for name, q in (("near_duplicate", near), ("fresh_random", fresh)):
        t0 = time.perf_counter()
        _, rows = search_knn(index, q, 8)
        batched_ms = 1000 * (time.perf_counter() - t0) / queries
        single = []
        for i in range(min(queries, 200)):
            t0 = time.perf_counter()
            search_knn(index, q[i : i + 1], 8)
            single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, truth = exact.search(np.ascontiguousarray(q[:200].numpy()), 1)
        exact_ms = 1000 * (time.perf_counter() - t0) / 200
        out[name] = {
            "queries": queries,
            "query_ms_batched": round(batched_ms, 3),
            "query_ms_single_median": round(1000 * float(np.median(single)), 3),
            "query_ms_single_p95": round(1000 * float(np.percentile(single, 95)), 3),
            "exact_search_ms_batched": round(exact_ms, 3),
            "recall_at_1_vs_exact": float((rows[:200, 0].numpy() == truth[:, 0]).mean()),
        }
    out["near_duplicate"]["source_in_top_8"] = float(
        (rows_q[:200, None].numpy() == search_knn(index, near[:200], 8)[1].numpy()).any(1).mean()
    )
    return out


def _run_training_set(run: Path, data: str, size: int) -> torch.Tensor:
    """The images a ``generators.train`` run trained on (its ``subset.json`` if present)."""
    record = run / "subset.json"
    subset = json.loads(record.read_text()) if record.exists() else None
    train = load_dataset(subset["data"] if subset else data, "train", size)
    return (train.subset(subset["index"]) if subset else train).images


def _trained_steps(checkpoint: Path) -> int | None:
    """``global_step`` of a Lightning checkpoint (``None`` when it cannot be read safely)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # a checkpoint with non-tensor hyperparameters
        return None


def generators(
    runs: list[Path], data: str, size: int, n: int, steps: int, seed: int, figure: Path | None
) -> dict:
    """Copy rates of trained DDPM runs, each against an index of its own training images.

    Each run's index is fitted on exactly the images it trained on (``subset.json``), with the
    data set's ``val`` split (8 acquisition draws) as the null; ``n`` samples are drawn with a
    fixed seed. ``heldout_false_rate`` is the share of real ``test`` images (4 draws) the same
    index calls memorized: what ``copy_rate`` is for a generator that copies nothing.
    """
    from generators.ddpm import DDPMModule

    out, panels = {}, []
    held = load_dataset(data, "val", size, variants=8, seed=seed + 1).images
    test = load_dataset(data, "test", size, variants=4, seed=seed + 7).images
    for run in runs:
        train = _run_training_set(run, data, size)
        index = MemorizationIndex.fit(train, held, config=MemorizationConfig(seed=seed))
        ckpt = run / "checkpoints" / "last.ckpt"
        module = DDPMModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
        with torch.no_grad():
            x = module.sample(n, torch.Generator().manual_seed(seed), num_inference_steps=steps)
        x = x.float().clamp(0, 1)
        r = index.check(x)
        copied = r.nearest_index[r.memorized]
        out[run.name] = {
            "training_images": len(train),
            "trained_steps": _trained_steps(ckpt),
            "samples": n,
            "copy_rate": float(r.memorized.float().mean()),
            "heldout_false_rate": float(index.check(test).memorized.float().mean()),
            "median_similarity": float(r.similarity.median()),
            "threshold": r.threshold,
            "distinct_training_images_copied": int(copied.unique().numel()),
        }
        # samples spread over the similarity ranking (most similar first), not only the top
        order = torch.argsort(r.similarity, descending=True)
        pick = order[torch.linspace(0, n - 1, min(n, 6)).round().long()]
        panels.append(
            (run.name, x[pick], train[r.nearest_index[pick]], r.similarity[pick], r.memorized[pick])
        )
    if figure is not None:
        _figure(panels, figure)
    return out


def _figure(panels: list, path: Path) -> None:
    """Per run: a row of samples (most to least similar) above their nearest training image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(p[1]) for p in panels)
    fig, axes = plt.subplots(
        len(panels) * 2, cols, figsize=(1.2 * cols, 2.75 * len(panels)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for p, (name, samples, nearest, sims, memorized) in enumerate(panels):
        for j in range(len(samples)):
            tag = "COPY" if bool(memorized[j]) else "not a copy"
            top, bottom = axes[2 * p, j], axes[2 * p + 1, j]
            top.imshow(samples[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            top.set_title(f"{tag}\nsim {float(sims[j]):.3f}", fontsize=6)
            bottom.imshow(nearest[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            bottom.set_title("nearest training", fontsize=6)
        axes[2 * p, 0].text(
            -0.15, 0.5, name, transform=axes[2 * p, 0].transAxes, rotation=90,
            ha="right", va="center", fontsize=7,
        )  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Command line; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memorization")
    p.add_argument("part", choices=["copies", "scale", "generators"])
    p.add_argument("--data", nargs="+", default=["mni152", "ct_phantom"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--alpha", type=float, nargs="+", default=[0.01, 0.05])
    p.add_argument("--draws", type=int, default=4, help="near-copies per training image")
    p.add_argument("--encoder-steps", type=int, default=None)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="faiss/torch threads (scale)")
    p.add_argument("--runs", type=Path, nargs="*", default=[])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--sampling-steps", type=int, default=50)
    p.add_argument("--figure", type=Path, default=Path("docs/figures/memorization_samples.png"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.part == "copies":
        result = {
            d: copies(d, args.size, tuple(args.alpha), args.draws, args.seed, args.encoder_steps)
            for d in args.data
        }
    elif args.part == "scale":
        result = scale(args.entries, args.dim, args.queries, args.nprobe, args.seed, args.threads)
    else:
        result = generators(
            args.runs,
            args.data[0],
            args.size,
            args.samples,
            args.sampling_steps,
            args.seed,
            args.figure,
        )
    out = args.out or RESULTS / f"memorization_{args.part}.json"
    atomic_write_json(out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

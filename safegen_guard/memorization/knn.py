"""Nearest-neighbour search over unit-norm embeddings with faiss (no hand-written index).

Exact inner-product search (``IndexFlatIP``) up to ``ivf_threshold`` entries; beyond it an
inverted-file index (``IndexIVFFlat``, inner product, ``sqrt(N)`` lists trained on
``40 sqrt(N)`` rows, ``nprobe`` lists visited per query), which answers a query from a
10^6-entry index in milliseconds on two CPU cores (see ``docs/memorization.md``). The index
is never serialised: it is rebuilt from the stored embeddings when a guard is loaded, so
only plain tensors reach disk.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["IVF_THRESHOLD", "build_knn", "search_knn"]

IVF_THRESHOLD = 100_000
"""Entries above which the approximate IVF index replaces exact search."""


def build_knn(
    embeddings: torch.Tensor,
    *,
    ivf_threshold: int = IVF_THRESHOLD,
    nprobe: int = 16,
    seed: int = 0,
):
    """Build a faiss inner-product index over ``embeddings`` ``[N, D]`` (float32, unit norm).

    Args:
        embeddings: ``[N, D]`` rows to index (``N >= 1``).
        ivf_threshold: Use exact search up to this many rows, IVF beyond.
        nprobe: Inverted lists visited per query (IVF only).
        seed: Seed of the IVF's k-means (IVF only).

    Returns:
        A ``faiss.Index`` answering inner-product queries.

    Raises:
        ValueError: not a non-empty 2-D tensor.
    """
    import faiss

    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"`embeddings` must be a non-empty [N, D] tensor, got {embeddings.shape}")
    data = np.ascontiguousarray(embeddings.detach().cpu().numpy(), dtype=np.float32)
    n, d = data.shape
    if n <= ivf_threshold:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = data[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
        index.cp.seed = seed
        index.train(sample)
        index.nprobe = nprobe
    index.add(data)
    return index


def search_knn(index, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar indexed rows of each query.

    Args:
        index: A faiss index from :func:`build_knn`.
        queries: ``[B, D]`` unit-norm embeddings.
        k: Neighbours per query (at most the index size).

    Returns:
        ``(similarity [B, k] float32, row [B, k] long)``, most similar first; rows are ``-1``
        where an approximate index found fewer than ``k``.
    """
    data = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
    sim, idx = index.search(data, int(min(k, index.ntotal)))
    return torch.from_numpy(sim), torch.from_numpy(idx).long()

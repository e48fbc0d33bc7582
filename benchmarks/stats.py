"""Paired statistics of SAFEGEN against a baseline on the same test images.

For one test cell (clean images ``C``, artifact-injected images ``A``), each anomalous image
``a`` gets a per-image AUROC contribution ``u(a) = #{c : s(c) < s(a)} + 0.5 #{c : s(c) = s(a)}``
divided by ``|C|``; the image AUROC is the mean of ``u`` (Mann-Whitney). Two methods scored on
the same images give paired ``u`` values, so

- ``scipy.stats.ttest_rel(u_safegen, u_baseline)`` tests "equal AUROC" paired over slices;
- a paired, stratified bootstrap (clean and anomalous images resampled separately, the same
  indices for both methods, fixed seed) gives a percentile CI of ``AUROC_safegen - AUROC_b``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

__all__ = ["auroc_contributions", "auroc", "paired_comparison"]


def auroc_contributions(clean: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Per-anomalous-image AUROC contributions ``u`` in ``[0, 1]`` (``mean(u)`` = AUROC)."""
    c = np.sort(np.asarray(clean, dtype=np.float64))
    a = np.asarray(anomalous, dtype=np.float64)
    lt = np.searchsorted(c, a, side="left")
    le = np.searchsorted(c, a, side="right")
    return (lt + 0.5 * (le - lt)) / len(c)


def auroc(clean: np.ndarray, anomalous: np.ndarray) -> float:
    """AUROC of anomalous (positive) vs clean (negative) scores (ties count one half)."""
    return float(auroc_contributions(clean, anomalous).mean())


def _finite(x: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    return np.nan_to_num(arr, nan=np.inf, posinf=1e300)


def paired_comparison(
    clean_a: torch.Tensor,
    anom_a: torch.Tensor,
    clean_b: torch.Tensor,
    anom_b: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Compare method ``a`` (SAFEGEN) with ``b`` on the same clean and anomalous images.

    Args:
        clean_a: ``[n0]`` scores of method ``a`` on clean images.
        anom_a: ``[n1]`` scores of method ``a`` on anomalous images.
        clean_b: the clean images scored by method ``b`` (same order).
        anom_b: the anomalous images scored by method ``b`` (same order).
        n_boot: Bootstrap resamples.
        seed: Seed of the bootstrap generator.
        confidence: CI level.

    Returns:
        ``auroc_a``, ``auroc_b``, ``auroc_diff`` (a - b), ``ci_low``, ``ci_high``,
        ``t_stat``, ``p_value`` (two-sided paired t-test over anomalous slices; ``None`` when
        the paired differences are all equal) and ``n_clean``, ``n_anomalous``.
    """
    ca, aa, cb, ab = (_finite(v) for v in (clean_a, anom_a, clean_b, anom_b))
    ua, ub = auroc_contributions(ca, aa), auroc_contributions(cb, ab)
    t = stats.ttest_rel(ua, ub) if len(ua) > 1 else None
    p = None if t is None or math.isnan(float(t.pvalue)) else float(t.pvalue)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        ic = rng.integers(0, len(ca), len(ca))
        ia = rng.integers(0, len(aa), len(aa))
        diffs[i] = auroc(ca[ic], aa[ia]) - auroc(cb[ic], ab[ia])
    lo, hi = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {
        "auroc_a": float(ua.mean()),
        "auroc_b": float(ub.mean()),
        "auroc_diff": float(ua.mean() - ub.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "t_stat": None if p is None else float(t.statistic),
        "p_value": p,
        "n_clean": int(len(ca)),
        "n_anomalous": int(len(aa)),
    }

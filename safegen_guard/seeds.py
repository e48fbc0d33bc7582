"""Seeds derived from names (a stable hash), never from positions in a registry.

A random stream is named by what it is for (``"explainer.distil"``) and, where it draws for
one artifact kind or severity, by that kind's and severity's names. Registering a new kind
therefore leaves every other kind's draws, and every number measured on them, unchanged.
Every seed convention of the project is defined here, once.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "BENCH_EXPLAIN_SELECT",
    "EXPLAINER_DISTIL",
    "EXPLAINER_REPORT",
    "EXPLAINER_SELECT",
    "INJECT_MIX",
    "TEST_SUITE_SEED",
    "derive_seed",
]

TEST_SUITE_SEED: int = 7
"""Base seed of the artifact test cells behind every published test number."""

EXPLAINER_DISTIL = "explainer.distil"
"""Stream of the artifact-injected *train* images that distil the explainer's predictor."""
EXPLAINER_SELECT = "explainer.select"
"""Stream of the *val* images with local artifacts that choose ``alpha`` and ``tau``."""
EXPLAINER_REPORT = "explainer.report"
"""Stream of the held-out *val* images of the explainer's fit report."""
BENCH_EXPLAIN_SELECT = "benchmark.explain_select"
"""Stream of the *val* images on which the explanation benchmark picks single-map thresholds."""
INJECT_MIX = "inject_mix"
"""Stream name under which :func:`~safegen_guard.explain.explainer.inject_mix` draws per kind."""

_SEED_BITS = 63  # torch.Generator.manual_seed takes any non-negative int below 2**64


def derive_seed(base: int, *names: str) -> int:
    """Return a seed that depends only on ``base`` and the ``names`` (order matters).

    The seed is the first 63 bits of the SHA-256 of ``base`` and the names, so it is the same
    on every machine, Python version and process (unlike ``hash``), and it does not change
    when other names are added anywhere else.

    Args:
        base: the caller's seed (e.g. a benchmark's ``--seed``).
        *names: what the stream is for, e.g. ``("artifact_suite", "ring", "mild")``.

    Returns:
        An int in ``[0, 2**63)``.

    Raises:
        TypeError: ``base`` is not an int, or a name is not a str.

    Example:
        >>> derive_seed(7, "artifact_suite", "ring", "mild") == derive_seed(
        ...     7, "artifact_suite", "ring", "mild")
        True
        >>> derive_seed(7, "ring") != derive_seed(7, "gibbs")
        True
    """
    if isinstance(base, bool) or not isinstance(base, int):
        raise TypeError(f"`base` must be an int, got {type(base).__name__} ({base!r})")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"seed names must be str, got {type(name).__name__} ({name!r})")
    key = "\x1f".join([str(base), *names]).encode()
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)

"""Memorization check: flag generated images that copy one of the generator's training images.

A copy of a real scan is perfectly realistic, so the realism views cannot see it; this package
can. :class:`MemorizationIndex` indexes the training images (copy-invariant embedding + faiss),
confirms candidates in pixel space after alignment, and calls a sample ``memorized`` when it is
closer to the training set than real images the generator never saw get (conformal, from real
held-out images only). See ``docs/memorization.md``.

Example:
    >>> from safegen_guard.memorization import MemorizationIndex
    >>> index = MemorizationIndex.fit("mni152", size=64)  # doctest: +SKIP
    >>> index.check(samples).memorized  # doctest: +SKIP
"""

from safegen_guard.memorization.align import AlignmentSearch, aligned_ncc
from safegen_guard.memorization.encoder import CopyEncoder, EncoderConfig, train_encoder
from safegen_guard.memorization.index import CopyCheck, MemorizationConfig, MemorizationIndex
from safegen_guard.memorization.knn import build_knn, search_knn
from safegen_guard.memorization.perturb import CopyPerturbation, perturb_copies

__all__ = [
    "AlignmentSearch",
    "CopyCheck",
    "CopyEncoder",
    "CopyPerturbation",
    "EncoderConfig",
    "MemorizationConfig",
    "MemorizationIndex",
    "aligned_ncc",
    "build_knn",
    "perturb_copies",
    "search_knn",
    "train_encoder",
]

"""Keep each quarantined copy beside the training image it copies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from safegen_guard.io import atomic_write_json
from safegen_guard.memorization.index import MemorizationIndex
from safegen_guard.verdict import Verdict
from safegen_guard.viz import save_png, to_uint8

__all__ = ["store_nearest"]


def store_nearest(
    index: MemorizationIndex, verdict: Verdict, paths: Sequence[Path | str]
) -> list[Path]:
    """Write the nearest training image of every memorized sample next to its quarantine file.

    For a sample quarantined as ``<stem>.png`` this writes ``<stem>_nearest_training.png`` (the
    training image it copies, 8-bit) and ``<stem>_nearest_training.json`` (its label, index
    and the copy p-value). The folder then holds training images: handle it like the
    training data.

    Args:
        index: The guard's memorization index.
        verdict: Verdicts of the quarantined samples, one per path, in the same order.
        paths: Quarantine PNG of each sample.

    Returns:
        The written training-image PNGs (memorized samples only).
    """
    written = []
    for i, path in enumerate(paths):
        k = int(verdict.nearest_index[i])
        if not bool(verdict.memorized[i]) or k < 0:
            continue
        stem = Path(path).with_suffix("")
        target = stem.with_name(stem.name + "_nearest_training")
        image = index.images[k, 0].float()
        written.append(save_png(to_uint8(image), target.with_suffix(".png")))
        atomic_write_json(
            target.with_suffix(".json"),
            {
                "sample": Path(path).name,
                "nearest_index": k,
                "nearest_training_file": index.labels[k],
                "copy_p_value": float(verdict.copy_p_value[i]),
            },
        )
    return written

"""Send verdict overlays to whatever Lightning loggers are attached (W&B, TensorBoard, CSV)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safegen_guard.verdict import Verdict
from safegen_guard.viz import overlay_grid, save_png, to_uint8, verdict_titles

__all__ = ["log_verdict_images", "TABLE_COLUMNS"]

TABLE_COLUMNS = ["index", "unsafe", "score", "p_value", "reasons", "mask_fraction", "image"]


def log_verdict_images(
    loggers: Iterable[Any],
    images: torch.Tensor,
    verdict: Verdict,
    *,
    step: int,
    key: str = "safegen",
    ncol: int = 4,
    suffix: str = "",
) -> list[str]:
    """Log an overlay grid of ``images`` to every logger that can take images.

    W&B (``WandbLogger``): the grid, each sample with its mask as a W&B mask overlay, and a
    ``wandb.Table`` of verdicts. TensorBoard: ``add_image`` of the grid. CSV: a PNG in
    ``<log_dir>/safegen/``. Other loggers are skipped.

    Args:
        loggers: ``trainer.loggers``.
        images: ``[B, 1, H, W]`` float images in ``[0, 1]`` (NaN allowed).
        verdict: verdicts of the ``B`` images.
        step: global step for the logs.
        key: name prefix (``"<key>/worst"``, ``"<key>/verdicts"``).
        ncol: tiles per grid row.
        suffix: appended to CSV PNG names (``worst_<step><suffix>.png``) to keep them unique.

    Returns:
        The class names of the loggers that received images.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    grid = overlay_grid(images, verdict, ncol=ncol)
    used = []
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            _log_wandb(logger, images, verdict, grid, step=step, key=key)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(f"{key}/worst", grid, step, dataformats="HWC")
        elif isinstance(logger, CSVLogger):
            save_png(
                grid, Path(logger.log_dir) / key.replace("/", "_") / f"worst_{step:08d}{suffix}.png"
            )
        else:
            continue
        used.append(type(logger).__name__)
    return used


def _log_wandb(
    logger: Any, images: torch.Tensor, verdict: Verdict, grid: np.ndarray, *, step: int, key: str
) -> None:
    import wandb

    titles = verdict_titles(verdict)
    gray = [to_uint8(images[i, 0]) for i in range(len(verdict))]
    masks = [
        {
            "anomaly": {
                "mask_data": verdict.mask[i, 0].numpy().astype(np.uint8),
                "class_labels": {1: "anomalous"},
            }
        }
        for i in range(len(verdict))
    ]
    logger.log_image(key=f"{key}/worst_grid", images=[grid], step=step)
    logger.log_image(key=f"{key}/worst", images=gray, step=step, caption=titles, masks=masks)
    rows = [
        [
            r["index"],
            r["unsafe"],
            str(r["score"]),
            r["p_value"],
            ",".join(r["reasons"]),
            r["mask_fraction"],
            wandb.Image(g),
        ]
        for r, g in zip(verdict.to_records(), gray)
    ]
    logger.log_table(key=f"{key}/verdicts", columns=TABLE_COLUMNS, data=rows, step=step)

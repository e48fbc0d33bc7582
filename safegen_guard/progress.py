"""A Lightning progress bar over the whole run: step n of the total, with an ETA."""

from __future__ import annotations

import sys
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from safegen_guard.validation import check_positive_int

__all__ = ["StepProgressBar"]


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole fit: ``training: 40%|####  | 120/300 [00:42<01:03, 2.85it/s]``.

    Lightning's default bar restarts every epoch (``Epoch 72: 8/12``), which says nothing about
    how much of a ``max_steps`` run is left. This bar counts optimizer steps across epochs up to
    ``trainer.estimated_stepping_batches`` and so shows the elapsed time and an ETA. A resumed
    run starts at the step it resumed from.

    Args:
        description: label in front of the bar.
        steps_per_batch: optimizer steps per training batch (2 for a GAN that steps its
            discriminator and generator on every batch); the bar then counts batches.
        refresh_rate: update the bar every N batches.
    """

    def __init__(
        self, description: str = "training", *, steps_per_batch: int = 1, refresh_rate: int = 1
    ) -> None:
        super().__init__(refresh_rate=check_positive_int(refresh_rate, "refresh_rate"))
        if not isinstance(description, str):
            raise TypeError(f"`description` must be a str, got {type(description).__name__}")
        self.description = description
        self.steps_per_batch = check_positive_int(steps_per_batch, "steps_per_batch")

    def _done(self, trainer: pl.Trainer) -> int:
        return trainer.global_step // self.steps_per_batch

    def _total(self, trainer: pl.Trainer) -> int | None:
        total = trainer.estimated_stepping_batches
        if total is None or total == float("inf"):
            return None
        return int(total) // self.steps_per_batch

    def init_train_tqdm(self) -> Tqdm:
        """The bar, sized to the whole run and starting at the current step."""
        return Tqdm(
            desc=self.description,
            total=self._total(self.trainer),
            initial=self._done(self.trainer),
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        """Keep the bar (the default one restarts at every epoch)."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any
    ) -> None:
        """Move the bar to the current step and show the logged metrics."""
        bar = self.train_progress_bar
        n = self._done(trainer)
        if bar is not None and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Show the metrics logged at the end of the epoch; the bar stays open."""
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

"""`SafeGenCallback`: score generator samples during Lightning training, log, quarantine, act."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from safegen_guard.guard import Guard
from safegen_guard.integrations._gather import gather_verdicts, lightning_all_gather
from safegen_guard.integrations.audit import (
    AuditLog,
    Quarantine,
    audit_invalid,
    new_run_id,
    recover,
)
from safegen_guard.integrations.callback_sampling import (
    SampleFn,
    local_count,
    sample_generator,
)
from safegen_guard.integrations.callback_sampling import mix_seed as _mix_seed
from safegen_guard.integrations.check_audit import write_check_audit
from safegen_guard.integrations.check_summary import summary_line
from safegen_guard.integrations.loggers import log_verdict_images
from safegen_guard.summary import summarize
from safegen_guard.validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_probability,
)
from safegen_guard.verdict import Verdict

__all__ = ["SafeGenCallback", "SampleFn", "summary_line"]

_MAX_HISTORY = 1000


class SafeGenCallback(Callback):
    """Periodically sample the generator being trained and judge the samples with a guard.

    Each check: every rank draws its share of ``num_samples`` (seeded by ``seed``, rank and
    check index) in ``eval()`` under ``no_grad`` (train/eval modes are restored), the guard
    scores them, results are all-gathered, and every rank logs the same ``<prefix>/*``
    metrics through ``pl_module.log``: ``unsafe_rate``, ``score_mean``, ``score_p95`` (over
    finite images), ``reason/<name>`` counts and ``errors``. Rank zero logs an overlay grid of
    the ``num_images`` worst samples to every attached image-capable logger, stores unsafe
    samples in ``quarantine_dir`` and appends every verdict to the JSONL audit log. With a
    memorization index on the guard it also logs ``memorized_rate`` and stores each copy
    with its nearest training image beside it (``<name>_nearest_training.png``).

    Schedule: a check runs every ``every_n_steps`` training batches (batches, not
    ``global_step``) and/or at the end of validation in every ``every_n_epochs``-th epoch
    (never in the sanity check; at train-epoch end when the run has no validation). With the
    defaults (epoch checks only) ``ModelCheckpoint(monitor="safegen/unsafe_rate")`` and
    ``EarlyStopping`` work as is; with step checks use ``ModelCheckpoint(every_n_train_steps=
    k * every_n_steps)`` and a ``log_every_n_steps`` that divides ``every_n_steps``.

    An exception inside a check is counted (``<prefix>/errors``), warned about once per kind,
    and training continues; ``strict=True`` re-raises. NaN samples become ``non_finite``
    verdicts.

    Args:
        guard: a fitted :class:`~safegen_guard.guard.Guard`, identical on every rank.
        every_n_steps: check every N training batches; ``None`` (default) disables.
        every_n_epochs: check at validation end every N epochs (default 1); ``None`` disables.
        num_samples: images per check across all ranks (default 16).
        sample_fn: ``sample_fn(pl_module, n, generator) -> [n, C, H, W]`` in ``[0, 1]``;
            default calls ``pl_module.sample(n, generator)``.
        seed: base seed; samples are reproducible per (seed, rank, check index).
        num_images: worst samples shown in the logged grid (0 disables image logging).
        quarantine_dir: folder for unsafe samples (PNG + verdict JSON); ``None`` disables.
        audit_log: JSONL audit file; default ``<quarantine_dir>/audit.jsonl`` if
            ``quarantine_dir`` is set, else none.
        max_unsafe_rate: bound on ``unsafe_rate`` in ``[0, 1]``; ``None`` disables actions.
        patience: consecutive checks above the bound before acting.
        on_exceed: ``"warn"`` or ``"stop"`` (sets ``trainer.should_stop``, agreed by all ranks).
        strict: re-raise exceptions from inside the callback.
        prefix: metric / logger key prefix (distinct per instance when several coexist).
        verbose: one summary line per check on rank zero (unsafe count and rate, score mean
            and p95, reasons), printed above the progress bar, or logged with
            ``rank_zero_info`` (the ``lightning.pytorch`` logger) when there is none.
        batch_reference: real images ``[N, C, H, W]`` in ``[0, 1]`` prepared like the
            generator's training data; when given, every check also runs the batch realism
            test (:func:`~safegen_guard.adaptive.batch_realism_test`) on the check's finite
            samples and logs ``batch_separability`` (AUROC of a classifier trained on the
            batch itself: 0.5 looks real, 1.0 recognisably generated) and
            ``batch_reject_rate``. Use ``num_samples`` of 64 or more; it costs one small
            classifier training per check.
        batch_groups: ``[N]`` slice or subject of each reference image (kept on one side of
            the test's split; e.g. ``SliceDataset.positions``).
        batch_steps: classifier steps of the batch test.

    Example:
        >>> cb = SafeGenCallback(guard, quarantine_dir="quarantine")  # doctest: +SKIP
        >>> pl.Trainer(callbacks=[cb]).fit(generator_module)  # doctest: +SKIP
    """

    def __init__(
        self,
        guard: Guard,
        *,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        num_samples: int = 16,
        sample_fn: SampleFn | None = None,
        seed: int = 0,
        num_images: int = 8,
        quarantine_dir: str | os.PathLike | None = None,
        audit_log: str | os.PathLike | None = None,
        max_unsafe_rate: float | None = None,
        patience: int = 1,
        on_exceed: str = "warn",
        strict: bool = False,
        prefix: str = "safegen",
        verbose: bool = True,
        batch_reference: torch.Tensor | None = None,
        batch_groups: torch.Tensor | None = None,
        batch_steps: int = 100,
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"`guard` must be a safegen_guard.Guard, got {type(guard).__name__}")
        _check_optional_int(every_n_steps, "every_n_steps")
        _check_optional_int(every_n_epochs, "every_n_epochs")
        if every_n_steps is None and every_n_epochs is None:
            raise ValueError("at least one of `every_n_steps` and `every_n_epochs` must be set")
        if sample_fn is not None and not callable(sample_fn):
            raise TypeError(f"`sample_fn` must be callable, got {type(sample_fn).__name__}")
        for path, pname in ((quarantine_dir, "quarantine_dir"), (audit_log, "audit_log")):
            if path is not None and not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"`{pname}` must be a path or None, got {type(path).__name__}")
        if max_unsafe_rate is not None:
            check_probability(max_unsafe_rate, "max_unsafe_rate", open_interval=False)
        if not isinstance(strict, bool):
            raise TypeError(f"`strict` must be a bool, got {type(strict).__name__}")
        if not isinstance(verbose, bool):
            raise TypeError(f"`verbose` must be a bool, got {type(verbose).__name__}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"`prefix` must be a non-empty str, got {prefix!r}")
        if batch_reference is not None:
            check_images(batch_reference, name="batch_reference", channels=None)
        self.batch_reference, self.batch_groups = batch_reference, batch_groups
        self.batch_steps = check_positive_int(batch_steps, "batch_steps")
        self.guard = guard
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.sample_fn = sample_fn
        self.seed = check_positive_int(seed, "seed", allow_zero=True)
        self.num_images = check_positive_int(num_images, "num_images", allow_zero=True)
        self.max_unsafe_rate = max_unsafe_rate
        self.patience = check_positive_int(patience, "patience")
        self.on_exceed = check_choice(on_exceed, "on_exceed", ("warn", "stop"))
        self.strict = strict
        self.prefix = prefix
        self.verbose = verbose
        self.quarantine = Quarantine(quarantine_dir) if quarantine_dir is not None else None
        if audit_log is None and quarantine_dir is not None:
            audit_log = Path(quarantine_dir) / "audit.jsonl"
        self.audit = AuditLog(audit_log, guard.fingerprint) if audit_log is not None else None
        self._reset_state()

    def _reset_state(self) -> None:
        self.checks = 0
        self.batches = 0
        self.consecutive = 0
        self.checked_epoch = -1
        self.errors_by_kind: dict[str, int] = {}
        self.history: list[dict[str, Any]] = []
        self._warned: set[str] = set()

    @property
    def state_key(self) -> str:
        """Unique per configuration, so several instances can be saved in one checkpoint."""
        return self._generate_state_key(
            prefix=self.prefix,
            every_n_steps=self.every_n_steps,
            every_n_epochs=self.every_n_epochs,
            num_samples=self.num_samples,
        )

    @property
    def errors(self) -> int:
        """Total exceptions caught inside this callback on this rank."""
        return sum(self.errors_by_kind.values())

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Fail fast when the module cannot be sampled (a configuration error, always raised).

        On rank zero, a new run id names this run's quarantined samples, and what a killed
        earlier run left half-done in the audit log and quarantine is finished
        (:func:`~safegen_guard.integrations.audit.recover`, logged as warnings).
        """
        if self.sample_fn is None and not callable(getattr(pl_module, "sample", None)):
            raise TypeError(
                f"SafeGenCallback needs `{type(pl_module).__name__}.sample(n, generator)` "
                "returning [n, C, H, W] in [0, 1], or a `sample_fn`; got neither"
            )
        if self.quarantine is not None:
            self.quarantine.run_id = new_run_id()
        if trainer.is_global_zero and self.audit is not None:
            self._guarded("recovery", recover, self.quarantine, self.audit)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember the check and batch counts, to tell at the end whether this fit checked."""
        self._fit_start = (self.checks, self.batches)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Warn when this fit ended without a single check: its samples were never judged.

        A schedule that never fires (``every_n_steps`` above the batches run, ``every_n_epochs``
        above the epochs run) must not pass for a clean run with no metrics. (A check that
        raised is counted in ``<prefix>/errors`` and warned about on its own.)
        """
        checks0, batches0 = getattr(self, "_fit_start", (0, 0))
        if self.checks > checks0:
            return
        rank_zero_warn(
            f"SafeGenCallback ran no check during this fit ({self.batches - batches0} training "
            f"batch(es), {trainer.current_epoch} epoch(s) done; every_n_steps="
            f"{self.every_n_steps}, every_n_epochs={self.every_n_epochs}): no "
            f"`{self.prefix}/*` metric was logged and no sample was judged; lower "
            "`every_n_steps` / `every_n_epochs` or train longer",
            category=RuntimeWarning,
        )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count the batch and run a check every ``every_n_steps`` batches."""
        self.batches += 1
        if self.every_n_steps is not None and self.batches % self.every_n_steps == 0:
            self._run_check(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Run the epoch check after validation (skipped in the sanity check)."""
        if self._epoch_due(trainer):
            self._run_check(trainer, pl_module, "validation")
            self.checked_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Run the epoch check here when no validation ran this epoch."""
        if self._epoch_due(trainer) and self.checked_epoch != trainer.current_epoch:
            self._run_check(trainer, pl_module, "train_epoch")
            self.checked_epoch = trainer.current_epoch

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state: counters, per-kind errors and the per-check history."""
        return {
            "checks": self.checks,
            "batches": self.batches,
            "consecutive": self.consecutive,
            "checked_epoch": self.checked_epoch,
            "errors_by_kind": dict(self.errors_by_kind),
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; missing keys fall back to defaults."""
        self.checks = int(state_dict.get("checks", 0))
        self.batches = int(state_dict.get("batches", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))
        self.checked_epoch = int(state_dict.get("checked_epoch", -1))
        self.errors_by_kind = dict(state_dict.get("errors_by_kind", {}))
        self.history = list(state_dict.get("history", []))

    # ---------------------------------------------------------------- helpers
    def _epoch_due(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking or self.every_n_epochs is None:
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _run_check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        step, index = trainer.global_step, self.checks
        self.checks += 1
        images, verdict = self._evaluate_local(trainer, pl_module, index)
        gathered = self._guarded(
            "gather", gather_verdicts, lightning_all_gather(pl_module), images, verdict,
            self.errors,
        )  # fmt: skip
        if gathered is None:
            return
        images, verdict, ranks, total_errors = gathered
        batch = None
        if self.batch_reference is not None and images is not None:
            batch = self._guarded("batch_test", self._batch_test, images, index)
        summary = self._guarded(
            "metrics", self._log_metrics, pl_module, verdict, stage, total_errors, batch
        )
        if summary is None or verdict is None:
            return
        self._append_history(summary, step, trainer.current_epoch, stage, index)
        if self.verbose and trainer.is_global_zero:
            self._announce(
                trainer, summary_line(summary, prefix=self.prefix, step=step, stage=stage)
            )
        if trainer.is_global_zero:
            self._guarded("images", self._log_images, trainer, images, verdict, step, index)
            self._guarded("audit", self._write_audit, images, verdict, ranks, step, index, stage)
        self._guarded("action", self._apply_action, trainer, summary["unsafe_rate"])

    @staticmethod
    def _announce(trainer: pl.Trainer, line: str) -> None:
        """Print ``line`` above an active progress bar (keeping it intact), else log it."""
        bar = trainer.progress_bar_callback
        if bar is not None and bar.is_enabled:
            bar.print(line)
        else:
            rank_zero_info(line)

    def _evaluate_local(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, index: int
    ) -> tuple[torch.Tensor | None, Verdict | None]:
        images = self._guarded("sampling", self._sample_batch, trainer, pl_module, index)
        if images is not None:
            images = self._guarded("invalid_samples", self._check_samples, images, trainer, index)
        verdict = (
            None if images is None else self._guarded("evaluation", self.guard.evaluate, images)
        )
        return (images, verdict) if verdict is not None else (None, None)

    def _guarded(self, kind: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn``; on exception count it, warn once per kind, return ``None`` (or re-raise)."""
        try:
            return fn(*args)
        except Exception as exc:
            if self.strict:
                raise
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
            if kind not in self._warned:
                self._warned.add(kind)
                warnings.warn(
                    f"SafeGenCallback: {kind} failed ({type(exc).__name__}: {exc}); training "
                    f"continues, counted in `{self.prefix}/errors` (strict=True re-raises)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return None

    def _local_count(self, trainer: pl.Trainer) -> int:
        return local_count(self.num_samples, trainer.world_size, trainer.global_rank)

    def _sample_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, index: int
    ) -> torch.Tensor | None:
        n = self._local_count(trainer)
        if n == 0:
            return None
        seed = _mix_seed(self.seed, trainer.global_rank, index)
        return sample_generator(pl_module, self.sample_fn, n, seed)

    def _check_samples(self, images: torch.Tensor, trainer: pl.Trainer, index: int) -> torch.Tensor:
        cfg = self.guard.config
        try:
            return check_images(
                images,
                name="generated samples",
                channels=cfg.channels,
                size=cfg.image_size,
                allow_non_finite=True,
            )
        except (TypeError, ValueError) as err:
            self._audit_invalid(images, err, trainer, index)
            raise

    def _audit_invalid(
        self, images: torch.Tensor, err: Exception, trainer: pl.Trainer, index: int
    ) -> None:
        """Keep samples the guard cannot judge (raw tensor in quarantine + one audit line)."""
        if self.audit is None:
            return
        run_id = self.quarantine.run_id if self.quarantine is not None else new_run_id()
        rank, step = trainer.global_rank, trainer.global_step
        audit_invalid(
            self.audit, self.quarantine, images, err,
            sample_id=f"{run_id}_step{step:08d}_check{index:05d}_rank{rank}_invalid",
            step=step, rank=rank, source="lightning", extra={"check": index},
        )  # fmt: skip

    def _batch_test(self, images: torch.Tensor, index: int) -> dict[str, float]:
        """Batch realism test of the check's finite samples (identical on every rank)."""
        from safegen_guard.adaptive import batch_realism_test

        x = images[torch.isfinite(images).flatten(1).all(1)].float().clamp(0, 1)
        if len(x) < 2:
            return {}
        result = batch_realism_test(
            x.cpu(),
            self.batch_reference,
            groups=self.batch_groups,
            alpha=self.guard.config.false_reject_rate,
            steps=self.batch_steps,
            seed=_mix_seed(self.seed, 0, index) % 2**31,
        )
        return {
            "batch_separability": result.separability,
            "batch_reject_rate": float(result.rejected.float().mean()),
        }

    def _log_metrics(
        self,
        pl_module: pl.LightningModule,
        verdict: Verdict | None,
        stage: str,
        errors: int,
        batch: dict[str, float] | None = None,
    ) -> dict[str, float]:
        names = ("non_finite", "memorized", *self.guard.detector.view_names)
        summary = {} if verdict is None else summarize(verdict, names)
        summary.update(batch or {})
        summary["errors"] = float(errors)
        on_step = stage == "train"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*sync_dist.*")
            for key, value in summary.items():
                pl_module.log(
                    f"{self.prefix}/{key}",
                    value,
                    on_step=on_step,
                    on_epoch=not on_step,
                    sync_dist=False,
                    batch_size=1,
                )
        return summary

    def _append_history(
        self, summary: dict[str, float], step: int, epoch: int, stage: str, index: int
    ) -> None:
        self.history.append(dict(summary, step=step, epoch=epoch, stage=stage, check=index))
        del self.history[:-_MAX_HISTORY]

    def _log_images(
        self, trainer: pl.Trainer, images: torch.Tensor, verdict: Verdict, step: int, index: int
    ) -> None:
        if self.num_images == 0 or not trainer.loggers:
            return
        worst = torch.argsort(verdict.score, descending=True, stable=True)[: self.num_images]
        log_verdict_images(
            trainer.loggers, images[worst], verdict.select(worst), step=step, key=self.prefix,
            suffix=f"_check{index:05d}",
        )  # fmt: skip

    def _write_audit(
        self,
        images: torch.Tensor,
        verdict: Verdict,
        ranks: list[int],
        step: int,
        index: int,
        stage: str,
    ) -> None:
        """Quarantine the unsafe samples, then append every verdict (see :mod:`.check_audit`)."""
        if self.audit is None:
            return
        write_check_audit(
            self.audit, self.quarantine, self.guard.memorization, images, verdict, ranks,
            step=step, index=index, stage=stage,
        )  # fmt: skip

    def _apply_action(self, trainer: pl.Trainer, unsafe_rate: float) -> None:
        if self.max_unsafe_rate is None:
            return
        exceeded = trainer.strategy.reduce_boolean_decision(
            bool(unsafe_rate > self.max_unsafe_rate), all=True
        )
        self.consecutive = self.consecutive + 1 if exceeded else 0
        if self.consecutive < self.patience:
            return
        action = "stopping training" if self.on_exceed == "stop" else "continuing"
        rank_zero_warn(
            f"SafeGenCallback: `{self.prefix}/unsafe_rate` = {unsafe_rate:.3f} exceeded "
            f"{self.max_unsafe_rate} for {self.consecutive} consecutive check(s); {action}"
        )
        if self.on_exceed == "stop":
            trainer.should_stop = True


def _check_optional_int(value: object, name: str) -> None:
    if value is not None:
        check_positive_int(value, name)

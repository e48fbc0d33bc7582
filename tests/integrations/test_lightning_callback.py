"""SafeGenCallback with a real Trainer on a tiny generator."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tiny_generator import TinyGenerator, loaders

from safegen_guard import SafeGenCallback
from safegen_guard.errors import InputValidationError
from safegen_guard.integrations.lightning import _mix_seed


def _trainer(tmp_path: Path, callbacks: list, **kw) -> pl.Trainer:
    opts = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=1,
    )
    opts.update(kw)
    return pl.Trainer(callbacks=callbacks, **opts)


def _noise_or_nan(pl_module, n, generator):
    """Half pure noise (anomalous for a brain-MRI guard), first image NaN."""
    x = torch.rand(n, 1, 32, 32, generator=generator)
    x[0] = float("nan")
    return x


def test_metrics_reach_callback_metrics_and_csv(tiny_guard, tmp_path):
    model = TinyGenerator()
    cb = SafeGenCallback(tiny_guard, every_n_steps=2, num_samples=4)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = _trainer(tmp_path, [cb], logger=logger, log_every_n_steps=1)
    trainer.fit(model, *loaders())
    # 4 batches/epoch: 2 step checks + 1 validation check per epoch; sanity check skipped.
    assert cb.checks == 6 and len(cb.history) == 6
    assert [h["stage"] for h in cb.history[:3]] == ["train", "train", "validation"]
    rate = trainer.callback_metrics["safegen/unsafe_rate"]
    assert 0.0 <= float(rate) <= 1.0 and float(rate) == pytest.approx(cb.history[-1]["unsafe_rate"])
    for key in ("score_mean", "score_p95", "errors", "reason/non_finite", "num_samples"):
        assert f"safegen/{key}" in trainer.callback_metrics
    assert float(trainer.callback_metrics["safegen/num_samples"]) == 4
    # sampling happened in eval mode without grad; training mode restored afterwards
    assert len(model.sample_calls) == 6
    assert all(not c["training"] and not c["grad"] for c in model.sample_calls)
    assert model.training and model.net[2].training
    rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
    steps = {int(r["step"]) for r in rows if r.get("safegen/unsafe_rate")}
    # first check after the 2nd batch of each epoch (logged step 1 and 5); Lightning repeats a
    # step value on later steps of the same epoch, so only the absence before the check is exact
    assert {1, 3, 5, 7} <= steps and not steps & {0, 4}
    pngs = sorted((Path(logger.log_dir) / "safegen").glob("worst_*.png"))
    assert len(pngs) == 6


def test_model_checkpoint_monitors_unsafe_rate(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, num_samples=4, sample_fn=_noise_or_nan)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="safegen/unsafe_rate", mode="min")
    trainer = _trainer(tmp_path, [cb, ckpt], enable_checkpointing=True)
    trainer.fit(TinyGenerator(), *loaders())
    assert ckpt.best_model_path and Path(ckpt.best_model_path).exists()
    rates = [h["unsafe_rate"] for h in cb.history]
    assert len(rates) == 2 and float(ckpt.best_model_score) == pytest.approx(min(rates))


def test_quarantine_and_audit_log(tiny_guard, tmp_path):
    qdir = tmp_path / "quarantine"
    cb = SafeGenCallback(tiny_guard, num_samples=6, sample_fn=_noise_or_nan, quarantine_dir=qdir)
    _trainer(tmp_path, [cb], max_epochs=1).fit(TinyGenerator(), *loaders())
    records = [json.loads(line) for line in open(qdir / "audit.jsonl")]
    assert len(records) == 6
    assert {r["guard_fingerprint"] for r in records} == {tiny_guard.fingerprint}
    assert {r["rank"] for r in records} == {0} and {r["step"] for r in records} == {4}
    assert records[0]["reasons"] == ["non_finite"] and records[0]["unsafe"]
    unsafe = [r for r in records if r["unsafe"]]
    assert sorted(p.name for p in qdir.glob("*.png")) == sorted(
        Path(r["quarantine_path"]).name for r in unsafe
    )
    assert all(r["quarantine_path"] is None for r in records if not r["unsafe"])
    for r in unsafe:
        side = json.loads(Path(r["quarantine_path"]).with_suffix(".json").read_text())
        assert side["image_sha256"] == r["image_sha256"] and side["p_value"] == r["p_value"]
    assert cb.history[-1]["unsafe_rate"] == pytest.approx(len(unsafe) / 6)


def test_nan_generator_gives_non_finite_verdicts(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, num_samples=4)
    trainer = _trainer(tmp_path, [cb], max_epochs=1)
    trainer.fit(TinyGenerator(mode="nan"), *loaders())
    m = trainer.callback_metrics
    assert float(m["safegen/unsafe_rate"]) == 1.0
    assert float(m["safegen/reason/non_finite"]) == 4
    assert float(m["safegen/errors"]) == 0 and math.isnan(float(m["safegen/score_mean"]))


@pytest.mark.parametrize(
    "schedule", [{"every_n_epochs": 3}, {"every_n_steps": 50, "every_n_epochs": None}]
)
def test_a_fit_without_a_single_check_warns(tiny_guard, tmp_path, schedule):
    model = TinyGenerator()
    cb = SafeGenCallback(tiny_guard, num_samples=2, **schedule)
    with pytest.warns(RuntimeWarning, match="ran no check during this fit") as record:
        _trainer(tmp_path, [cb], max_epochs=1).fit(model, *loaders())
    assert cb.checks == 0 and model.sample_calls == []
    assert any("4 training batch(es)" in str(w.message) for w in record)


def test_a_fit_with_checks_does_not_warn_about_missing_checks(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, num_samples=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer(tmp_path, [cb], max_epochs=1).fit(TinyGenerator(), *loaders())
    assert cb.checks == 1
    assert not [w for w in record if "ran no check" in str(w.message)]


def _boom(pl_module, n, generator):
    raise RuntimeError("sampler exploded")


def test_errors_are_counted_and_warned_once(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, every_n_steps=1, num_samples=2, sample_fn=_boom)
    trainer = _trainer(tmp_path, [cb], max_epochs=1)
    with pytest.warns(RuntimeWarning, match="sampling failed.*sampler exploded") as rec:
        trainer.fit(TinyGenerator(), *loaders())
    assert sum("sampling failed" in str(w.message) for w in rec) == 1
    assert cb.errors_by_kind == {"sampling": 5}  # 4 batches + 1 validation check
    assert float(trainer.callback_metrics["safegen/errors"]) == 5
    assert trainer.global_step == 4  # training finished


def test_strict_reraises(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, every_n_steps=1, sample_fn=_boom, strict=True)
    with pytest.raises(RuntimeError, match="sampler exploded"):
        _trainer(tmp_path, [cb], max_epochs=1).fit(TinyGenerator(), *loaders())


def test_wrong_sample_size_is_a_clear_error(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, num_samples=2)
    with pytest.warns(RuntimeWarning, match="invalid_samples failed.*must be 32x32.*got 16x16"):
        _trainer(tmp_path, [cb], max_epochs=1).fit(TinyGenerator(size=16), *loaders(size=16))
    assert cb.errors_by_kind == {"invalid_samples": 1}
    strict = SafeGenCallback(tiny_guard, num_samples=2, strict=True)
    with pytest.raises(InputValidationError, match="must be 32x32"):
        _trainer(tmp_path, [strict], max_epochs=1).fit(TinyGenerator(size=16), *loaders(size=16))


def test_missing_sample_protocol_raises_at_setup(tiny_guard, tmp_path):
    model = TinyGenerator()
    model.sample = None
    with pytest.raises(TypeError, match=r"needs `TinyGenerator.sample\(n, generator\)`"):
        _trainer(tmp_path, [SafeGenCallback(tiny_guard)]).fit(model, *loaders())


def test_stop_after_patience_consecutive_checks(tiny_guard, tmp_path):
    cb = SafeGenCallback(
        tiny_guard,
        every_n_steps=1,
        num_samples=2,
        max_unsafe_rate=0.5,
        patience=2,
        on_exceed="stop",
    )
    trainer = _trainer(tmp_path, [cb], max_epochs=3)
    with pytest.warns(UserWarning, match="exceeded 0.5 for 2 consecutive"):
        trainer.fit(TinyGenerator(mode="nan"), *loaders())
    assert trainer.global_step == 2 and cb.consecutive >= 2  # + the final validation check


def test_validate_under_inference_mode(tiny_guard, tmp_path):
    cb = SafeGenCallback(tiny_guard, num_samples=3)
    trainer = _trainer(tmp_path, [cb])
    trainer.validate(TinyGenerator(), loaders()[1])
    assert cb.checks == 1 and cb.errors == 0
    assert float(trainer.callback_metrics["safegen/num_samples"]) == 3


def test_seeding_is_reproducible_per_rank_and_check(tiny_guard, tmp_path):
    runs = []
    for _ in range(2):
        model = TinyGenerator()
        _trainer(tmp_path, [SafeGenCallback(tiny_guard, num_samples=2, seed=7)]).fit(
            model, *loaders()
        )
        runs.append([c["z"] for c in model.sample_calls])
    assert len(runs[0]) == 2 and not torch.equal(runs[0][0], runs[0][1])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert _mix_seed(7, 0, 0) != _mix_seed(7, 1, 0) != _mix_seed(8, 0, 0)


def test_resume_restores_state_and_instances_coexist(tiny_guard, tmp_path):
    a = SafeGenCallback(tiny_guard, num_samples=2)
    b = SafeGenCallback(tiny_guard, every_n_steps=2, num_samples=2, prefix="safegen_b")
    assert a.state_key != b.state_key
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, [a, b, ckpt], max_epochs=1, enable_checkpointing=True).fit(
        TinyGenerator(), *loaders()
    )
    assert (a.checks, b.checks, b.batches) == (1, 3, 4)  # b: 2 step checks + 1 epoch check
    a2 = SafeGenCallback(tiny_guard, num_samples=2)
    b2 = SafeGenCallback(tiny_guard, every_n_steps=2, num_samples=2, prefix="safegen_b")
    trainer = _trainer(tmp_path, [a2, b2], max_epochs=2)
    trainer.fit(TinyGenerator(), *loaders(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert (a2.checks, b2.checks, b2.batches) == (2, 6, 8)
    assert a2.history[0] == a.history[0] and len(b2.history) == 6
    assert "safegen_b/unsafe_rate" in trainer.callback_metrics
    a3 = SafeGenCallback(tiny_guard)
    a3.load_state_dict({"checks": 3})  # old/partial state still loads
    assert (a3.checks, a3.history, a3.errors) == (3, [], 0)


def test_tensorboard_receives_images(tiny_guard, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    cb = SafeGenCallback(tiny_guard, num_samples=4, num_images=3)
    _trainer(tmp_path, [cb], max_epochs=1, logger=logger).fit(TinyGenerator(), *loaders())
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0}).Reload()
    assert "safegen/worst" in acc.Tags()["images"]
    assert "safegen/unsafe_rate" in acc.Tags()["scalars"]


def test_wandb_offline_run_has_images_and_table(tiny_guard, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="safegen-test", save_dir=str(tmp_path / "wandb_dir"), offline=True)
    cb = SafeGenCallback(tiny_guard, num_samples=4, num_images=2, sample_fn=_noise_or_nan)
    try:
        _trainer(tmp_path, [cb], max_epochs=1, logger=logger).fit(TinyGenerator(), *loaders())
    finally:
        wandb.finish()
    runs = list((tmp_path / "wandb_dir").rglob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    pngs = list((media / "images").rglob("*.png"))
    assert len(pngs) >= 3  # grid + 2 worst samples (+ table image copies)
    tables = list((media / "table").rglob("*.table.json"))
    table = json.loads(tables[0].read_text())
    assert table["columns"][:3] == ["index", "unsafe", "score"] and len(table["data"]) == 2
    assert table["data"][0][1] is True  # the NaN sample is the worst and unsafe


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"every_n_steps": 0}, ValueError, "`every_n_steps` must be a positive int, got 0"),
        ({"every_n_steps": 1.5}, TypeError, "`every_n_steps` must be an int, got float"),
        ({"every_n_epochs": -1}, ValueError, "`every_n_epochs` must be a positive int, got -1"),
        ({"every_n_epochs": None}, ValueError, "at least one of `every_n_steps` and"),
        ({"num_samples": 0}, ValueError, "`num_samples` must be a positive int, got 0"),
        ({"num_images": -1}, ValueError, "`num_images` must be a non-negative int, got -1"),
        ({"seed": -3}, ValueError, "`seed` must be a non-negative int, got -3"),
        ({"sample_fn": 3}, TypeError, "`sample_fn` must be callable, got int"),
        ({"quarantine_dir": 5}, TypeError, "`quarantine_dir` must be a path or None, got int"),
        ({"audit_log": 5.0}, TypeError, "`audit_log` must be a path or None, got float"),
        ({"max_unsafe_rate": 1.5}, ValueError, r"`max_unsafe_rate` must be in \[0, 1\], got 1.5"),
        ({"patience": 0}, ValueError, "`patience` must be a positive int, got 0"),
        ({"on_exceed": "panic"}, ValueError, r"`on_exceed` must be one of \['warn', 'stop'\]"),
        ({"strict": "yes"}, TypeError, "`strict` must be a bool, got str"),
        ({"prefix": ""}, ValueError, "`prefix` must be a non-empty str, got ''"),
    ],
)
def test_constructor_validation(tiny_guard, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SafeGenCallback(tiny_guard, **kwargs)


def test_guard_type_is_checked():
    with pytest.raises(TypeError, match="`guard` must be a safegen_guard.Guard, got str"):
        SafeGenCallback("guard")


def test_one_summary_line_per_check(tiny_guard, tmp_path, caplog, capsys, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    cb = SafeGenCallback(tiny_guard, every_n_steps=2, num_samples=6, sample_fn=_noise_or_nan)
    _trainer(tmp_path, [cb], max_epochs=1).fit(TinyGenerator(), *loaders())
    lines = [r.getMessage() for r in caplog.records if "safegen check at step" in r.getMessage()]
    assert cb.checks == 3 and len(lines) == 3  # 2 step checks + 1 at validation end
    assert lines[0].startswith("safegen check at step 2 (train): ")
    assert lines[2].startswith("safegen check at step 4 (validation): ")
    unsafe = round(cb.history[0]["unsafe_rate"] * 6)
    assert f": {unsafe}/6 unsafe (" in lines[0] and "non_finite 1" in lines[0]
    caplog.clear()
    barred = SafeGenCallback(tiny_guard, num_samples=2)  # printed above the progress bar
    _trainer(tmp_path, [barred], max_epochs=1, enable_progress_bar=True).fit(
        TinyGenerator(), *loaders()
    )
    assert capsys.readouterr().out.count("safegen check at step 4 (validation): ") == 1
    quiet = SafeGenCallback(tiny_guard, num_samples=2, verbose=False)
    _trainer(tmp_path, [quiet], max_epochs=1).fit(TinyGenerator(), *loaders())
    assert quiet.checks == 1
    assert not [r for r in caplog.records if "check at step" in r.getMessage()]


def test_summary_line_text(tiny_guard):
    from safegen_guard.integrations.lightning import summary_line

    summary = {
        "unsafe_rate": 0.3125, "score_mean": 1.234, "score_p95": 2.9, "num_samples": 16.0,
        "memorized_rate": 0.0, "reason/recon": 2.0, "reason/texture": 4.0, "reason/ring": 0.0,
        "errors": 1.0,
    }  # fmt: skip
    assert summary_line(summary, prefix="safegen", step=120, stage="train") == (
        "safegen check at step 120 (train): 5/16 unsafe (31%), score mean 1.23 p95 2.90, "
        "reasons: texture 4, recon 2, errors 1"
    )
    with pytest.raises(TypeError, match="`verbose` must be a bool, got int"):
        SafeGenCallback(tiny_guard, verbose=1)


class _ImprovingGenerator(TinyGenerator):
    """Real slices under noise that shrinks at every check: always wrong, less wrong each time."""

    def __init__(self, real: torch.Tensor) -> None:
        super().__init__()
        self.real = real
        self.amplitudes = [0.8, 0.5, 0.3]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        amp = self.amplitudes[min(len(self.sample_calls), len(self.amplitudes) - 1)]
        self.sample_calls.append({"amplitude": amp})
        noise = torch.randn(n, *self.real.shape[1:], generator=generator)
        return (self.real[:n] + amp * noise).clamp(0, 1)


def test_score_p95_keeps_moving_while_everything_is_rejected(tiny_guard, tiny_real, tmp_path):
    model = _ImprovingGenerator(tiny_real["val"][:8])
    cb = SafeGenCallback(tiny_guard, every_n_epochs=1, num_samples=8)
    _trainer(tmp_path, [cb], max_epochs=3, num_sanity_val_steps=0).fit(model, *loaders())
    assert [h["unsafe_rate"] for h in cb.history] == [1.0, 1.0, 1.0]
    p95 = [h["score_p95"] for h in cb.history]
    assert p95[0] > p95[1] > p95[2] > -math.log10(tiny_guard.config.false_reject_rate), p95


def _bright_discs(pl_module, n, generator):
    """Bright uniform discs: locally smooth, globally unlike any real slice."""
    yy, xx = torch.meshgrid(torch.arange(32) - 16, torch.arange(32) - 16, indexing="ij")
    disc = ((yy**2 + xx**2) < 100).float()[None, None] * 0.9
    return (disc + 0.02 * torch.randn(n, 1, 32, 32, generator=generator)).clamp(0, 1)


def test_batch_realism_test_is_logged(tiny_guard, tiny_real, tmp_path):
    reference = torch.cat([tiny_real["train"], tiny_real["val"]])
    cb = SafeGenCallback(
        tiny_guard,
        every_n_epochs=1,
        num_samples=24,
        sample_fn=_bright_discs,
        batch_reference=reference,
        batch_steps=30,
        strict=True,
    )
    trainer = _trainer(tmp_path, [cb], max_epochs=1)
    trainer.fit(TinyGenerator(), *loaders())
    assert cb.checks == 1
    sep = float(trainer.callback_metrics["safegen/batch_separability"])
    rate = float(trainer.callback_metrics["safegen/batch_reject_rate"])
    assert sep > 0.9 and rate > 0.5  # a batch of identical discs is recognisably not real
    assert cb.history[-1]["batch_separability"] == pytest.approx(sep)
    with pytest.raises(ValueError):
        SafeGenCallback(tiny_guard, batch_reference=reference + 2.0)  # outside [0, 1]

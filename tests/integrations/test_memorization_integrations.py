"""The memorization check in the callback, the sampling filter and the diffusers wrapper."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from tiny_generator import TinyGenerator, loaders

from safegen_guard import Guard, SafeGenCallback, SafeGenFilter
from safegen_guard.memorization import MemorizationConfig
from safegen_guard.sampling import guarded_sample


@pytest.fixture(scope="module")
def copy_guard(tiny_guard, tiny_real, tmp_path_factory):
    """The session guard (reloaded, so it is not modified) with a tiny training-set index."""
    guard = Guard.load(tiny_guard.save(tmp_path_factory.mktemp("copy_guard") / "g"))
    train = tiny_real["train"][::2]  # one acquisition draw per training slice
    cfg = MemorizationConfig.profile("tiny", alpha=0.05, mark_unsafe=False)
    return guard.fit_memorization(train, tiny_real["val"], cfg)


def _copies_then_noise(train):
    def sample(*args):  # (pl_module, n, generator) or (n, generator)
        n = next(a for a in args if isinstance(a, int))
        g = args[-1]
        x = torch.rand(n, 1, 32, 32, generator=g)
        x[: n // 2] = train[: n // 2]
        return x

    return sample


def test_callback_logs_memorized_rate_and_quarantines_copies_beside_their_source(
    copy_guard, tiny_real, tmp_path
):
    train = copy_guard.memorization.images.float()
    qdir = tmp_path / "q"
    cb = SafeGenCallback(
        copy_guard, num_samples=6, sample_fn=_copies_then_noise(train), quarantine_dir=qdir
    )
    trainer = pl.Trainer(
        callbacks=[cb], max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(TinyGenerator(), *loaders())
    metrics = trainer.callback_metrics
    assert "safegen/memorized_rate" in metrics, (sorted(metrics), cb.history, cb.errors_by_kind)
    assert float(metrics["safegen/memorized_rate"]) == pytest.approx(0.5)
    assert cb.history[-1]["reason/memorized"] == 3
    sources = sorted(qdir.glob("*_nearest_training.json"))
    assert len(sources) == 3  # copies are quarantined even though mark_unsafe=False
    for path in sources:
        info = json.loads(path.read_text())
        sample = path.parent / info["sample"]
        assert sample.exists() and path.with_suffix(".png").exists()
        labels = copy_guard.memorization.labels
        assert info["nearest_training_file"] == labels[info["nearest_index"]]
    assert sorted(json.loads(p.read_text())["nearest_index"] for p in sources) == [0, 1, 2]


@pytest.mark.parametrize("policy", ["flag", "drop", "resample"])
def test_no_policy_returns_a_memorized_sample(copy_guard, policy):
    train = copy_guard.memorization.images.float()
    g = torch.Generator().manual_seed(0)
    result = guarded_sample(
        copy_guard, lambda n: _copies_then_noise(train)(n, g), 6, policy, max_rounds=2
    )
    assert not bool(result.verdict.memorized.any())
    assert int(result.rejected.verdict.memorized.sum()) >= 3
    assert not any(torch.equal(img, t) for img in result.images for t in train[:3])


def test_diffusers_filter_never_returns_a_memorized_sample(copy_guard):
    train = copy_guard.memorization.images.float()

    def pipe(batch_size: int = 4, generator=None, output_type="pil", return_dict=True):
        return (_copies_then_noise(train)(batch_size, generator or torch.Generator()),)

    out = SafeGenFilter(copy_guard, policy="flag").wrap(pipe)(batch_size=4, output_type="pt")
    assert len(out.images) == 2 and not bool(out.verdict.memorized.any())
    assert bool(out.rejected.verdict.memorized.all()) and len(out.rejected) == 2

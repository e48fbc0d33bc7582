from __future__ import annotations

import inspect
import json
import logging

import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from guard_doubles import MeanRuleGuard

from safegen_guard import SafeGenFilter
from safegen_guard.errors import CheckpointError
from safegen_guard.integrations.diffusers import images_to_tensor
from safegen_guard.integrations.diffusers_component import (
    SafeGenDDPMPipeline,
    SafeGenGuardComponent,
)

STEPS = 3


def _unet(size: int = 32) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


@pytest.fixture(scope="module")
def pipe() -> DDPMPipeline:
    p = DDPMPipeline(_unet(), DDPMScheduler(num_train_timesteps=50))
    p.set_progress_bar_config(disable=True)
    return p


def _plain(pipe, n: int, g: torch.Generator) -> torch.Tensor:
    return pipe(batch_size=n, generator=g, num_inference_steps=STEPS, output_type="pt").images


@pytest.fixture(scope="module")
def rule_guard() -> MeanRuleGuard:
    return MeanRuleGuard()


def _call(guard, pipe, policy: str, seed: int = 0, n: int = 4, **kw):
    out_kw = {k: kw.pop(k) for k in ("output_type", "return_dict") if k in kw}
    guarded = SafeGenFilter(guard, policy, **kw).wrap(pipe)
    g = torch.Generator().manual_seed(seed)
    return guarded(
        batch_size=n, generator=g, num_inference_steps=STEPS, **{"output_type": "pt", **out_kw}
    )


def test_flag_real_guard_end_to_end_keeps_images_and_scores(tiny_guard, pipe, tmp_path):
    plain = _plain(pipe, 4, torch.Generator().manual_seed(0))
    out = _call(tiny_guard, pipe, "flag", return_masks=True, audit_log=tmp_path / "a.jsonl")
    expected = tiny_guard.evaluate(plain)
    assert torch.equal(out.images, plain)  # never blackened, never altered
    assert torch.equal(out.scores, expected.score)
    assert torch.equal(out.p_values, expected.p_value)
    assert torch.equal(out.unsafe, expected.unsafe)
    assert out.masks.shape == (4, 1, 32, 32) and out.heatmaps is None
    assert (out.attempts, out.rounds, len(out.rejected), out.budget_exhausted) == (4, 1, 0, False)
    assert out.num_safe == int((~expected.unsafe).sum())
    lines = [json.loads(s) for s in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {r["source"] for r in lines} == {"diffusers"}
    assert {r["guard_fingerprint"] for r in lines} == {tiny_guard.fingerprint}
    assert [r["unsafe"] for r in lines] == expected.unsafe.tolist()


def test_resample_real_guard_never_returns_unsafe(tiny_guard, pipe):
    out = _call(tiny_guard, pipe, "resample", max_rounds=2)
    assert not out.unsafe.any() and out.num_safe == len(out.scores) == out.images.shape[0]
    assert out.rejected.verdict.unsafe.all()
    assert out.num_safe + len(out.rejected) <= out.attempts <= 8
    assert out.budget_exhausted == (out.num_safe < 4)
    if out.num_safe:
        assert torch.equal(tiny_guard.evaluate(out.images).score, out.scores)


def test_resample_replaces_rejected_and_counts_attempts(rule_guard, pipe, tmp_path):
    g = torch.Generator().manual_seed(0)
    rounds = [_plain(pipe, n, g) for n in (4, 2, 1)]  # what the filter must draw
    expected = torch.cat([r[~MeanRuleGuard.rule(r)] for r in rounds])
    out = _call(rule_guard, pipe, "resample", audit_log=tmp_path / "a.jsonl")
    assert torch.equal(out.images, expected)
    assert (out.attempts, out.rounds, out.num_safe, out.budget_exhausted) == (7, 3, 4, False)
    assert not out.unsafe.any()
    assert out.rejected.rounds.tolist() == [0, 0, 1] and out.rejected.verdict.unsafe.all()
    assert torch.equal(out.rejected.images[:2], rounds[0][MeanRuleGuard.rule(rounds[0])])
    lines = [json.loads(s) for s in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["attempt"] for r in lines] == [0, 0, 0, 0, 1, 1, 2]


def test_drop_returns_only_safe_and_keeps_rejected(rule_guard, pipe):
    plain = _plain(pipe, 4, torch.Generator().manual_seed(0))
    bad = MeanRuleGuard.rule(plain)
    out = _call(rule_guard, pipe, "drop")
    assert torch.equal(out.images, plain[~bad]) and torch.equal(out.rejected.images, plain[bad])
    assert (out.attempts, out.rounds, out.num_safe, len(out.rejected)) == (4, 1, 2, 2)


def test_budget_exhaustion_reports_and_keeps_rejected(pipe, caplog):
    with caplog.at_level(logging.WARNING):
        out = _call(
            MeanRuleGuard(reject_all=True),
            pipe,
            "resample",
            n=2,
            max_rounds=3,
            output_type="np",
        )
    assert out.budget_exhausted and out.num_safe == 0 and out.images.shape == (0, 32, 32, 1)
    assert (out.attempts, out.rounds, len(out.rejected)) == (6, 3, 6)
    assert out.rejected.images.shape == (6, 32, 32, 1)
    assert out.rejected.rounds.tolist() == [0, 0, 1, 1, 2, 2]
    assert "only 0 of 2 images passed" in caplog.text


def test_output_types_and_return_dict(rule_guard, pipe):
    pt = _call(rule_guard, pipe, "flag", n=2)
    np_out = _call(rule_guard, pipe, "flag", n=2, output_type="np")
    pil = _call(rule_guard, pipe, "flag", n=2, output_type="pil")
    assert isinstance(np_out.images, np.ndarray) and np_out.images.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(np_out.images, pt.images.permute(0, 2, 3, 1).numpy())
    assert len(pil.images) == 2 and pil.images[0].mode == "L" and pil.images[0].size == (32, 32)
    np.testing.assert_allclose(images_to_tensor(pil.images), pt.images, atol=1 / 255)
    images, verdict = _call(rule_guard, pipe, "flag", n=2, return_dict=False)
    assert torch.equal(images, pt.images) and torch.equal(verdict.score, pt.scores)


def test_seeded_generator_is_deterministic(rule_guard, pipe):
    a, b = _call(rule_guard, pipe, "resample", seed=3), _call(rule_guard, pipe, "resample", seed=3)
    c = _call(rule_guard, pipe, "resample", seed=4)
    assert torch.equal(a.images, b.images) and a.attempts == b.attempts
    assert torch.equal(a.rejected.images, b.rejected.images)
    assert not torch.equal(a.images, c.images)


def test_ddim_pipeline_and_signature(rule_guard):
    ddim = DDIMPipeline(_unet(), DDIMScheduler(num_train_timesteps=50))
    ddim.set_progress_bar_config(disable=True)
    guarded = SafeGenFilter(rule_guard, "drop").wrap(ddim)
    assert inspect.signature(guarded) == inspect.signature(ddim)
    out = guarded(
        batch_size=4,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=3,
        output_type="pt",
    )
    assert out.images.shape == (2, 1, 32, 32) and len(out.rejected) == 2


def test_caller_tensors_never_mutated(rule_guard):
    held = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    copy = held.clone()

    def sampler(batch_size: int = 4, return_dict: bool = True):  # any callable pipeline
        return (held[:batch_size],)

    out = SafeGenFilter(rule_guard, "flag").wrap(sampler)(batch_size=4)
    assert isinstance(out.images, list)  # "pil" default for pipelines without output_type
    out = SafeGenFilter(rule_guard, "drop").wrap(sampler)(output_type="pt")
    out.images.fill_(0.0)
    assert torch.equal(held, copy)


def test_save_load_round_trip_and_from_pipe(tiny_guard, pipe, tmp_path):
    guarded = SafeGenDDPMPipeline.from_pipe(pipe, safety_guard=tiny_guard)
    guarded.set_progress_bar_config(disable=True)
    guarded.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["safety_guard"] == [
        "safegen_guard.integrations.diffusers_component",
        "SafeGenGuardComponent",
    ]
    loaded = SafeGenDDPMPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    a, b = tiny_guard.evaluate(x), loaded.safety_guard.checked_guard().evaluate(x)
    assert torch.equal(a.score, b.score) and torch.equal(a.mask, b.mask)
    assert loaded.safety_guard.guard.fingerprint == tiny_guard.fingerprint
    kw = dict(batch_size=2, num_inference_steps=STEPS, output_type="pt", safety_policy="flag")
    o1 = guarded(generator=torch.Generator().manual_seed(0), **kw)
    o2 = loaded(generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(o1.images, o2.images) and torch.equal(o1.scores, o2.scores)
    with torch.no_grad():
        next(iter(loaded.safety_guard.guard.parameters())).add_(1.0)
    with pytest.raises(CheckpointError, match="refusing to use a modified guard"):
        loaded.safety_guard.checked_guard()


def test_pipeline_without_guard_is_plain_ddpm(pipe):
    plain = SafeGenDDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    out = plain(
        batch_size=1,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=2,
        output_type="pt",
    )
    assert type(out).__name__ == "ImagePipelineOutput" and out.images.shape == (1, 1, 32, 32)


def _fake(size: int):
    def sampler(batch_size: int = 2, output_type: str = "pil", return_dict: bool = True):
        return (torch.rand(batch_size, 1, size, size),)

    return sampler


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"policy": "blacken"}, ValueError, r"`policy` must be one of \['flag', 'resample'"),
        ({"max_rounds": 0}, ValueError, "`max_rounds` must be a positive int, got 0"),
        ({"max_rounds": 2.0}, TypeError, "`max_rounds` must be an int"),
        ({"explain": "yes"}, TypeError, "`explain` must be a bool or a tuple"),
        ({"explain": True}, ValueError, "needs a guard with an attached explainer"),
        ({"return_masks": 1}, TypeError, "`return_masks` must be a bool"),
        ({"audit_log": 3}, TypeError, "`audit_log` must be a path or None"),
    ],
)
def test_bad_filter_arguments(rule_guard, kwargs, error, match):
    with pytest.raises(error, match=match):
        SafeGenFilter(rule_guard, **kwargs)


def test_bad_call_arguments(rule_guard):
    with pytest.raises(TypeError, match="`guard` must have an `evaluate` method, got str"):
        SafeGenFilter("guard")
    with pytest.raises(TypeError, match="`pipe` must be a callable pipeline, got int"):
        SafeGenFilter(rule_guard).wrap(3)
    with pytest.raises(ValueError, match=r"`output_type` must be one of \['pt', 'np', 'pil'\]"):
        SafeGenFilter(rule_guard).wrap(_fake(32))(output_type="latent")
    with pytest.raises(
        ValueError,
        match=r"produced images \[C, H, W\] = \[1, 16, 16\] but the "
        r"guard was fitted on \[C, H, W\] = \[1, 32, 32\]",
    ):
        SafeGenFilter(rule_guard).wrap(_fake(16))()
    with pytest.raises(ValueError, match="policy 'resample' needs one torch.Generator"):
        fake = _fake(32)

        def seeded(batch_size: int = 2, generator=None, output_type="pil"):
            return fake(batch_size)

        SafeGenFilter(rule_guard, "resample").wrap(seeded)(generator=[torch.Generator()] * 2)
    with pytest.raises(ValueError, match=r"policy 'resample' needs a pipeline with one of"):
        SafeGenFilter(rule_guard, "resample").wrap(lambda output_type="pt": None)
    with pytest.raises(TypeError, match="must return images as a torch.Tensor"):
        images_to_tensor("image.png")
    with pytest.raises(TypeError, match="`guard` must be a safegen_guard.Guard, got MeanRuleGuard"):
        SafeGenGuardComponent.from_guard(rule_guard)
    with pytest.raises(TypeError, match="`safety_guard` must be a SafeGenGuardComponent"):
        SafeGenDDPMPipeline(unet=_unet(), scheduler=DDPMScheduler(), safety_guard="guard")


def test_batch_check_rejects_a_batch_of_untrained_samples(tiny_guard, tiny_real, pipe):
    from safegen_guard.adaptive import BatchCheck

    check = BatchCheck(tiny_real["val"], steps=40, min_batch=8)
    out = _call(tiny_guard, pipe, "flag", n=16, batch_check=check)
    fired = torch.tensor(["batch_realism" in r for r in out.verdict.reasons])
    assert float(fired.float().mean()) >= 0.75  # an untrained DDPM's noise, fake as a group
    assert bool(out.unsafe[fired].all())
    assert out.verdict.view_p_values["batch_realism"].shape == (16,)

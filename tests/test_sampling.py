from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from guard_doubles import MeanRuleGuard

from safegen_guard.sampling import (
    SamplingPolicy,
    guarded_sample,
    images_to_tensor,
    inferer_sampler,
)

ROOT = Path(__file__).resolve().parents[1]


def _seeded_sampler(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    drawn: list[torch.Tensor] = []

    def sampler(n: int) -> torch.Tensor:
        drawn.append(torch.rand(n, 1, 32, 32, generator=g))
        return drawn[-1]

    return sampler, drawn


def test_resample_over_plain_sampler_keeps_safe_in_draw_order(tmp_path):
    sampler, drawn = _seeded_sampler()
    result = guarded_sample(MeanRuleGuard(), sampler, 4, audit_log=tmp_path / "a.jsonl")
    assert [len(d) for d in drawn] == [4, 2, 1]  # only the missing images are redrawn
    expected = torch.cat([d[~MeanRuleGuard.rule(d)] for d in drawn])
    assert torch.equal(result.images, expected)
    assert (result.attempts, result.rounds, result.num_safe) == (7, 3, 4)
    assert not result.budget_exhausted and not result.verdict.unsafe.any()
    assert result.rejected.rounds.tolist() == [0, 0, 1] and result.rejected.verdict.unsafe.all()
    lines = [json.loads(s) for s in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert {r["source"] for r in lines} == {"sampler"} and len(lines) == 7


def test_flag_and_drop_over_plain_sampler():
    sampler, drawn = _seeded_sampler(1)
    flagged = guarded_sample(MeanRuleGuard(), sampler, 6, "flag")
    assert torch.equal(flagged.images, drawn[0]) and len(flagged.rejected) == 0
    assert torch.equal(flagged.verdict.unsafe, MeanRuleGuard.rule(drawn[0]))
    sampler, drawn = _seeded_sampler(1)
    dropped = guarded_sample(MeanRuleGuard(), sampler, 6, "drop")
    bad = MeanRuleGuard.rule(drawn[0])
    assert torch.equal(dropped.images, drawn[0][~bad])
    assert torch.equal(dropped.rejected.images, drawn[0][bad]) and len(drawn) == 1


def test_budget_exhausted_is_reported(caplog):
    sampler, drawn = _seeded_sampler()
    result = guarded_sample(MeanRuleGuard(reject_all=True), sampler, 2, max_rounds=3)
    assert result.budget_exhausted and result.num_safe == 0 and result.images.shape[0] == 0
    assert len(result.rejected) == result.attempts == 6 and len(drawn) == 3
    assert "only 0 of 2 images passed" in caplog.text


def test_monai_diffusion_inferer_adapter():
    from monai.inferers import DiffusionInferer
    from monai.networks.nets import DiffusionModelUNet
    from monai.networks.schedulers import DDPMScheduler

    torch.manual_seed(0)
    model = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=(8, 8),
        attention_levels=(False, False),
        num_res_blocks=1,
        norm_num_groups=8,
    ).eval()
    scheduler = DDPMScheduler(num_train_timesteps=3)
    inferer = DiffusionInferer(scheduler)

    def sampler(seed: int):
        g = torch.Generator().manual_seed(seed)
        kw = {"generator": g, "to_unit_range": lambda x: (x + 1) / 2}
        return inferer_sampler(inferer, model, scheduler, (1, 32, 32), **kw)

    a = guarded_sample(MeanRuleGuard(), sampler(0), 3, "flag")
    b = guarded_sample(MeanRuleGuard(), sampler(0), 3, "flag")
    assert a.images.shape == (3, 1, 32, 32) and torch.equal(a.images, b.images)
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0


def test_policy_arguments_are_validated():
    with pytest.raises(ValueError, match=r"`policy` must be one of \['flag', 'resample'"):
        SamplingPolicy(MeanRuleGuard(), "blacken")
    with pytest.raises(TypeError, match="`guard` must have an `evaluate` method, got str"):
        SamplingPolicy("guard")
    with pytest.raises(ValueError, match="`num_images` must be a positive int, got 0"):
        guarded_sample(MeanRuleGuard(), lambda n: torch.rand(n, 1, 32, 32), 0)
    with pytest.raises(TypeError, match="`sampler` must be a callable, got int"):
        guarded_sample(MeanRuleGuard(), 3, 2)
    with pytest.raises(ValueError, match=r"sampler produced images \[C, H, W\] = \[1, 16, 16\]"):
        guarded_sample(MeanRuleGuard(), lambda n: torch.rand(n, 1, 16, 16), 2)
    with pytest.raises(TypeError, match="`inferer` must have a `sample` method, got int"):
        inferer_sampler(3, torch.nn.Identity(), None, (1, 32, 32))
    with pytest.raises(ValueError, match=r"`image_shape` must be \(C, H, W\), got \(32, 32\)"):
        inferer_sampler(SimpleNamespace(sample=print), torch.nn.Identity(), None, (32, 32))
    with pytest.raises(TypeError, match="must return images as a torch.Tensor"):
        images_to_tensor("image.png")


_BLOCKED = textwrap.dedent(
    """
    import json, sys
    sys.modules["diffusers"] = None  # `import diffusers` now raises ImportError
    import torch
    from safegen_guard import Guard
    from safegen_guard.sampling import guarded_sample

    guard = Guard.load(sys.argv[1])
    real = torch.load(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    drawn = []

    def sampler(n):  # a plain PyTorch sampler: real slices, some with a bright square
        x = real[torch.randint(len(real), (n,), generator=g)].clone()
        x[::2, :, 8:20, 8:20] = 1.0
        drawn.append(x)
        return x

    result = guarded_sample(guard, sampler, 4, max_rounds=3)
    try:
        import diffusers  # noqa: F401
        blocked = False
    except ImportError:
        blocked = True
    per_round = [d[guard.evaluate(d).safe] for d in drawn]
    expected = torch.cat(per_round)[:4]
    print(json.dumps({
        "blocked": blocked,
        "loaded": "diffusers" in sys.modules and sys.modules["diffusers"] is not None,
        "matches": bool(torch.equal(result.images, expected)),
        "scores": bool(torch.equal(guard.evaluate(result.images).score, result.verdict.score)),
        "any_unsafe": bool(result.verdict.unsafe.any()),
        "attempts": result.attempts,
        "drawn": sum(len(d) for d in drawn),
        "rejected_unsafe": bool(result.rejected.verdict.unsafe.all()),
        "num_rejected": len(result.rejected),
        "kept": len(result.images),
        "exhausted": result.budget_exhausted,
    }))
    """
)


def test_policy_runs_with_diffusers_import_blocked(tiny_guard, tiny_real, tmp_path):
    tiny_guard.save(tmp_path / "guard")
    torch.save(tiny_real["test"][:16].clone(), tmp_path / "real.pt")
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED, str(tmp_path / "guard"), str(tmp_path / "real.pt")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked"] and not out["loaded"]
    assert out["matches"] and out["scores"] and not out["any_unsafe"]
    assert out["attempts"] == out["drawn"] >= 4
    assert out["rejected_unsafe"] and out["kept"] + out["num_rejected"] == out["drawn"]
    assert out["kept"] == 4 or out["exhausted"]


class _AcceptAll16:
    """Accepts every 16 px image: only the batch test can reject."""

    config = SimpleNamespace(image_size=16, channels=1)
    fingerprint, explainer = "accept-all-double", None

    def evaluate(self, x: torch.Tensor, explain=False):
        from safegen_guard.verdict import Verdict

        p = torch.full((len(x),), 0.5, dtype=torch.float64)
        return Verdict(
            score=-p.log10(),
            p_value=p,
            unsafe=torch.zeros(len(x), dtype=torch.bool),
            anomaly_map=torch.zeros_like(x),
            mask=torch.zeros_like(x, dtype=torch.bool),
            reasons=[() for _ in range(len(x))],
        )


def _discs16(n: int, seed: int, radius: float, level: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(16) - 8.0, torch.arange(16) - 8.0, indexing="ij")
    base = level * (torch.sqrt(yy**2 + xx**2) < radius).float()
    return (base[None, None] + 0.05 * torch.randn(n, 1, 16, 16, generator=g)).clamp(0, 1)


def test_drop_policy_with_batch_check_withholds_group_fakes():
    from safegen_guard.adaptive import BatchCheck

    reference = _discs16(120, 0, radius=5.0, level=0.6)
    fakes = _discs16(40, 1, radius=7.0, level=0.9)  # pass the guard, fake as a group
    check = BatchCheck(reference, steps=40, min_batch=8)
    result = guarded_sample(_AcceptAll16(), lambda n: fakes[:n], 40, "drop", batch_check=check)
    assert len(result.rejected) >= 34 and len(result.images) == 40 - len(result.rejected)
    assert all("batch_realism" in r for r in result.rejected.verdict.reasons)
    assert "batch_realism" in result.verdict.view_p_values
    with pytest.raises(TypeError, match="`batch_check` must be a BatchCheck or None, got dict"):
        SamplingPolicy(_AcceptAll16(), "drop", batch_check={})

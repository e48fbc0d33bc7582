"""Tests of the batch realism test (adaptive conformal novelty detection) on tiny data."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.adaptive import SmallCNN, _calibration_rows, batch_realism_test

S = 16


def _discs(n: int, seed: int, radius: float = 5.0, level: float = 0.6) -> torch.Tensor:
    """[n, 1, S, S] noisy discs in [0, 1] (a tiny stand-in for real slices)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(S) - S / 2, torch.arange(S) - S / 2, indexing="ij")
    base = level * (torch.sqrt(yy**2 + xx**2) < radius).float()
    return (base[None, None] + 0.05 * torch.randn(n, 1, S, S, generator=g)).clamp(0, 1)


def _run(generated: torch.Tensor, reference: torch.Tensor, **kw):
    return batch_realism_test(generated, reference, steps=40, batch_size=32, **kw)


def test_batch_of_real_images_is_rejected_at_about_alpha():
    reference = _discs(120, 0)
    rates = [
        float(_run(_discs(40, 10 + s), reference, seed=s).rejected.float().mean()) for s in range(3)
    ]
    assert sum(rates) / len(rates) <= 0.15  # alpha = 0.05; three tiny draws


def test_recognisably_different_batch_is_rejected():
    reference = _discs(120, 0)
    generated = _discs(40, 1, radius=7.0, level=0.9)  # larger and brighter, like the DDPM
    result = _run(generated, reference, seed=0)
    assert float(result.rejected.float().mean()) >= 0.9
    assert result.separability > 0.9
    assert result.p_value.dtype == torch.float64 and result.score.shape == (40,)
    assert float(result.p_value.min()) >= 1 / (result.n_calibration + 1) - 1e-12


def test_result_is_deterministic_for_a_seed():
    reference, generated = _discs(60, 0), _discs(20, 3, radius=6.0)
    a, b = _run(generated, reference, seed=4), _run(generated, reference, seed=4)
    torch.testing.assert_close(a.p_value, b.p_value)


def test_calibration_rows_keep_groups_together():
    groups = torch.arange(30).repeat_interleave(4)  # 30 slices x 4 draws
    rows = _calibration_rows(len(groups), groups, 0.5, seed=0)
    cal_groups = set(groups[rows].tolist())
    rest = set(
        groups[
            torch.tensor([i for i in range(len(groups)) if i not in set(rows.tolist())])
        ].tolist()
    )
    assert cal_groups and rest and not cal_groups & rest
    assert abs(len(rows) - 60) <= 4
    torch.testing.assert_close(rows, _calibration_rows(len(groups), groups, 0.5, seed=0))
    with pytest.raises(ValueError, match="one per reference image"):
        _calibration_rows(10, torch.zeros(3), 0.5, seed=0)


def test_validation_errors():
    ref = _discs(50, 0)
    with pytest.raises(ValueError, match="one shape"):
        batch_realism_test(torch.rand(4, 1, 8, 8), ref)
    with pytest.raises(ValueError, match="calibration images"):
        batch_realism_test(_discs(4, 1), ref[:10], alpha=0.05)
    with pytest.raises(ValueError, match="calibration_fraction"):
        batch_realism_test(_discs(4, 1), ref, calibration_fraction=1.0)
    with pytest.raises(ValueError):
        batch_realism_test(_discs(4, 1) + 2.0, ref)  # outside [0, 1]


def test_small_cnn_shapes():
    assert SmallCNN(1, 4)(torch.rand(3, 1, S, S)).shape == (3,)


# ------------------------------------------------------------ the batch test in a verdict
def _accept_all(x: torch.Tensor):
    from safegen_guard.verdict import Verdict

    p = torch.full((len(x),), 0.5, dtype=torch.float64)
    return Verdict(
        score=-p.log10(),
        p_value=p,
        unsafe=torch.zeros(len(x), dtype=torch.bool),
        anomaly_map=torch.zeros(len(x), 1, S, S),
        mask=torch.zeros(len(x), 1, S, S, dtype=torch.bool),
        reasons=[() for _ in range(len(x))],
    )


def test_add_batch_test_marks_recognisable_fakes_and_keeps_realism_evidence():
    from safegen_guard.adaptive import BatchCheck, add_batch_test

    generated = _discs(40, 1, radius=7.0, level=0.9)
    generated[3] = float("nan")  # never tested, stays as the guard judged it
    verdict = _accept_all(generated)
    check = BatchCheck(_discs(120, 0), steps=40, min_batch=8)
    new, result = add_batch_test(verdict, generated, check, alpha=0.05)
    assert result is not None and len(result.p_value) == 39
    fired = torch.tensor(["batch_realism" in r for r in new.reasons])
    assert torch.equal(fired, new.unsafe) and float(fired.float().mean()) >= 0.85
    assert not bool(fired[3]) and float(new.view_p_values["batch_realism"][3]) == 1.0
    assert bool((new.view_p_values["batch_realism"][fired] <= 0.05).all())
    assert torch.equal(new.p_value, verdict.p_value) and torch.equal(new.score, verdict.score)
    assert not verdict.unsafe.any()  # the input verdict is not modified


def test_add_batch_test_skips_small_batches_and_validates():
    from safegen_guard.adaptive import BatchCheck, add_batch_test

    generated = _discs(6, 1, radius=7.0, level=0.9)
    check = BatchCheck(_discs(120, 0), steps=5, min_batch=8)
    new, result = add_batch_test(_accept_all(generated), generated, check, alpha=0.05)
    assert result is None and not new.unsafe.any()
    assert torch.equal(new.view_p_values["batch_realism"], torch.ones(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="`min_batch` must be >= 2, got 1"):
        BatchCheck(_discs(120, 0), min_batch=1)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        BatchCheck(_discs(120, 0), steps=0)

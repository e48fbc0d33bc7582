"""Tests of Guard.evaluate / Guard.fit on the session's tiny real-data guard."""

from __future__ import annotations

import math

import pytest
import torch

from safegen_guard import Guard, GuardConfig
from safegen_guard.artifacts import inject
from safegen_guard.errors import InputValidationError, NotFittedError


@pytest.fixture(scope="module")
def x6(tiny_real) -> torch.Tensor:
    return tiny_real["test"][::7][:6].clone()


def _same(a, b) -> None:
    torch.testing.assert_close(a.p_value, b.p_value)
    torch.testing.assert_close(a.anomaly_map, b.anomaly_map)
    assert torch.equal(a.unsafe, b.unsafe)
    assert a.reasons == b.reasons


def test_verdict_fields(tiny_guard, x6):
    v = tiny_guard.evaluate(x6)
    b = len(x6)
    assert len(v) == b
    assert v.p_value.shape == v.score.shape == v.unsafe.shape == (b,)
    assert v.unsafe.dtype == torch.bool and v.mask.dtype == torch.bool
    assert v.anomaly_map.shape == v.mask.shape == (b, 1, 32, 32)
    assert v.anomaly_map.dtype == torch.float32
    assert bool(((v.anomaly_map >= 0) & (v.anomaly_map <= 1)).all())
    assert torch.equal(v.mask, v.anomaly_map > 0.5)
    assert bool(((v.p_value > 0) & (v.p_value <= 1)).all())
    # severity: ordered like the p-value (a smaller p-value never has a smaller score)
    smaller_p = v.p_value[:, None] < v.p_value[None, :]
    assert bool((v.score[:, None] > v.score[None, :])[smaller_p].all())
    assert torch.equal(v.score > -math.log10(v.threshold) + 1e-9, v.unsafe)  # one rule
    assert v.threshold == tiny_guard.config.false_reject_rate == 0.05
    assert v.guard_fingerprint == tiny_guard.fingerprint and len(v.guard_fingerprint) == 16
    assert set(v.view_scores) == set(v.view_p_values) == set(tiny_guard.detector.view_names)
    assert all(t.shape == (b,) for t in v.view_scores.values())


def test_reasons_are_views_above_threshold(tiny_guard, tiny_real):
    x = tiny_real["test"][:12]
    v = tiny_guard.evaluate(x)
    names = tiny_guard.detector.view_names
    stats = torch.stack([v.view_scores[n] for n in names], 1)
    assert tiny_guard.calibrator.n_bins == 1  # the tiny profile does not condition
    z = tiny_guard.calibrator.standardise(stats, torch.zeros(len(x), dtype=torch.long))
    t = float(tiny_guard.calibrator.thresholds()[0])
    for i in range(len(x)):
        assert v.reasons[i] == tuple(n for j, n in enumerate(names) if float(z[i, j]) > t)
        assert bool(v.unsafe[i]) == (len(v.reasons[i]) > 0)


def test_non_finite_images_are_unsafe_and_do_not_affect_others(tiny_guard, x6):
    x = x6[:4].clone()
    x[1, 0, 3, 3] = float("nan")
    x[2, 0, 5, 7] = float("inf")
    before = x.clone()
    v = tiny_guard.evaluate(x)
    assert torch.equal(torch.isnan(x), torch.isnan(before))  # input not mutated
    assert torch.equal(x.nan_to_num(0), before.nan_to_num(0))
    for i in (1, 2):
        assert bool(v.unsafe[i]) and v.reasons[i] == ("non_finite",)
        assert float(v.p_value[i]) == 0.0 and float(v.score[i]) == float("inf")
        assert bool(v.mask[i].all())
    alone = tiny_guard.evaluate(x[[0, 3]])
    _same(v.select([0, 3]), alone)
    torch.testing.assert_close(v.select([0, 3]).score, alone.score)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x: x[:, 0], r"must be a 4-D tensor \[B, C, H, W\], got shape \(2, 32, 32\)"),
        (lambda x: x.repeat(1, 3, 1, 1), r"must have 1 channel\(s\), got 3"),
        (lambda x: x[..., :16, :16], r"must be 32x32 pixels, got 16x16"),
        (lambda x: (x * 255).to(torch.uint8), r"floating-point .* got dtype torch.uint8"),
        (lambda x: x * 2 + 0.5, r"intensities must lie in \[0, 1\], got range"),
        (lambda x: x[:0], r"at least one image, got an empty batch"),
    ],
)
def test_evaluate_rejects_bad_input(tiny_guard, x6, make, match):
    with pytest.raises(InputValidationError, match=match) as info:
        tiny_guard.evaluate(make(x6[:2]))
    assert isinstance(info.value, ValueError)


def test_evaluate_rejects_non_tensor(tiny_guard, x6):
    with pytest.raises(TypeError, match=r"must be a torch.Tensor .* got ndarray"):
        tiny_guard.evaluate(x6.numpy())


def test_grad_modes_and_chunking_give_identical_results(tiny_guard, x6):
    ref = tiny_guard.evaluate(x6)
    with torch.no_grad():
        _same(tiny_guard.evaluate(x6), ref)
    with torch.inference_mode():
        _same(tiny_guard.evaluate(x6), ref)
    _same(tiny_guard.evaluate(x6, batch_size=4), ref)
    chunked = tiny_guard.evaluate(x6, batch_size=3)
    _same(chunked, ref)
    for n in ref.view_scores:
        # oneDNN picks its convolution algorithm per batch size: float32 accumulation order
        # differs between chunkings, so raw statistics agree to ~1e-5, verdicts exactly
        torch.testing.assert_close(chunked.view_scores[n], ref.view_scores[n], rtol=1e-4, atol=1e-4)


def test_float64_input_accepted(tiny_guard, x6):
    _same(tiny_guard.evaluate(x6[:2].double()), tiny_guard.evaluate(x6[:2]))


def test_explain_without_explainer(tiny_guard, x6):
    assert tiny_guard.explainer is None
    with pytest.raises(NotFittedError, match=r"explanations need a fitted explainer"):
        tiny_guard.evaluate(x6[:1], explain=True)


def test_strong_noise_raises_unsafe_rate(tiny_guard, tiny_real):
    clean = tiny_real["test"]
    noisy, _ = inject(clean, "noise_global", "strong", torch.Generator().manual_seed(0))
    clean_rate = float(tiny_guard.evaluate(clean).unsafe.float().mean())
    noisy_rate = float(tiny_guard.evaluate(noisy).unsafe.float().mean())
    assert noisy_rate > clean_rate
    assert noisy_rate >= 0.9


def test_fit_tensor_requires_calibration_data(tiny_real):
    cfg = GuardConfig.profile("tiny", max_steps=1, accelerator="cpu")
    with pytest.raises(ValueError, match=r"`calibration_data` .* is required"):
        Guard.fit(tiny_real["train"][:4], cfg)


def test_same_seed_same_guard_whatever_the_global_rng(tiny_guard, tiny_real):
    cfg = GuardConfig.profile("tiny", max_steps=20, accelerator="cpu")
    torch.manual_seed(0)
    first = Guard(cfg).detector.autoencoder.stem.weight.clone()
    torch.manual_seed(12345)  # a caller's global RNG state must not change the guard
    before = torch.get_rng_state()
    assert torch.equal(Guard(cfg).detector.autoencoder.stem.weight, first)
    assert torch.equal(torch.get_rng_state(), before)  # and construction leaves it untouched
    again = Guard.fit(tiny_real["train"], cfg, calibration_data=tiny_real["val"])
    assert again.fingerprint == tiny_guard.fingerprint


def test_severity_ranks_rejects_beyond_the_calibration_range(tiny_guard, tiny_real):
    x = tiny_real["test"][:8]
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    v_mid, v_far = tiny_guard.evaluate(noisy * 0.5 + x * 0.5), tiny_guard.evaluate(noisy)
    floor = 1.0 / (len(tiny_guard.calibrator.cal_fused) + 1)
    both_floor = (v_far.p_value <= floor) & (v_mid.p_value <= floor)
    assert bool(both_floor.any())  # the p-value cannot tell these apart ...
    assert bool((v_far.score[both_floor] != v_mid.score[both_floor]).all())  # ... the score can
    assert len(set(v_far.score.tolist())) == len(x)  # no ties among clear rejects


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


@pytest.fixture
def no_training(monkeypatch):
    """``Guard.fit`` stops with ``_Stop`` right after its config checks (nothing is trained)."""
    import safegen_guard.guard_fit as guard_fit

    monkeypatch.setattr(guard_fit, "load_fit_data", _stop)


def test_fit_takes_the_modality_of_named_data_when_the_config_leaves_it(monkeypatch, recwarn):
    # `GuardConfig.profile("quick")` leaves modality and views unset; fitting it on a named
    # data set must use that modality's views, not the union chosen for unknown data.
    import dataclasses

    import safegen_guard.guard_fit as guard_fit
    from safegen_guard.detector.registry import default_views

    seen = []

    def capture(real_data, calibration_data, config, *args):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(guard_fit, "load_fit_data", capture)
    for data, modality in (("mni152", "mri"), ("ct_phantom", "ct")):
        with pytest.raises(_Stop):
            Guard.fit(data, GuardConfig.profile("tiny"))
        assert seen[-1].modality == modality and seen[-1].views == default_views(modality)
        assert seen[-1].image_size == 32  # the rest of the config is kept
    assert not [w for w in recwarn if "modality" in str(w.message)]
    # GuardConfig.replace keeps track of defaulted views; dataclasses.replace cannot: warn
    with pytest.raises(_Stop):
        Guard.fit("mni152", GuardConfig.profile("tiny").replace(max_steps=5))
    assert seen[-1].views == default_views("mri") and seen[-1].max_steps == 5
    copied = dataclasses.replace(GuardConfig.profile("tiny"), max_steps=5)
    with pytest.warns(UserWarning, match="modality='mri'"), pytest.raises(_Stop):
        Guard.fit("mni152", copied)
    assert seen[-1].views == default_views(None)


def test_fit_stays_quiet_when_the_modality_is_known(no_training, recwarn):
    with pytest.raises(_Stop):
        Guard.fit("mni152", GuardConfig.profile("tiny", modality="mri"))
    with pytest.raises(_Stop):
        Guard.fit(torch.rand(4, 1, 32, 32), GuardConfig.profile("tiny"))
    with pytest.raises(_Stop):
        Guard.fit("mni152")
    with pytest.raises(_Stop):  # views named explicitly: the user chose them
        Guard.fit("mni152", GuardConfig.profile("tiny", views=("texture",)))
    assert not [w for w in recwarn if "modality" in str(w.message)]


def test_calibration_groups_survive_save_and_load(tiny_guard, tiny_real, tmp_path):
    from safegen_guard import Guard

    val = tiny_real["val"]
    groups = torch.arange(len(val)) % 8 < 4  # draws 0-3 of each slice vs draws 4-7
    guard = Guard.load(tiny_guard.save(tmp_path / "src"))  # a copy the test may recalibrate
    guard.calibrate(val, training=tiny_real["train"], groups=groups.long())
    assert guard.calibrator.n_groups == 2
    assert torch.equal(guard.calibrator.cal_group, groups.long()[1::2])
    assert guard.fingerprint != tiny_guard.fingerprint  # groups decide, so they are covered
    loaded = Guard.load(guard.save(tmp_path / "g"))
    assert torch.equal(loaded.calibrator.cal_group, guard.calibrator.cal_group)
    x = tiny_real["test"][:16]
    a, b = guard.evaluate(x), loaded.evaluate(x)
    assert torch.equal(a.p_value, b.p_value) and torch.equal(a.unsafe, b.unsafe)
    with pytest.raises(TypeError, match="integer group labels"):
        guard.calibrate(val, groups=groups.float())

    # deciding with one group: a copy, saved and loaded with its choice, fingerprinted
    one = guard.for_preparation(0)
    assert one.calibrator.decision_groups == [0] and guard.calibrator.decision_groups == [0, 1]
    assert one.fingerprint not in (guard.fingerprint, guard.for_preparation(1).fingerprint)
    assert guard.for_preparation(None).fingerprint == guard.fingerprint
    c = one.evaluate(x)
    assert torch.equal(c.unsafe, c.p_value <= one.config.false_reject_rate)
    assert bool((c.p_value <= a.p_value).all())  # one group's p-value <= the max over both
    assert bool((c.unsafe | ~a.unsafe).all())  # rejected with both groups -> with one
    reloaded = Guard.load(one.save(tmp_path / "one"))
    assert reloaded.calibrator.decision_groups == [0]
    assert reloaded.fingerprint == one.fingerprint
    assert torch.equal(reloaded.evaluate(x).p_value, c.p_value)
    with pytest.raises(ValueError, match=r"preparation group\(s\) \[3\]"):
        guard.for_preparation(3)


def test_guard_deep_copies_with_its_faiss_banks(tiny_guard, tiny_real):
    """A copied guard (e.g. Lightning copying a callback) decides exactly like the original."""
    import copy

    import SimpleITK  # noqa: F401  (its SWIG vector type broke faiss's serialisation)

    assert any(hasattr(v, "_nn") for v in tiny_guard.detector.views.values())
    x = tiny_real["test"][:8]
    a = tiny_guard.evaluate(x)  # builds the faiss indexes
    twin = copy.deepcopy(tiny_guard)
    assert twin.fingerprint == tiny_guard.fingerprint
    b = twin.evaluate(x)
    assert torch.equal(a.score, b.score) and torch.equal(a.unsafe, b.unsafe)


def test_mask_is_the_averaged_maximum_of_the_maps_that_localise(tiny_guard, tiny_real):
    """``patch_density`` decides but stays out of the mask; the maximum is box-averaged."""
    import torch.nn.functional as F

    from safegen_guard.calibration import map_radius

    det, cal = tiny_guard.detector, tiny_guard.calibrator
    names = det.map_view_names
    assert "patch_density" in names and "patch_density" in det.view_names
    assert cal.map_in_mask.tolist() == [n != "patch_density" for n in names]
    assert int(cal.map_radius) == map_radius(32) == 2
    x = tiny_real["test"][:8]
    with torch.no_grad():
        _, maps, _ = det.score(x)
    keep = [i for i, n in enumerate(names) if n != "patch_density"]
    c = (maps[:, keep] / cal.map_scale[keep][None, :, None, None]).amax(1, keepdim=True)
    c = F.avg_pool2d(c, 5, stride=1, padding=2, count_include_pad=False)
    v = tiny_guard.evaluate(x)
    torch.testing.assert_close(v.anomaly_map, c / (c + cal.tau))
    assert v.mask.any()  # not vacuous: the comparison above covers masked pixels

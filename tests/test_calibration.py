"""Tests of safegen_guard.calibration against hand-computed conformal quantities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safegen_guard.calibration import (
    Calibrator,
    check_groups,
    conformal_p_values,
    conformal_threshold,
    tail_significance,
)
from safegen_guard.errors import NotFittedError

VIEWS = ["a", "b", "c"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- p-values
def test_p_values_hand_computed():
    ref = torch.tensor([1.0, 2.0, 3.0, 4.0])
    p = conformal_p_values(ref, torch.tensor([2.5, 0.0, 5.0, 2.0, 4.0]))
    # (1 + #{ref >= s}) / 5 ; ties count as "at least as high"
    expected = torch.tensor([3 / 5, 5 / 5, 1 / 5, 4 / 5, 2 / 5], dtype=torch.float64)
    torch.testing.assert_close(p, expected)
    assert p.shape == (5,)


def test_p_values_reject_bad_reference():
    with pytest.raises(ValueError, match=r"non-empty 1-D tensor, got shape \(0,\)"):
        conformal_p_values(torch.zeros(0), torch.zeros(2))
    with pytest.raises(ValueError, match=r"non-empty 1-D tensor, got shape \(2, 2\)"):
        conformal_p_values(torch.zeros(2, 2), torch.zeros(2))


# ---------------------------------------------------------------------------- threshold
def test_threshold_hand_computed():
    ref = torch.arange(1.0, 20.0)  # n = 19, k = floor(0.1 * 20) = 2 -> 2nd largest
    shuffled = ref[torch.randperm(19, generator=_gen(0))]
    assert conformal_threshold(shuffled, 0.1) == 18.0
    assert conformal_threshold(shuffled, 0.05) == 19.0  # k = floor(0.05 * 20) = 1
    assert conformal_threshold(shuffled, 0.2) == 16.0  # k = 4
    assert conformal_threshold(torch.arange(1.0, 31.0), 0.1) == 28.0  # k = floor(3.1) = 3


def test_threshold_too_few_calibration_images():
    with pytest.raises(ValueError, match=r"false-reject rate of 0.05 needs at least 19 .* got 18"):
        conformal_threshold(torch.arange(18.0), 0.05)
    with pytest.raises(ValueError, match=r"`false_reject_rate` must be in \(0, 1\), got 0"):
        conformal_threshold(torch.arange(18.0), 0)


@pytest.mark.parametrize(("n", "alpha"), [(19, 0.07), (50, 0.05), (37, 0.2), (100, 0.013)])
def test_p_value_below_alpha_iff_stat_above_threshold(n, alpha):
    g = _gen(n)
    ref = torch.randn(n, generator=g)
    # random scores plus exact ties with every reference value
    scores = torch.cat([torch.randn(500, generator=g) * 1.5, ref])
    t = conformal_threshold(ref, alpha)
    p = conformal_p_values(ref, scores)
    assert torch.equal(p <= alpha, scores > t)
    assert bool(((p > 0) & (p <= 1)).all())


def test_p_value_threshold_equivalence_when_alpha_times_n_plus_1_is_integer():
    ref = torch.arange(1.0, 20.0)  # n = 19, alpha = 0.1 -> k = 2, t* = 18
    score = torch.tensor([18.5])  # > t*, p = (1 + 1) / 20 = 0.1 exactly
    assert score.item() > conformal_threshold(ref, 0.1)
    assert float(conformal_p_values(ref, score)[0]) <= 0.1


@pytest.mark.parametrize(("n", "alpha"), [(19, 0.1), (30, 0.05)])
def test_false_reject_rate_guarantee_on_exchangeable_data(n, alpha):
    """Average FRR over random splits equals floor(alpha (n+1)) / (n+1).

    Per split the rejection probability is Beta(k, n+1-k); with T splits of m test points the
    mean FRR has variance (Var[Beta] + E[p(1-p)]/m) / T. We allow 4.5 standard deviations.
    """
    trials, m = 2000, 50
    k = math.floor(alpha * (n + 1))
    target = k / (n + 1)
    g = _gen(123)
    cal = torch.randn(trials, n, generator=g)
    test = torch.randn(trials, m, generator=g)
    thresholds = torch.tensor([conformal_threshold(cal[i], alpha) for i in range(trials)])
    frr = (test > thresholds[:, None]).float().mean(1)
    a, b = k, n + 1 - k
    var_beta = a * b / ((a + b) ** 2 * (a + b + 1))
    e_p2 = var_beta + target**2
    sd = math.sqrt((var_beta + (target - e_p2) / m) / trials)
    assert abs(float(frr.mean()) - target) < 4.5 * sd
    assert float(frr.mean()) <= alpha + 4.5 * sd


# ------------------------------------------------------------------ tail significance
def test_tail_significance_matches_conformal_p_at_reference_values():
    ref = torch.randn(50, generator=_gen(3), dtype=torch.float64)
    sig = tail_significance(ref, ref)
    # at each reference value the continuous tail equals the conformal p-value
    torch.testing.assert_close(10.0 ** (-sig), conformal_p_values(ref, ref))
    # below the smallest value: S = 1; strictly increasing inside and beyond the range
    assert float(tail_significance(ref, ref.min()[None] - 1.0)) == 0.0
    grid = torch.linspace(float(ref.min()), float(ref.max()) + 5.0, 400, dtype=torch.float64)
    s = tail_significance(ref, grid)
    assert bool((s.diff() > 0).all())


def test_tail_significance_exponential_continuation_hand_computed():
    ref = torch.arange(1.0, 11.0)  # n = 10: top decile -> k = 3 values above r[6] = 7
    theta = float(torch.tensor([8.0, 9.0, 10.0]).sub(7.0).mean())  # 2.0
    s_max = 2.0 / 11.0  # conformal p at the largest value
    want = -math.log10(s_max * math.exp(-(14.0 - 10.0) / theta))
    assert float(tail_significance(ref, torch.tensor([14.0]))) == pytest.approx(want)
    # halfway between two reference values: the interpolated share
    want_mid = -math.log10((8.0 / 11.0 + 7.0 / 11.0) / 2)  # S(4) = 8/11, S(5) = 7/11
    assert float(tail_significance(ref, torch.tensor([4.5]))) == pytest.approx(want_mid)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        tail_significance(torch.zeros(0), torch.zeros(2))


# ---------------------------------------------------------------------------- Calibrator
def _fitted(n_a: int = 41, n_b: int = 39, alpha: float = 0.1, seed: int = 0) -> Calibrator:
    g = _gen(seed)
    cal = Calibrator(VIEWS, alpha, 0.05)
    scale = torch.tensor([1.0, 2.0, 0.5])
    cal.fit_images(
        torch.randn(n_a, 3, generator=g) * scale + 1,
        torch.randn(n_b, 3, generator=g),
        torch.zeros(n_a),
        torch.zeros(n_b),
    )
    return cal


def _zeros(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(x))


def test_calibrator_validates_arguments():
    with pytest.raises(ValueError, match=r"`false_reject_rate` must be in \(0, 1\), got 0"):
        Calibrator(VIEWS, 0.0, 0.01)
    with pytest.raises(ValueError, match=r"`pixel_fpr` must be in \(0, 1\), got 1.5"):
        Calibrator(VIEWS, 0.05, 1.5)


def test_calibrator_unfitted_raises():
    cal = Calibrator(VIEWS, 0.05, 0.01)
    with pytest.raises(NotFittedError, match="not fitted"):
        cal.decide(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(NotFittedError, match="not fitted"):
        cal.thresholds()


def test_calibrator_too_few_calibration_images():
    cal = Calibrator(VIEWS, 0.05, 0.01)
    with pytest.raises(ValueError, match=r"needs at least 19 real calibration images, got 10"):
        a, b = torch.randn(11, 3, generator=_gen(0)), torch.randn(10, 3, generator=_gen(1))
        cal.fit_images(a, b, _zeros(a), _zeros(b))
    assert not bool(cal.fitted)


def test_calibrator_decide_fields_and_math():
    g = _gen(5)
    stats_a = torch.randn(41, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + 1
    stats_b = torch.randn(39, 3, generator=g)
    cal = Calibrator(VIEWS, 0.1, 0.05)
    cal.fit_images(stats_a, stats_b, _zeros(stats_a), _zeros(stats_b))

    def sig(x: torch.Tensor) -> torch.Tensor:
        cols = [tail_significance(stats_a[:, v], x[:, v]) for v in range(3)]
        return torch.stack(cols, 1).float()

    cal_fused = sig(stats_b).max(1).values
    stats = torch.randn(7, 3, generator=g) * 3
    d = cal.decide(stats, _zeros(stats))
    t = conformal_threshold(cal_fused, 0.1)  # n = 39: k = 4
    assert set(d) == {"z", "fused", "p_value", "severity", "unsafe", "fired", "view_p", "bin"}
    assert d["z"].shape == (7, 3) and d["fired"].shape == (7, 3) and d["view_p"].shape == (7, 3)
    assert d["fused"].shape == d["p_value"].shape == d["unsafe"].shape == (7,)
    assert d["unsafe"].dtype == torch.bool and d["fired"].dtype == torch.bool
    z = sig(stats)
    torch.testing.assert_close(d["z"], z)
    shift = -math.log10(0.1) - tail_significance(cal_fused, torch.tensor([t]))
    want = tail_significance(cal_fused, z.max(1).values) + shift
    torch.testing.assert_close(d["severity"], want)
    # the severity agrees with the decision: unsafe iff score > -log10(alpha)
    assert torch.equal(d["severity"] > -math.log10(0.1) + 1e-9, d["unsafe"])
    torch.testing.assert_close(d["fused"], z.max(1).values)
    torch.testing.assert_close(d["p_value"], conformal_p_values(cal_fused, z.max(1).values))
    assert float(cal.thresholds()[0]) == pytest.approx(t)
    assert float(cal.thresholds()[0]) == pytest.approx(
        float(cal_fused.sort(descending=True).values[3])
    )
    assert torch.equal(d["unsafe"], z.max(1).values > t)
    # reasons: the views whose z exceeds t*; an image is unsafe iff at least one view fired
    assert torch.equal(d["fired"], z > t)
    assert torch.equal(d["fired"].any(1), d["unsafe"])
    assert bool(((d["view_p"] > 0) & (d["view_p"] <= 1)).all())
    assert d["unsafe"].any() and (~d["unsafe"]).any()  # the example covers both outcomes


def _hand_maps(seed: int = 0):
    g = _gen(seed)
    maps = torch.rand(6, 2, 16, 16, generator=g) * torch.tensor([1.0, 5.0])[None, :, None, None]
    fg = torch.zeros(6, 1, 16, 16, dtype=torch.bool)
    fg[:, :, 2:14, 3:13] = True
    maps = torch.where(fg, maps, torch.full_like(maps, 1000.0))  # background must be ignored
    return maps, fg


def test_fit_pixels_scales_and_tau_on_hand_made_maps():
    maps, fg = _hand_maps()
    cal = Calibrator(["a", "b"], 0.05, 0.05)
    cal.fit_pixels(maps, fg)
    for v in range(2):
        expected = np.quantile(maps[:, v][fg[:, 0]].numpy(), 0.99)
        assert float(cal.map_scale[v]) == pytest.approx(expected, rel=1e-5)
    combined = cal.combine_maps(maps, raw=True)
    expected_c = (maps / cal.map_scale[None, :, None, None]).amax(1, keepdim=True)
    torch.testing.assert_close(combined, expected_c)
    tau_ref = np.quantile(combined[fg].numpy(), 0.95)
    assert float(cal.tau) == pytest.approx(tau_ref, rel=1e-5)
    n_fg = int(fg.sum())
    share = float((combined[fg] > cal.tau).float().mean())
    assert abs(share - 0.05) <= 1.0 / n_fg + 1e-9


def test_combine_maps_monotone_mapping_and_mask_equivalence():
    maps, fg = _hand_maps(1)
    cal = Calibrator(["a", "b"], 0.05, 0.1)
    cal.fit_pixels(maps, fg)
    c = cal.combine_maps(maps, raw=True)
    a = cal.combine_maps(maps)
    assert a.shape == (6, 1, 16, 16)
    torch.testing.assert_close(a, c / (c + cal.tau))
    assert bool(((a >= 0) & (a < 1)).all())
    assert torch.equal(a > 0.5, c > cal.tau)
    order_c, order_a = c.flatten().argsort(), a.flatten()
    assert bool((order_a[order_c].diff() >= 0).all())  # monotone in c


def test_maps_left_out_of_the_mask_change_nothing_and_averaging_is_a_box():
    """``in_mask`` drops a map from the combined map; ``map_radius`` box-averages it."""
    maps, fg = _hand_maps(3)
    three = torch.cat([maps, 50.0 * maps[:, :1]], 1)  # a third, huge map left out
    cal = Calibrator(["a", "b", "c"], 0.05, 0.1, map_radius=1)
    cal.fit_pixels(three, fg, in_mask=[True, True, False])
    ref = Calibrator(["a", "b"], 0.05, 0.1, map_radius=1)
    ref.fit_pixels(maps, fg)
    c, c_ref = cal.combine_maps(three, raw=True), ref.combine_maps(maps, raw=True)
    torch.testing.assert_close(c, c_ref)
    assert float(cal.tau) == pytest.approx(float(ref.tau))
    # the average over the 3x3 box (2x2 at corners, 2x3 at edges) of the pixel-wise maximum
    peak = (maps / ref.map_scale[None, :, None, None]).amax(1, keepdim=True)
    assert float(c[0, 0, 5, 7]) == pytest.approx(float(peak[0, 0, 4:7, 6:9].mean()), rel=1e-5)
    assert float(c[0, 0, 0, 0]) == pytest.approx(float(peak[0, 0, :2, :2].mean()), rel=1e-5)
    # calibrated on the averaged map: the mask's share of real foreground is pixel_fpr
    share = float((c[fg] > cal.tau).float().mean())
    assert abs(share - 0.1) <= 1.0 / int(fg.sum()) + 1e-9
    fresh = Calibrator(["a", "b", "c"], 0.05, 0.1)  # radius and flags come from the state
    fresh.load_state_dict(cal.state_dict())
    assert int(fresh.map_radius) == 1 and fresh.map_in_mask.tolist() == [True, True, False]
    torch.testing.assert_close(fresh.combine_maps(three), cal.combine_maps(three))


def test_fit_pixels_and_map_radius_refuse_bad_values():
    maps, fg = _hand_maps(4)
    cal = Calibrator(["a", "b"], 0.05, 0.1)
    with pytest.raises(ValueError, match=r"`in_mask` must flag 2 maps with at least one True"):
        cal.fit_pixels(maps, fg, in_mask=[False, False])
    with pytest.raises(ValueError, match=r"`in_mask` must flag 2 maps .*got \[True\]"):
        cal.fit_pixels(maps, fg, in_mask=[True])
    with pytest.raises(ValueError, match=r"`map_radius` must be an int >= 0, got -1"):
        Calibrator(["a", "b"], 0.05, 0.1, map_radius=-1)
    with pytest.raises(ValueError, match=r"`map_radius` must be an int >= 0, got 1.5"):
        Calibrator(["a", "b"], 0.05, 0.1, map_radius=1.5)


def test_state_dict_of_a_format_4_2_guard_combines_every_map_without_averaging():
    """Guards saved before the mask's averaging load with none and every map in the mask."""
    maps, fg = _hand_maps(5)
    old_cal = Calibrator(["a", "b"], 0.05, 0.1)
    old_cal.fit_pixels(maps, fg)
    old = {k: v for k, v in old_cal.state_dict().items() if k not in ("map_radius", "map_in_mask")}
    fresh = Calibrator(["a", "b"], 0.05, 0.1, map_radius=3)
    fresh.load_state_dict(old)
    assert int(fresh.map_radius) == 0 and len(fresh.map_in_mask) == 0
    expected = (maps / old_cal.map_scale[None, :, None, None]).amax(1, keepdim=True)
    torch.testing.assert_close(fresh.combine_maps(maps, raw=True), expected)
    # those buffers are the ones the guard's fingerprint leaves out (older guards keep theirs)
    assert fresh.legacy_defaults() == {"cal_group", "active_group", "map_in_mask", "map_radius"}
    new = Calibrator(["a", "b", "c"], 0.05, 0.1, map_radius=2)
    new.fit_pixels(torch.cat([maps, maps[:, :1]], 1), fg, in_mask=[True, True, False])
    assert new.legacy_defaults() == {"cal_group", "active_group"}


def test_map_radius_scales_with_the_size():
    from safegen_guard.calibration import map_radius

    assert [map_radius(s) for s in (32, 64, 128)] == [2, 3, 6]
    assert map_radius(32, 1) == 1 and map_radius(128, 1) == 2  # at least 1 unless 0
    assert map_radius(128, 0) == 0


def test_state_dict_round_trip_into_fresh_calibrator():
    cal = _fitted(n_b=39)
    maps, fg = _hand_maps(2)
    cal.fit_pixels(torch.cat([maps, maps[:, :1]], 1), fg)
    fresh = Calibrator(VIEWS, 0.1, 0.05)
    assert fresh.cal_fused.shape == (0,)
    fresh.load_state_dict(cal.state_dict())
    assert fresh.cal_fused.shape == (39,) and fresh.cal_z.shape == (39, 3)
    for name, buf in cal.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], buf), name
    stats = torch.randn(5, 3, generator=_gen(9)) * 3
    for key, value in cal.decide(stats, _zeros(stats)).items():
        assert torch.equal(fresh.decide(stats, _zeros(stats))[key], value), key
    assert torch.equal(fresh.thresholds(), cal.thresholds())


def _conditional_stats(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real statistics whose level depends on a condition c in [0, 1] (like anatomy)."""
    g = _gen(seed)
    c = torch.rand(n, generator=g)
    stats = (4.0 * (c > 2 / 3).float())[:, None] + torch.randn(n, 3, generator=g)
    return stats, c


def test_mondrian_bins_hold_the_rate_within_each_condition():
    (sa, ca), (sb, cb) = _conditional_stats(900, 0), _conditional_stats(900, 1)
    test, ct = _conditional_stats(6000, 2)
    mondrian = Calibrator(VIEWS, 0.05, 0.01, n_bins=3)
    mondrian.fit_images(sa, sb, ca, cb)
    assert mondrian.n_bins == 3
    bins = mondrian.assign_bins(ct)  # Mondrian's guarantee is per bin
    single = Calibrator(VIEWS, 0.05, 0.01, n_bins=1)
    single.fit_images(sa, sb, ca, cb)
    for cal, holds in ((single, False), (mondrian, True)):
        unsafe = cal.decide(test, ct)["unsafe"].float()
        # binomial sd of a 5% rate over 2000 images is 0.5 points; 300 calibration images
        # per bin add about 1.3 points of spread to the realised rate
        assert float(unsafe.mean()) == pytest.approx(0.05, abs=0.03)
        per_bin = [float(unsafe[bins == b].mean()) for b in range(3)]
        assert all(abs(r - 0.05) < 0.035 for r in per_bin) == holds, per_bin


def test_mondrian_merges_bins_that_are_too_small():
    g = _gen(3)
    a, b = torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g)
    cal = Calibrator(VIEWS, 0.05, 0.01, n_bins=3)
    cal.fit_images(a, b, torch.full((40,), 0.2), torch.full((40,), 0.2))  # all tied
    assert cal.n_bins == 1
    with pytest.raises(ValueError, match="`n_bins` must be a positive int, got 0"):
        Calibrator(VIEWS, 0.05, 0.01, n_bins=0)


# ------------------------------------------------------------------- preparation groups
def _grouped_stats(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real statistics of two valid preparations; group 1 scores higher (like augmented CT)."""
    g = _gen(seed)
    groups = (torch.rand(n, generator=g) < 0.5).long()
    return torch.randn(n, 3, generator=g) + 1.5 * groups[:, None], groups


def test_groups_hold_the_rate_within_each_preparation():
    (sa, _), (sb, gb) = _grouped_stats(1200, 0), _grouped_stats(1200, 1)
    test, gt = _grouped_stats(8000, 2)
    zeros_a, zeros_b = torch.zeros(len(sa)), torch.zeros(len(sb))
    grouped, mixed = Calibrator(VIEWS, 0.05, 0.01), Calibrator(VIEWS, 0.05, 0.01)
    grouped.fit_images(sa, sb, zeros_a, zeros_b, gb)
    mixed.fit_images(sa, sb, zeros_a, zeros_b)
    assert grouped.n_groups == 2 and mixed.n_groups == 1
    unsafe = {
        name: c.decide(test, torch.zeros(len(test)))["unsafe"].float()
        for name, c in (("grouped", grouped), ("mixed", mixed))
    }
    # the mixture's single threshold over-rejects the higher-scoring preparation
    assert float(unsafe["mixed"][gt == 1].mean()) > 0.075
    # per group: sd of a 5 % rate over 4000 images is 0.35 points, ~600 calibration images
    # per group add about 1 point
    for g in (0, 1):
        assert float(unsafe["grouped"][gt == g].mean()) <= 0.05 + 0.025, g
    assert float(unsafe["grouped"][gt == 1].mean()) == pytest.approx(0.05, abs=0.025)


def test_groups_p_value_threshold_and_severity_agree():
    (sa, _), (sb, gb) = _grouped_stats(400, 3), _grouped_stats(400, 4)
    cal = Calibrator(VIEWS, 0.1, 0.01)
    cal.fit_images(sa, sb, torch.zeros(len(sa)), torch.zeros(len(sb)), gb)
    stats = torch.randn(300, 3, generator=_gen(5)) * 2 + 1
    d = cal.decide(stats, torch.zeros(len(stats)))
    per_group = [conformal_p_values(cal.cal_fused[cal.cal_group == g], d["fused"]) for g in (0, 1)]
    torch.testing.assert_close(d["p_value"], torch.maximum(*per_group))
    t = max(conformal_threshold(cal.cal_fused[cal.cal_group == g], 0.1) for g in (0, 1))
    assert float(cal.thresholds()[0]) == pytest.approx(t)
    assert torch.equal(d["unsafe"], d["fused"] > t)
    assert torch.equal(d["unsafe"], d["p_value"] <= 0.1)
    assert torch.equal(d["severity"] > -math.log10(0.1) + 1e-9, d["unsafe"])
    order = d["fused"].argsort()
    assert bool((d["severity"][order].diff() >= -1e-12).all())  # monotone in the statistic
    assert d["unsafe"].any() and (~d["unsafe"]).any()


def test_groups_need_enough_images_each_and_valid_labels():
    g = _gen(6)
    a, b = torch.randn(60, 3, generator=g), torch.randn(60, 3, generator=g)
    groups = torch.zeros(60, dtype=torch.long)
    groups[:10] = 1  # 10 images of group 1 cannot reject at 5 %
    cal = Calibrator(VIEWS, 0.05, 0.01)
    with pytest.raises(ValueError, match="needs at least 19 real calibration images, got 10"):
        cal.fit_images(a, b, _zeros(a), _zeros(b), groups)
    with pytest.raises(TypeError, match="integer group labels, got dtype torch.float32"):
        check_groups(torch.zeros(4), 4)
    with pytest.raises(
        ValueError, match=r"must have shape \(5,\), one label per image, got \(4,\)"
    ):
        check_groups([0, 1, 0, 1], 5)
    assert torch.equal(check_groups(None, 3), torch.zeros(3, dtype=torch.long))


def test_state_dict_without_groups_loads_as_one_group():
    """A format 4.0 guard (no ``cal_group`` buffer) decides exactly as before."""
    cal = _fitted(n_b=39)
    old = {k: v for k, v in cal.state_dict().items() if k != "cal_group"}
    fresh = Calibrator(VIEWS, 0.1, 0.05)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.cal_group, torch.zeros(39, dtype=torch.long))
    stats = torch.randn(6, 3, generator=_gen(7)) * 3
    for key, value in cal.decide(stats, _zeros(stats)).items():
        assert torch.equal(fresh.decide(stats, _zeros(stats))[key], value), key


def test_selected_group_gets_the_requested_rate_and_more_power():
    """Deciding with the narrow group's calibration only: its rate is alpha, not below."""
    (sa, _), (sb, gb) = _grouped_stats(1200, 8), _grouped_stats(1200, 9)
    test, gt = _grouped_stats(8000, 10)
    cal = Calibrator(VIEWS, 0.05, 0.01)
    cal.fit_images(sa, sb, torch.zeros(len(sa)), torch.zeros(len(sb)), gb)
    both = cal.decide(test, torch.zeros(len(test)))
    cal.select_groups(0)
    assert cal.decision_groups == [0] and cal.groups == [0, 1]
    only0 = cal.decide(test, torch.zeros(len(test)))
    narrow = gt == 0
    # with both groups the narrow group is rejected well below alpha (the wide group's
    # threshold is higher); with its own calibration alone it is rejected at alpha
    assert float(both["unsafe"][narrow].float().mean()) < 0.03
    assert float(only0["unsafe"][narrow].float().mean()) == pytest.approx(0.05, abs=0.02)
    # the same calibration images of group 0 decide: the p-value is theirs alone
    ref = cal.cal_fused[cal.cal_group == 0]
    torch.testing.assert_close(only0["p_value"], conformal_p_values(ref, only0["fused"]))
    assert torch.equal(only0["unsafe"], only0["p_value"] <= 0.05)
    assert torch.equal(only0["severity"] > -math.log10(0.05) + 1e-9, only0["unsafe"])
    # an image rejected with both groups is rejected with one of them
    assert bool((only0["unsafe"] | ~both["unsafe"]).all())
    cal.select_groups([1, 0])  # every group: the default, stored as such
    assert cal.decision_groups == [0, 1] and len(cal.active_group) == 0
    cal.select_groups(0)
    cal.select_groups(None)
    assert cal.decision_groups == [0, 1]
    assert torch.equal(cal.decide(test, torch.zeros(len(test)))["unsafe"], both["unsafe"])


def test_select_groups_rejects_bad_labels_and_round_trips():
    (sa, _), (sb, gb) = _grouped_stats(200, 11), _grouped_stats(200, 12)
    cal = Calibrator(VIEWS, 0.1, 0.01)
    with pytest.raises(NotFittedError):
        cal.select_groups(0)
    cal.fit_images(sa, sb, torch.zeros(len(sa)), torch.zeros(len(sb)), gb)
    with pytest.raises(ValueError, match=r"no calibration images in preparation group\(s\) \[2\]"):
        cal.select_groups([0, 2])
    with pytest.raises(ValueError, match="distinct groups"):
        cal.select_groups([1, 1])
    with pytest.raises(ValueError, match="distinct groups"):
        cal.select_groups([])
    with pytest.raises(TypeError, match="must hold ints"):
        cal.select_groups(["plain"])
    with pytest.raises(TypeError, match="an int, a list of ints or None"):
        cal.select_groups(True)
    cal.select_groups([1])
    fresh = Calibrator(VIEWS, 0.1, 0.01)
    fresh.load_state_dict(cal.state_dict())
    assert fresh.decision_groups == [1]
    stats = torch.randn(50, 3, generator=_gen(13)) * 2 + 1
    for key, value in cal.decide(stats, _zeros(stats)).items():
        assert torch.equal(fresh.decide(stats, _zeros(stats))[key], value), key
    # a refit decides with every group again
    cal.fit_images(sa, sb, torch.zeros(len(sa)), torch.zeros(len(sb)), gb)
    assert cal.decision_groups == [0, 1]


def test_state_dict_without_active_groups_decides_with_all():
    """A format 4.1 guard (no ``active_group`` buffer) decides with every group."""
    (sa, _), (sb, gb) = _grouped_stats(200, 14), _grouped_stats(200, 15)
    cal = Calibrator(VIEWS, 0.1, 0.01)
    cal.fit_images(sa, sb, torch.zeros(len(sa)), torch.zeros(len(sb)), gb)
    old = {k: v for k, v in cal.state_dict().items() if k != "active_group"}
    fresh = Calibrator(VIEWS, 0.1, 0.01)
    fresh.load_state_dict(old)
    assert fresh.decision_groups == [0, 1]

"""The reader-study analysis on simulated readers: planted effects found, null effects not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("statsmodels")

from safegen_guard.review.study_analysis import analyze, write_analysis  # noqa: E402


def simulate(n_readers, n_images, acc_unassisted, acc_assisted, seed, reader_sd=0.3):
    """Every reader reads every image in both arms; reader ability varies on the logit scale."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n_images) % 2 == 0
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    rows = []
    for r in range(n_readers):
        ability = rng.normal(0, reader_sd)
        for arm, acc in (("unassisted", acc_unassisted), ("assisted", acc_assisted)):
            p = 1 / (1 + np.exp(-(logit(acc) + ability)))
            correct = rng.random(n_images) < p
            rows += [
                {
                    "reader": f"r{r}",
                    "case": f"c{i}",
                    "arm": arm,
                    "truth_unsafe": bool(truth[i]),
                    "said_unsafe": bool(truth[i] == correct[i]),
                    "seconds": float(rng.lognormal(1.0, 0.3)),
                    "trust": int(rng.integers(1, 6)),
                }
                for i in range(n_images)
            ]
    return pd.DataFrame(rows)


def test_planted_15_point_gain_is_recovered(tmp_path):
    df = simulate(10, 100, 0.70, 0.85, seed=1)
    res = analyze(df)
    acc = res["tests"]["accuracy"]
    assert 0.10 < acc["mean_change"] < 0.20
    assert acc["change_ci"][0] > 0 and acc["anova_rm"]["p"] < 0.05 and acc["paired_t_p"] < 0.05
    assert acc["anova_rm"]["df_num"] == 1 and acc["anova_rm"]["df_den"] == 9
    # with two levels the repeated-measures F is the square of the paired t statistic
    from scipy import stats

    wide = pd.DataFrame(res["per_reader"]).pivot(index="reader", columns="arm", values="accuracy")
    t = stats.ttest_rel(wide["assisted"], wide["unassisted"]).statistic
    assert acc["anova_rm"]["F"] == pytest.approx(t**2)
    arms = res["arms"]
    assert arms["assisted"]["accuracy"]["ci_low"] > arms["unassisted"]["accuracy"]["ci_high"]
    assert res["n_readers"] == 10 and res["n_readings"] == 2000
    json_path, html_path = write_analysis(tmp_path, res, df)
    assert json.loads(json_path.read_text())["tests"]["accuracy"]["anova_rm"]["p"] < 0.05
    html = html_path.read_text()
    assert "<table>" in html and "AnovaRM" in html and "data:image/png;base64," in html


def test_no_effect_is_found_where_none_was_planted():
    p_values = [
        analyze(simulate(10, 100, 0.75, 0.75, seed=100 + s), ("accuracy",))["tests"]["accuracy"][
            "anova_rm"
        ]["p"]
        for s in range(50)
    ]
    assert sum(p > 0.05 for p in p_values) >= 45, sorted(p_values)[:8]


def test_sensitivity_and_specificity_against_hand_counts():
    df = pd.DataFrame(
        {
            "reader": ["a"] * 4 + ["b"] * 4,
            "case": ["c1", "c2"] * 4,
            "arm": (["unassisted"] * 2 + ["assisted"] * 2) * 2,
            "truth_unsafe": [True, False] * 4,
            "said_unsafe": [True, True, True, False, False, False, True, False],
            "seconds": [1.0] * 8,
            "trust": [3] * 8,
        }
    )
    arms = analyze(df)["arms"]
    assert arms["unassisted"]["sensitivity"]["value"] == 0.5  # a: yes, b: no
    assert arms["unassisted"]["specificity"]["value"] == 0.5  # a: no, b: yes
    assert arms["assisted"]["accuracy"]["value"] == 1.0
    with pytest.raises(ValueError, match="at least 2 readers, got 1"):
        analyze(df[df.reader == "a"])
    with pytest.raises(ValueError, match="must cover both arms"):
        analyze(df[df.arm == "assisted"])
    with pytest.raises(ValueError, match=r"missing \['trust'\]"):
        analyze(df.drop(columns="trust"))

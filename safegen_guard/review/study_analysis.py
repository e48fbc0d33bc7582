"""`safegen study analyze`: accuracy, sensitivity, specificity, time and trust per arm.

Per arm, pooled proportions get Wilson 95% intervals. The arms are compared on per-reader
means (each reader read every case in both arms) with the seed's repeated-measures ANOVA
(statsmodels ``AnovaRM``, within factor ``arm``, subject ``reader``) and paired tests (paired
t-test; Wilcoxon signed-rank, normal approximation) with a 95% t-interval of the mean
assisted - unassisted change.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from safegen_guard.io import atomic_write_json, atomic_write_text
from safegen_guard.review.markup import page, png_data_uri, table
from safegen_guard.review.study import ARMS, Study

__all__ = ["MEASURES", "analyze", "readings_frame", "write_analysis"]

#: per-reader measure -> label.
MEASURES = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "seconds": "decision time (s)",
    "trust": "trust (1-5)",
}


def readings_frame(study: Study):  # noqa: ANN201  (pandas is imported lazily)
    """Every reading joined with its case's truth: a pandas DataFrame with columns ``reader``,
    ``case``, ``arm``, ``truth_unsafe``, ``said_unsafe``, ``seconds``, ``trust``.
    """  # noqa: D205
    import pandas as pd

    cases = study.cases
    rows = [
        {
            "reader": r["reader"],
            "case": r["case_id"],
            "arm": r["arm"],
            "truth_unsafe": cases[r["case_id"]]["truth"] == "unsafe",
            "said_unsafe": r["decision"] == "unsafe",
            "seconds": r["decision_ms"] / 1000.0,
            "trust": r["likert"],
        }
        for r in study.store().readings()
    ]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def analyze(df, measures: tuple[str, ...] = tuple(MEASURES)) -> dict:  # noqa: ANN001
    """Per-arm summaries and arm comparisons of a readings frame (see :func:`readings_frame`).

    Args:
        df: the readings.
        measures: which per-reader measures to compare between arms (default all).

    Returns:
        JSON-able dict: ``n_readers``, ``n_readings``, ``arms`` (per arm: proportions with
        Wilson CIs, time and trust), ``per_reader`` rows, and ``tests`` (per measure: the
        AnovaRM F, dfs and p, the paired t-test and Wilcoxon p, the mean change and its CI).

    Raises:
        ValueError: missing columns, an arm without readings, fewer than two readers or an
            unknown measure.
    """
    if unknown := set(measures) - set(MEASURES):
        raise ValueError(f"measures must be among {list(MEASURES)}, got {sorted(unknown)}")
    need = {"reader", "case", "arm", "truth_unsafe", "said_unsafe", "seconds", "trust"}
    if missing := need - set(df.columns):
        raise ValueError(f"readings need columns {sorted(need)}, missing {sorted(missing)}")
    if set(df["arm"]) != set(ARMS):
        raise ValueError(f"readings must cover both arms {list(ARMS)}, got {sorted(set(df.arm))}")
    readers = sorted(set(df["reader"]))
    if len(readers) < 2:
        raise ValueError(f"the analysis needs at least 2 readers, got {len(readers)}")
    df = df.assign(correct=df["truth_unsafe"] == df["said_unsafe"])
    per_reader = _per_reader(df)
    return {
        "n_readers": len(readers),
        "n_readings": int(len(df)),
        "arms": {arm: _arm_summary(df[df["arm"] == arm]) for arm in ARMS},
        "per_reader": per_reader.to_dict("records"),
        "tests": {m: _compare(per_reader, m) for m in measures},
    }


def _wilson(k: int, n: int) -> dict:
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return {"value": k / n, "ci_low": float(lo), "ci_high": float(hi), "n": int(n)}


def _arm_summary(d) -> dict:  # noqa: ANN001
    pos, neg = d[d["truth_unsafe"]], d[~d["truth_unsafe"]]
    return {
        "readings": int(len(d)),
        "accuracy": _wilson(int(d["correct"].sum()), len(d)),
        "sensitivity": _wilson(int(pos["said_unsafe"].sum()), len(pos)),
        "specificity": _wilson(int((~neg["said_unsafe"]).sum()), len(neg)),
        "seconds_median": float(d["seconds"].median()),
        "seconds_mean": float(d["seconds"].mean()),
        "trust_mean": float(d["trust"].mean()),
    }


def _per_reader(df):  # noqa: ANN001, ANN202
    d = df.assign(
        sensitivity=df["said_unsafe"].where(df["truth_unsafe"]).astype(float),
        specificity=(~df["said_unsafe"]).where(~df["truth_unsafe"]).astype(float),
        accuracy=df["correct"].astype(float),
    )
    cols = ["accuracy", "sensitivity", "specificity", "seconds", "trust"]
    return d.groupby(["reader", "arm"])[cols].mean().astype(float).reset_index()


def _compare(per_reader, measure: str) -> dict:  # noqa: ANN001
    from scipy import stats
    from statsmodels.stats.anova import AnovaRM

    wide = per_reader.pivot(index="reader", columns="arm", values=measure).dropna()
    out: dict = {"n_readers": int(len(wide))}
    if len(wide) < 2:
        return out | {"note": "fewer than 2 readers with both arms"}
    diff = (wide["assisted"] - wide["unassisted"]).to_numpy()
    out["mean_unassisted"] = float(wide["unassisted"].mean())
    out["mean_assisted"] = float(wide["assisted"].mean())
    out["mean_change"] = float(diff.mean())
    if np.allclose(diff, diff[0]):  # no variation: the tests are undefined
        return out | {"note": "identical change for every reader; tests undefined"}
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    out["change_ci"] = [float(diff.mean() - half), float(diff.mean() + half)]
    long = wide.reset_index().melt(id_vars="reader", var_name="arm", value_name="y")
    table_ = AnovaRM(long, depvar="y", subject="reader", within=["arm"]).fit().anova_table
    row = table_.loc["arm"]
    out["anova_rm"] = {
        "F": float(row["F Value"]),
        "df_num": float(row["Num DF"]),
        "df_den": float(row["Den DF"]),
        "p": float(row["Pr > F"]),
    }
    out["paired_t_p"] = float(stats.ttest_rel(wide["assisted"], wide["unassisted"]).pvalue)
    # normal approximation with tie correction: per-reader accuracies tie often, and scipy's
    # exact alternative for ties is a slow permutation test
    wil = stats.wilcoxon(diff, method="approx") if np.any(diff != 0) else None
    out["wilcoxon_p"] = float(wil.pvalue) if wil is not None else 1.0
    return out


def write_analysis(folder: str | Path, result: dict, df) -> tuple[Path, Path]:  # noqa: ANN001
    """Write ``analysis.json`` and ``analysis.html`` (plots embedded) to ``folder``."""
    folder = Path(folder)
    json_path = atomic_write_json(folder / "analysis.json", result)
    arms = result["arms"]
    arm_rows = [
        [
            arm,
            a["readings"],
            *[_ci(a[k]) for k in ("accuracy", "sensitivity", "specificity")],
            a["seconds_median"],
            a["trust_mean"],
        ]
        for arm, a in arms.items()
    ]
    test_rows = []
    for m, t in result["tests"].items():
        anova = t.get("anova_rm", {})
        ci = t.get("change_ci")
        test_rows.append(
            [
                MEASURES[m],
                t.get("mean_unassisted", math.nan),
                t.get("mean_assisted", math.nan),
                t.get("mean_change", math.nan),
                f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "-",
                f"F({anova['df_num']:.0f}, {anova['df_den']:.0f}) = {anova['F']:.3g}"
                if anova
                else t.get("note", "-"),
                _p(anova.get("p")),
                _p(t.get("paired_t_p")),
                _p(t.get("wilcoxon_p")),
            ]
        )
    body = (
        "<h1>Reader study analysis</h1>"
        + f"<p>{result['n_readers']} readers, {result['n_readings']} readings.</p>"
        + "<h2>Per arm (pooled readings, Wilson 95% CI)</h2>"
        + table(
            ["arm", "readings", "accuracy", "sensitivity", "specificity", "median s", "trust"],
            arm_rows,
        )
        + "<h2>Assisted vs unassisted (per-reader means)</h2>"
        + table(
            [
                "measure",
                "unassisted",
                "assisted",
                "change",
                "95% CI",
                "AnovaRM",
                "p",
                "paired t p",
                "Wilcoxon p",
            ],
            test_rows,
        )
        + f'<img alt="per-reader plots" src="{png_data_uri(_plots(result))}">'
    )
    html_path = atomic_write_text(folder / "analysis.html", page("Reader study analysis", body))
    return json_path, html_path


def _ci(s: dict) -> str:
    if s["value"] is None:
        return "-"
    return f"{s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def _p(p: float | None) -> str:
    return "-" if p is None else ("<1e-4" if p < 1e-4 else f"{p:.3g}")


def _plots(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = result["per_reader"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=90)
    for ax, m in zip(axes, ("accuracy", "seconds", "trust")):
        for reader in sorted({r["reader"] for r in rows}):
            ys = [next(r[m] for r in rows if r["reader"] == reader and r["arm"] == a) for a in ARMS]
            ax.plot([0, 1], ys, "o-", color="0.6", lw=1)
        means = [np.mean([r[m] for r in rows if r["arm"] == a]) for a in ARMS]
        ax.plot([0, 1], means, "o-", color="#b00020", lw=3, label="mean")
        ax.set_xticks([0, 1], list(ARMS))
        ax.set_title(MEASURES[m])
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()

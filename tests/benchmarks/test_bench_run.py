"""A miniature benchmark end to end: schema, metric values vs references, report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks import report
from benchmarks.run import main
from benchmarks.stats import auroc_contributions

KINDS = ("noise_local", "blur_global")
METHODS = ("safegen", "plain_ae", "dae", "phanes", "dia")
METRICS = {
    "auroc",
    "auprc",
    "precision",
    "recall",
    "f1",
    "false_reject_rate",
    "iou",
    "dice",
    "pixel_auroc",
    "pixel_auprc",
    "pointing_game",
    "topk_intersection",
    "insertion_auc",
    "deletion_auc",
}


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--suite",
        "tiny",
        "--steps",
        "2",
        "--size",
        "32",
        "--kinds",
        ",".join(KINDS),
        "--out",
        str(out),
        "--quiet",
        "--save-scores",
        "--no-generated",
    ]
    return main(argv), out


def test_schema(mini_run) -> None:
    results, out = mini_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["schema_version"] == 2 and on_disk["suite"] == "tiny"
    for key in ("seed", "command", "created", "versions", "platform", "wall_seconds"):
        assert key in on_disk
    ds = on_disk["datasets"]["mni152"]
    assert set(ds) >= {
        "data",
        "config",
        "methods",
        "cells",
        "pooled",
        "comparisons",
        "generated",
        "phase_seconds",
        "figures",
    }
    assert set(ds["methods"]) == set(METHODS)
    assert len(ds["data"]["fingerprint"]) == 16
    assert sorted((c["kind"], c["severity"]) for c in ds["cells"]) == sorted(
        (k, s) for k in KINDS for s in ("mild", "strong")
    )
    for cell in ds["cells"]:
        for name in METHODS:
            assert set(cell["methods"][name]) == METRICS
    cells = {(c["kind"], c["severity"]): c["methods"] for c in ds["cells"]}
    assert cells[("noise_local", "mild")]["dia"]["dice"] is None  # image-level only
    assert cells[("blur_global", "mild")]["safegen"]["dice"] is None  # global kind
    assert set(ds["pooled"]) == {"overall", "mild", "strong", "local", "global"}
    baselines = {c["baseline"] for c in ds["comparisons"]}
    assert baselines == set(METHODS[1:])
    assert ds["generated"]["status"] == "skipped"
    for name in ("results.md", "report.html", *ds["figures"]):
        assert (out / name).stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "<pre>" not in page and "| ---" not in page and "|---" not in page
    assert page.count("<table>") >= 5 and "<th>method</th>" in page


def test_metrics_match_references(mini_run) -> None:
    results, out = mini_run
    ds = results["datasets"]["mni152"]
    scores = np.load(out / "scores_mni152.npz")
    for name in METHODS:
        clean = scores[f"{name}/clean"]
        thr = ds["methods"][name]["threshold"]
        for cell in ds["cells"]:
            anom = scores[f"{name}/{cell['kind']}/{cell['severity']}"]
            y, s = np.r_[np.zeros(len(clean)), np.ones(len(anom))], np.r_[clean, anom]
            got = cell["methods"][name]
            assert got["auroc"] == pytest.approx(roc_auc_score(y, s))
            assert got["auprc"] == pytest.approx(average_precision_score(y, s))
            assert got["recall"] == pytest.approx(float((anom > thr).mean()))
            assert got["false_reject_rate"] == pytest.approx(float((clean > thr).mean()))
    comp = next(
        c
        for c in ds["comparisons"]
        if c["cell"] == "noise_local/strong" and c["baseline"] == "plain_ae"
    )
    ua = auroc_contributions(scores["safegen/clean"], scores["safegen/noise_local/strong"])
    ub = auroc_contributions(scores["plain_ae/clean"], scores["plain_ae/noise_local/strong"])
    if comp["p_value"] is not None:
        assert comp["p_value"] == pytest.approx(sps.ttest_rel(ua, ub).pvalue)
    assert comp["auroc_diff"] == pytest.approx(ua.mean() - ub.mean())


def test_readme_section(mini_run, tmp_path) -> None:
    results, _ = mini_run
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.START}\nold\n{report.END}\n\ntail\n")
    report.update_readme(readme, results)
    text = readme.read_text()
    assert "old" not in text and text.endswith("tail\n") and "| SAFEGEN" in text
    report.update_readme(readme, results)  # idempotent
    assert text == readme.read_text()
    (tmp_path / "bad.md").write_text("no markers")
    with pytest.raises(ValueError, match="must contain"):
        report.update_readme(tmp_path / "bad.md", results)


def test_markdown_to_html_tables_headings_and_code() -> None:
    md = "# T\n\nrun `quick` <ok>\n\n| a | b |\n|---|---|\n| 1 | `x` |\n| 2 | y |\n\ntail"
    assert report.markdown_to_html(md) == (
        "<h1>T</h1><p>run <code>quick</code> &lt;ok&gt;</p>"
        "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td><code>x</code></td></tr>"
        "<tr><td>2</td><td>y</td></tr></table><p>tail</p>"
    )

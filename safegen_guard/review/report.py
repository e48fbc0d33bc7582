"""`safegen score --report`: a self-contained, paginated HTML report of one scoring run.

Everything lives under the run's output folder (pages in ``report/``, panels in
``overlays/``, plots embedded as data URIs); nothing is fetched from the network.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from safegen_guard.io import atomic_write_text
from safegen_guard.review.glossary import REASONS, describe
from safegen_guard.review.markup import esc, page, png_data_uri, table

__all__ = ["write_report", "sort_worst_first"]


def sort_worst_first(records: Sequence[dict]) -> list[dict]:
    """Records by decreasing score (non-finite images, score ``"inf"``, first)."""
    return sorted(records, key=lambda r: -_score(r))


def write_report(
    out: str | Path,
    records: Sequence[dict],
    summary: dict,
    calibration_scores: Sequence[float],
    *,
    threshold: float,
    per_page: int = 100,
) -> Path:
    """Write ``out/report/index.html`` (summary + first page) and ``page-NNN.html`` files.

    Args:
        out: the scoring run's folder (panels referenced as ``out/overlays/...``).
        records: this run's verdict records (``Verdict.to_records`` plus ``path`` and
            optionally ``overlay``, a path relative to ``out``).
        summary: counts as written to ``summary.json``.
        calibration_scores: scores of the guard's real reference images (the baseline).
        threshold: the p-value threshold of ``unsafe``.
        per_page: image rows per page.

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: ``per_page`` is not a positive int.
    """
    if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
        raise ValueError(f"`per_page` must be a positive int, got {per_page!r}")
    folder = Path(out) / "report"
    rows = sort_worst_first(records)
    n_pages = max(1, math.ceil(len(rows) / per_page))
    names = ["index.html"] + [f"page-{k + 1:03d}.html" for k in range(1, n_pages)]
    head = _summary(records, summary, calibration_scores, threshold)
    for k, name in enumerate(names):
        chunk = rows[k * per_page : (k + 1) * per_page]
        nav = _nav(names, k)
        body = (head if k == 0 else "<h1>SAFEGEN report</h1>") + nav
        body += f"<h2>Images {k * per_page + 1}-{k * per_page + len(chunk)} of {len(rows)}"
        body += " (worst first)</h2>" + _image_rows(chunk, k * per_page) + nav + _glossary()
        atomic_write_text(folder / name, page(f"SAFEGEN report, page {k + 1}", body))
    return folder / "index.html"


def _score(r: dict) -> float:
    s = r.get("score", 0.0)
    return math.inf if s == "inf" else float(s)


def _summary(records: Sequence[dict], summary: dict, cal: Sequence[float], alpha: float) -> str:
    n, n_unsafe = len(records), sum(bool(r["unsafe"]) for r in records)
    reasons = Counter(x for r in records for x in r.get("reasons", []))
    facts = [
        ["images scored", n],
        ["unsafe", n_unsafe],
        ["unsafe rate", f"{n_unsafe / max(n, 1):.1%}"],
        ["files skipped", summary.get("skipped_files", 0)],
        ["unsafe if p-value <=", alpha],
        ["guard fingerprint", summary.get("guard", "")],
    ]
    reason_rows = [
        [name, count, f"{count / max(n_unsafe, 1):.0%}", describe(name)]
        for name, count in reasons.most_common()
    ]
    plot = png_data_uri(_distribution_png([_score(r) for r in records], cal, alpha, reasons))
    return (
        "<h1>SAFEGEN report</h1>"
        + table(["", "value"], facts)
        + "<h2>Reasons</h2>"
        + (
            table(["reason", "images", "share of unsafe", "meaning"], reason_rows)
            if reason_rows
            else "<p>No image was flagged.</p>"
        )
        + "<h2>Scores against real calibration scans</h2>"
        + f'<img alt="score distribution" src="{plot}">'
        + '<p class="small">score = -log10(p-value); real scans follow the grey histogram; '
        + f"images right of the dashed line (p &lt;= {esc(alpha)}) are unsafe. "
        + "Evidence panels: the image, the combined heatmap (or the anomaly map) with the mask "
        + "contour in green, Grad-CAM and SHAP when explained, the mask. "
        + '<a href="#glossary">Glossary of reasons</a>.</p>'
    )


def _glossary() -> str:
    return '<h2 id="glossary">Glossary of reasons</h2>' + table(
        ["reason", "meaning"], REASONS.items()
    )


def _distribution_png(
    scores: list[float], cal: Sequence[float], alpha: float, reasons: Counter
) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    finite = np.array([s for s in scores if math.isfinite(s)], dtype=float)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.2), dpi=90)
    top = max([*finite.tolist(), *cal, -math.log10(alpha)], default=1.0)
    bins = np.linspace(0, top * 1.05 + 1e-9, 30)
    ax.hist(list(cal), bins=bins, density=True, color="0.6", label="real calibration scans")
    if len(finite):
        ax.hist(finite, bins=bins, density=True, histtype="step", lw=2, label="scored images")
    ax.axvline(-math.log10(alpha), ls="--", color="k", label=f"p = {alpha:g}")
    ax.set_xlabel("score (-log10 p)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    names = [k for k, _ in reasons.most_common()] or ["(none)"]
    bx.barh(names, [reasons.get(k, 0) for k in names], color="#b00020")
    bx.invert_yaxis()
    bx.set_xlabel("unsafe images with this reason")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _nav(names: list[str], current: int) -> str:
    if len(names) == 1:
        return ""
    links = [
        f"<b>{k + 1}</b>" if k == current else f'<a href="{n}">{k + 1}</a>'
        for k, n in enumerate(names)
    ]
    return "<nav>pages: " + " ".join(links) + "</nav>"


def _image_rows(rows: Sequence[dict], offset: int) -> str:
    body = []
    for k, r in enumerate(rows):
        label = "unsafe" if r["unsafe"] else "safe"
        panel = (
            f'<img class="panel" loading="lazy" alt="evidence" src="../{esc(r["overlay"])}">'
            if r.get("overlay")
            else '<span class="small">no panel</span>'
        )
        fired = set(r.get("reasons", []))
        views = "<br>".join(
            (f"<b>{esc(v)}</b>" if v in fired else esc(v)) + f" {p:.3g}"
            for v, p in sorted(r.get("view_p_values", {}).items(), key=lambda kv: kv[1])
        )
        reasons = ", ".join(r.get("reasons", [])) or "-"
        where = f"{r.get('path', '')}" + (f" [{r['index']}]" if r.get("index") else "")
        body.append(
            [
                offset + k + 1,
                panel,
                f'<span class="{label}">{label}</span>',
                f"{r['p_value']:.4g}",
                esc(reasons),
                views,
                esc(where),
            ]
        )
    return table(
        ["#", "evidence", "verdict", "p-value", "reasons", "view p-values", "file"],
        body,
        raw=(1, 2, 4, 5, 6),
    )

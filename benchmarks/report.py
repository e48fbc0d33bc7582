"""Render benchmark results: terminal summary, results.md, report.html, README section.

Regenerate the README table from a finished run (the text between the markers
<!-- benchmark:start --> and <!-- benchmark:end -->):

  python -m benchmarks.report --readme README.md --results results/results.json

Without --readme the Markdown results are printed.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

from safegen_guard.console import plain_help, run_main
from safegen_guard.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from safegen_guard.review.markup import page, png_data_uri, table

__all__ = [
    "summary_table",
    "markdown",
    "html_report",
    "write_outputs",
    "update_readme",
    "readme_section",
    "main",
]

START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
_OVERALL = [
    ("auroc", "AUROC"),
    ("auprc", "AUPRC"),
    ("precision", "prec."),
    ("recall", "recall"),
    ("f1", "F1"),
    ("false_reject_rate", "FRR"),
    ("dice", "Dice"),
    ("iou", "IoU"),
    ("pixel_auroc", "px AUROC"),
    ("pixel_auprc", "px AUPRC"),
    ("pointing_game", "pointing"),
    ("topk_intersection", "top-k"),
    ("insertion_auc", "ins. AUC"),
    ("deletion_auc", "del. AUC"),
]


def _f(v: object, digits: int = 3) -> str:
    return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _p(p: float | None) -> str:
    return "–" if p is None else ("<1e-4" if p < 1e-4 else f"{p:.3g}")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
    ]


def _overall(ds: dict, keys: list[tuple[str, str]], group: str = "overall") -> list[str]:
    rows = []
    for name, info in ds["methods"].items():
        vals = ds["pooled"][group][name]
        rows.append(
            [
                info["label"],
                *[_f(vals.get(k)) for k, _ in keys],
                _f(info.get("images_per_s"), 1),
                _f(info.get("fit_seconds"), 1),
            ]
        )
    return _table(["method", *[h for _, h in keys], "img/s", "fit s"], rows)


def _comparisons(ds: dict, cells: tuple[str, ...]) -> list[str]:
    rows = [
        [
            c["cell"],
            ds["methods"][c["baseline"]]["label"].split(" (")[0],
            f"{c['auroc_diff']:+.3f}",
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]",
            _p(c["p_value"]),
        ]
        for c in ds["comparisons"]
        if c["cell"] in cells
    ]
    return _table(
        ["test set", "baseline", "ΔAUROC (SAFEGEN − b)", "95% bootstrap CI", "paired t p"], rows
    )


def _per_cell(ds: dict, key: str, with_p: bool) -> list[str]:
    names = list(ds["methods"])
    pv = {(c["cell"], c["baseline"]): c["p_value"] for c in ds["comparisons"]}
    rows = []
    for cell in ds["cells"]:
        label = f"{cell['kind']}/{cell['severity']}"
        if key != "auroc" and not cell["local"]:
            continue
        row = [label]
        for n in names:
            v = _f(cell["methods"][n].get(key))
            if with_p and n != "safegen" and v != "–":
                v += f" (p {_p(pv.get((label, n)))})"
            row.append(v)
        rows.append(row)
    return _table(
        ["kind/severity", *[ds["methods"][n]["label"].split(" (")[0] for n in names]], rows
    )


def _generated(ds: dict) -> list[str]:
    g = ds.get("generated", {})
    if g.get("status") == "skipped":
        return [f"Generated samples skipped: {g.get('reason')}."]
    names = list(ds["methods"])
    rows = [
        [
            model,
            str(e["steps"]),
            str(e["n"]),
            *[_f(e["verdicts"][n]["flagged_rate"], 2) for n in names],
        ]
        for model, e in g.get("generators", {}).items()
    ]
    out = _table(["generator", "train steps", "n", *[f"flagged: {n}" for n in names]], rows)
    return out + ([f"\nNote: {g['reason']}"] if g.get("reason") else [])


def markdown(results: dict) -> str:
    """The full ``results.md``."""
    lines = [
        "# SAFEGEN benchmark results",
        "",
        f"Suite `{results['suite']}`, seed {results['seed']}, created {results['created']}, "
        f"wall time {results.get('wall_seconds', 0):.0f} s. Command: `{results['command']}`.",
        "",
    ]
    for name, ds in results["datasets"].items():
        lines += [
            f"## {name}",
            "",
            f"Data fingerprint `{ds['data']['fingerprint']}`; "
            f"{ds['data']['n_train']} train / {ds['data']['n_val']} val / "
            f"{ds['data']['n_test_clean']} clean test slices at "
            f"{ds['data']['image_size']} px; {ds['config']['budget_steps']} training steps "
            f"per method (batch {ds['config']['batch_size']}).",
            "",
            "### Overall (all kinds and severities pooled)",
            "",
            *_overall(ds, _OVERALL),
            "",
            "### Paired tests, SAFEGEN vs each baseline",
            "",
            *_comparisons(ds, ("overall", "mild", "strong", "local", "global")),
            "",
            "### Image AUROC per kind and severity (paired t-test p vs SAFEGEN)",
            "",
            *_per_cell(ds, "auroc", True),
            "",
            "### Dice per local kind (calibrated masks)",
            "",
            *_per_cell(ds, "dice", False),
            "",
            "### Pointing game per local kind",
            "",
            *_per_cell(ds, "pointing_game", False),
            "",
            "### Generated samples (share flagged at each method's 5% threshold)",
            "",
            *_generated(ds),
            "",
            "### Phase wall times (s)",
            "",
            ", ".join(f"{k} {v:.1f}" for k, v in ds["phase_seconds"].items()),
            "",
        ]
    return "\n".join(lines)


def summary_table(results: dict) -> str:
    """Short terminal summary: overall metrics and paired p-values per dataset."""
    keys = [
        ("auroc", "AUROC"),
        ("f1", "F1"),
        ("false_reject_rate", "FRR"),
        ("dice", "Dice"),
        ("pointing_game", "pointing"),
    ]
    out = []
    for name, ds in results["datasets"].items():
        out += [f"\n== {name} ==", *_overall(ds, keys), "", *_comparisons(ds, ("overall",))]
    return "\n".join(out)


def readme_section(results: dict) -> str:
    """The README block: overall table + per-cell AUROC with p-values (from results.json)."""
    lines = [
        START,
        "",
        f"_Generated by `python -m benchmarks.report` from a "
        f"`{results['suite']}` run (seed {results['seed']}, {results['created']}); "
        "do not edit by hand._",
        "",
    ]
    keys = [
        ("auroc", "AUROC"),
        ("auprc", "AUPRC"),
        ("f1", "F1"),
        ("false_reject_rate", "FRR"),
        ("dice", "Dice"),
        ("pointing_game", "pointing"),
    ]
    for name, ds in results["datasets"].items():
        lines += [
            f"**{name}**",
            "",
            *_overall(ds, keys),
            "",
            *_comparisons(ds, ("overall",)),
            "",
            "<details><summary>AUROC per artifact kind</summary>",
            "",
            *_per_cell(ds, "auroc", True),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines + [END])


def update_readme(readme: str | Path, results: dict) -> None:
    """Replace the text between the benchmark markers of ``readme`` (atomically).

    Raises:
        ValueError: the markers are missing or out of order.
    """
    text = Path(readme).read_text()
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"{readme} must contain {START!r} followed by {END!r}")
    atomic_write_text(readme, text[:i] + readme_section(results) + text[j + len(END) :])


def html_report(results: dict, figures: dict[str, bytes]) -> str:
    """Self-contained HTML: the results as HTML tables, every figure embedded as a PNG."""
    imgs = "".join(
        f'<figure><img src="{png_data_uri(b)}" alt="{html.escape(n)}">'
        f"<figcaption>{html.escape(n)}</figcaption></figure>"
        for n, b in sorted(figures.items())
        if n.endswith(".png")
    )
    body = markdown_to_html(markdown(results))
    return page("SAFEGEN benchmark", body + "<h2>Figures</h2>" + imgs)


def markdown_to_html(text: str) -> str:
    """HTML of the Markdown subset this module writes: headings, pipe tables, paragraphs.

    Example:
        >>> markdown_to_html("## Results of `quick`")
        '<h2>Results of <code>quick</code></h2>'
    """
    out: list[str] = []
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # skip the |---| row
                rows.append(cells)
            continue
        if rows:
            out.append(_inline_code(table(rows[0], rows[1:])))
            rows = []
        m = re.match(r"(#{1,3}) (.*)", line)
        if m:
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline_code(html.escape(m.group(2)))}</h{n}>")
        elif line.strip():
            out.append(f"<p>{_inline_code(html.escape(line))}</p>")
    return "".join(out)


def _inline_code(escaped: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)


def write_outputs(results: dict, figures: dict[str, bytes], out: str | Path) -> None:
    """Write ``results.json``, ``results.md``, ``report.html`` and the PNGs, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in figures.items():
        atomic_write_bytes(out / name, data)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    atomic_write_text(out / "report.html", html_report(results, figures))


def main(argv: list[str] | None = None) -> None:
    """CLI: ``--readme README.md --results results/results.json`` (and/or ``--markdown``)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--results",
        default="results/results.json",
        help="results.json of a finished run (default: results/results.json)",
    )
    p.add_argument("--readme", default=None, help="README to update between the markers")
    args = p.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    if args.readme:
        update_readme(args.readme, results)
        print(f"updated {args.readme}")
    else:
        print(markdown(results))


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.report"))

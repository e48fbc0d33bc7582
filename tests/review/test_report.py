"""The HTML report of `safegen score --report`: worst first, paginated, self-contained."""

from __future__ import annotations

import re

import pytest

from safegen_guard.review.markup import table
from safegen_guard.review.report import sort_worst_first, write_report


def _records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        unsafe = i % 3 == 0
        out.append(
            {
                "index": 0,
                "path": f"in/img{i}.png",
                "unsafe": unsafe,
                "score": "inf" if i == 5 else float(i % 7),
                "p_value": 10.0 ** -(i % 7),
                "reasons": ["noise", "ring"] if unsafe else [],
                "view_p_values": {"noise": 0.01, "ring": 0.5},
                "overlay": f"overlays/img{i}.png",
            }
        )
    return out


def test_report_pages_worst_first(tmp_path):
    records = _records(25)
    summary = {"images": 25, "unsafe": 9, "skipped_files": 2, "guard": "abc"}
    index = write_report(tmp_path, records, summary, [0.1, 0.5, 1.0], threshold=0.05, per_page=10)
    pages = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert pages == ["index.html", "page-002.html", "page-003.html"]
    html = index.read_text()
    assert "<pre>" not in html and 'src="http' not in html and 'href="http' not in html
    assert "data:image/png;base64," in html  # the distribution plot is embedded
    assert "Glossary of reasons" in html and "concentric structure" in html
    files = re.findall(r"<td>(in/img\d+\.png)", html)
    assert files[0] == "in/img5.png"  # the non-finite image is the worst
    expected = [r["path"] for r in sort_worst_first(records)][:10]
    assert files == expected
    assert 'href="page-002.html"' in html
    last = (tmp_path / "report" / "page-003.html").read_text()
    assert "Images 21-25 of 25" in last and 'src="../overlays/' in last
    with pytest.raises(ValueError, match="`per_page` must be a positive int, got 0"):
        write_report(tmp_path, records, summary, [], threshold=0.05, per_page=0)


def test_table_escapes_cells_but_not_raw_columns():
    html = table(["a", "b", "c"], [["<script>", "<b>x</b>", 0.123456]], raw=(1,))
    assert "&lt;script&gt;" in html and "<b>x</b>" in html and ">0.1235<" in html


def test_every_registered_view_and_reason_has_a_glossary_entry():
    from pathlib import Path

    from safegen_guard.detector.registry import list_views
    from safegen_guard.review.glossary import REASONS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in (*list_views(), "memorized", "non_finite"):
        assert name in REASONS, f"{name} has no glossary entry"
        assert f"| `{name}` |" in readme, f"README glossary misses {name}"

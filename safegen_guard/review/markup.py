"""Small HTML building blocks shared by reports and apps (escaped, no external resources)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

__all__ = ["esc", "page", "png_data_uri", "table"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1,h2{font-weight:600}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.unsafe{color:#b00020;font-weight:600}.safe{color:#1b5e20}
img.panel{max-width:100%;image-rendering:pixelated}
nav a{margin-right:0.6em}
.small{font-size:0.85em;color:#555}
"""


def esc(value: object) -> str:
    """HTML-escape ``str(value)`` (quotes included)."""
    return html.escape(str(value), quote=True)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, raw: Sequence[int] = ()
) -> str:
    """An HTML table; cells are escaped except the column positions listed in ``raw``.

    Numbers are right-aligned and floats shown with 4 significant digits.

    Example:
        >>> table(["a"], [["<x>"]])
        '<table><tr><th>a</th></tr><tr><td>&lt;x&gt;</td></tr></table>'
    """
    out = ["<table><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for k, cell in enumerate(row):
            if k in raw:
                out.append(f"<td>{cell}</td>")
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                text = f"{cell:.4g}" if isinstance(cell, float) else str(cell)
                out.append(f'<td class="num">{text}</td>')
            else:
                out.append(f"<td>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a page."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def page(title: str, body: str, *, head: str = "") -> str:
    """A complete HTML5 page with the shared inline style (no external resources)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style>{head}</head><body>{body}</body></html>\n"
    )

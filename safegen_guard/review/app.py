"""`safegen review`: accept / reject / unsure flagged images by keyboard, decisions in SQLite.

Run ``safegen review results/`` and open the printed URL. Keys: ``a`` accept, ``r`` reject,
``u`` unsure, ``n`` write a note (Enter to leave the note field), ``j``/``k`` next/previous.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_from_directory

from safegen_guard.review.glossary import REASONS
from safegen_guard.review.items import load_items
from safegen_guard.review.markup import esc, page
from safegen_guard.review.store import DECISIONS, DecisionStore

__all__ = ["create_review_app"]


def create_review_app(
    folder: str | Path, *, db: str | Path | None = None, reviewer: str = "reviewer"
) -> Flask:
    """The review app over ``folder`` (see :func:`~safegen_guard.review.items.load_items`).

    Args:
        folder: a ``safegen score --out`` folder or a callback's quarantine folder. Only files
            under it are served.
        db: SQLite file of the decisions (default ``<folder>/review.sqlite``).
        reviewer: default reviewer id shown in the page (each decision stores the id sent).

    Raises:
        FileNotFoundError: ``folder`` holds nothing to review.
    """
    root = Path(folder).resolve()
    items = load_items(root)
    store = DecisionStore(db if db is not None else root / "review.sqlite")
    ids = {it["id"] for it in items}
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

    @app.get("/")
    def index() -> str:
        return _page(reviewer, sorted({r for it in items for r in it["reasons"]}))

    @app.get("/api/items")
    def api_items() -> Response:
        latest = store.latest()
        reason = request.args.get("reason", "")
        chosen = [it for it in items if not reason or reason in it["reasons"]]
        return jsonify([{**it, "decision": latest.get(it["id"])} for it in chosen])

    @app.post("/api/decide")
    def api_decide() -> tuple[Response, int]:
        data = request.get_json(silent=True) or {}
        if data.get("item") not in ids:
            return jsonify(error=f"unknown item {data.get('item')!r}"), 400
        try:
            row = store.record(
                data["item"], data.get("decision"), data.get("reviewer"), data.get("note", "")
            )
        except ValueError as err:
            return jsonify(error=str(err)), 400
        return jsonify(row), 200

    @app.get("/files/<path:rel>")
    def files(rel: str) -> Response:
        return send_from_directory(root, rel)  # 404 for anything outside ``root``

    @app.get("/export.<fmt>")
    def export(fmt: str) -> Response:
        if fmt not in ("csv", "jsonl"):
            abort(404)
        body = store.to_csv() if fmt == "csv" else store.to_jsonl()
        mime = "text/csv" if fmt == "csv" else "application/x-ndjson"
        headers = {"Content-Disposition": f"attachment; filename=decisions.{fmt}"}
        return Response(body, mimetype=mime, headers=headers)

    return app


def _page(reviewer: str, reasons: list[str]) -> str:
    options = "".join(f'<option value="{esc(r)}">{esc(r)}</option>' for r in reasons)
    keys = ", ".join(f"<kbd>{k}</kbd> {d}" for d, k in DECISIONS.items())
    body = f"""
<h1>SAFEGEN review</h1>
<p class="small">{keys}, <kbd>n</kbd> note (Enter to leave it), <kbd>j</kbd>/<kbd>k</kbd>
next/previous. <a href="export.csv">export CSV</a> <a href="export.jsonl">export JSONL</a></p>
<p>reviewer <input id="reviewer" value="{esc(reviewer)}" size="12">
reason <select id="reason"><option value="">all</option>{options}</select>
<span id="position"></span></p>
<div id="item"><p>loading...</p></div>
<p>note <input id="note" size="60" placeholder="optional, saved with the next decision"></p>
<p id="status" class="small"></p>
<script>const GLOSSARY = {json.dumps(REASONS)};</script>
<script>{_asset("review.js")}</script>"""
    return page("SAFEGEN review", body)


def _asset(name: str) -> str:
    """A file shipped next to this module (the page's script)."""
    return (Path(__file__).parent / name).read_text()

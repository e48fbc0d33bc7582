"""`safegen study serve`: the reader-study web app (one reading at a time, keyboard only).

Keys: ``s`` safe, ``u`` unsafe, then ``1``-``5`` for trust in that decision. The decision time
is measured in the browser, from the moment the image has loaded to the decision key.
Ground truth never leaves the server; only ``images/`` and ``panels/`` are served.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, jsonify, request, send_from_directory

from safegen_guard.review.glossary import REASONS
from safegen_guard.review.markup import page
from safegen_guard.review.study import Study

__all__ = ["create_study_app"]


def create_study_app(folder: str | Path) -> Flask:
    """The study app over a folder written by ``safegen study create``.

    Raises:
        FileNotFoundError: no ``study.json`` in ``folder``.
    """
    study = Study.open(Path(folder).resolve())
    store = study.store()
    cases = study.cases
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024

    def _reader() -> tuple[str, int]:
        data = request.get_json(silent=True) or {}
        reader = str(request.args.get("reader") or data.get("reader") or "")
        return reader, store.join(reader)

    @app.get("/")
    def index() -> str:
        import json

        body = _BODY + f"<script>const GLOSSARY = {json.dumps(REASONS)};</script>"
        return page("SAFEGEN reader study", body + f"<script>{_asset('study.js')}</script>")

    @app.post("/api/join")
    def join() -> tuple[Response, int]:
        try:
            reader, number = _reader()
        except ValueError as err:
            return jsonify(error=str(err)), 400
        return jsonify(reader=reader, number=number), 200

    @app.get("/api/next")
    def next_reading() -> tuple[Response, int]:
        try:
            reader, number = _reader()
        except ValueError as err:
            return jsonify(error=str(err)), 400
        schedule = study.schedule(number)
        answered = store.answered(reader)
        todo = [r for r in schedule if r["seq"] not in answered]
        if not todo:
            return jsonify(done=True, total=len(schedule), answered=len(answered)), 200
        r = todo[0]
        case = cases[r["case"]]
        out = {"done": False, "seq": r["seq"], "total": len(schedule), "arm": r["arm"]}
        out["answered"] = len(answered)
        if r["arm"] == "assisted":
            out |= {"image": case["panel"], "safegen": _verdict(case)}
        else:
            out["image"] = case["image"]
        return jsonify(out), 200

    @app.post("/api/reading")
    def reading() -> tuple[Response, int]:
        data = request.get_json(silent=True) or {}
        try:
            reader, number = _reader()
            seq = int(data.get("seq", -1))
            schedule = study.schedule(number)
            if not 0 <= seq < len(schedule):
                raise ValueError(f"`seq` must be in [0, {len(schedule)}), got {seq}")
            stored = store.record(
                reader, schedule[seq], data.get("decision"), data.get("likert"), data.get("ms")
            )
        except (ValueError, TypeError) as err:
            return jsonify(error=str(err)), 400
        return jsonify(stored=stored), 200

    @app.get("/images/<path:rel>")
    def images(rel: str) -> Response:
        return send_from_directory(study.folder / "images", rel)

    @app.get("/panels/<path:rel>")
    def panels(rel: str) -> Response:
        return send_from_directory(study.folder / "panels", rel)

    return app


def _verdict(case: dict) -> dict:
    return {
        "unsafe": case.get("unsafe"),
        "p_value": case.get("p_value"),
        "reasons": case.get("reasons", []),
    }


def _asset(name: str) -> str:
    return (Path(__file__).parent / name).read_text()


_BODY = """
<h1>SAFEGEN reader study</h1>
<div id="join"><p>Reader id <input id="reader-input" size="16" autofocus>
<button id="join-button">start</button></p></div>
<div id="reading" hidden>
<p class="small"><span id="progress"></span>. Keys: <kbd>s</kbd> safe, <kbd>u</kbd> unsafe,
then <kbd>1</kbd>-<kbd>5</kbd> trust in your decision (1 none, 5 full).</p>
<div id="safegen"></div>
<img id="case-image" class="panel" alt="case">
<p id="phase"></p>
</div>
<p id="status" class="small"></p>
"""

"""End-to-end in headless Chromium (Debian's package, driven by Playwright): keys as a reader.

Skipped, with the reason, when Playwright or a Chromium executable is missing or the browser
cannot start; never silently passed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

pytest.importorskip("flask")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from review_helpers import make_scored_folder, make_study  # noqa: E402

from safegen_guard.review.app import create_review_app  # noqa: E402
from safegen_guard.review.server import ServerThread  # noqa: E402
from safegen_guard.review.study_app import create_study_app  # noqa: E402


def _chromium() -> str | None:
    env = os.environ.get("SAFEGEN_CHROMIUM")
    return env or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium executable (apt-get install chromium, or set SAFEGEN_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"], headless=True)
        except Exception as err:  # noqa: BLE001  (any launch failure is a reason to skip)
            pytest.skip(f"chromium at {exe} did not start: {str(err).splitlines()[0]}")
        yield b
        b.close()


def test_review_ten_images_by_keyboard(browser, tmp_path):
    folder = make_scored_folder(tmp_path / "scored", n=10)
    with ServerThread(create_review_app(folder, reviewer="ann")) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#decision")
        keys = ["a", "r", "u", "r", "r", "a", "n", "r", "a", "u", "r"]
        for k in keys:
            if k == "n":  # a note for the next decision, typed then left with Enter
                page.keyboard.press("n")
                page.keyboard.type("ring at the top")
                page.keyboard.press("Enter")
                continue
            before = page.inner_text("#status")
            page.keyboard.press(k)
            page.wait_for_function(
                "(b) => document.getElementById('status').textContent !== b", arg=before
            )
        assert page.inner_text("#position") == "item 10 of 10"
        page.close()
    with sqlite3.connect(folder / "review.sqlite") as conn:
        rows = conn.execute("SELECT item, decision, note, reviewer FROM decisions ORDER BY id")
        rows = rows.fetchall()
    assert len(rows) == 10 and len({r[0] for r in rows}) == 10  # each image once
    assert [r[1] for r in rows] == ["accept", "reject", "unsure", "reject", "reject", "accept",
                                    "reject", "accept", "unsure", "reject"]  # fmt: skip
    assert rows[6][2] == "ring at the top" and all(r[3] == "ann" for r in rows)


def _read(page, n: int) -> None:
    """Answer ``n`` readings: s/u by the image, then a trust level."""
    for k in range(n):
        page.wait_for_function("document.getElementById('phase').textContent.includes('(s)')")
        seq_text = page.inner_text("#progress")
        page.keyboard.press("u" if k % 2 else "s")
        page.keyboard.press(str(1 + k % 5))
        page.wait_for_function(
            "(t) => document.getElementById('status').textContent === 'done'"
            " || document.getElementById('progress').textContent !== t",
            arg=seq_text,
        )


def test_two_reader_study_with_a_server_restart(browser, tmp_path):
    folder = make_study(tmp_path / "study", n_cases=4, washout=1)
    total = 8  # 4 cases x 2 arms
    for reader in ("ann", "bob"):
        context = browser.new_context()  # a fresh browser profile per reader
        page = context.new_page()
        server = ServerThread(create_study_app(folder))
        page.goto(server.start())
        page.fill("#reader-input", reader)
        page.keyboard.press("Enter")
        _read(page, 3)
        port = server.server.server_port
        server.stop()  # the server goes away mid-study ...
        server = ServerThread(create_study_app(folder), port=port)  # ... and comes back
        server.start()
        page.reload()  # the reader id is remembered by the browser
        page.wait_for_function("document.getElementById('progress').textContent !== ''")
        assert page.inner_text("#progress") == f"reading 4 of {total}"
        _read(page, total - 3)
        page.wait_for_selector("text=Study complete")
        server.stop()
        context.close()
    with sqlite3.connect(folder / "study.sqlite") as conn:
        rows = conn.execute("SELECT reader, seq, decision_ms, likert FROM readings").fetchall()
        readers = conn.execute("SELECT reader, number FROM readers ORDER BY number").fetchall()
    assert readers == [("ann", 0), ("bob", 1)]
    assert sorted((r[0], r[1]) for r in rows) == [(x, s) for x in ("ann", "bob") for s in range(8)]
    assert all(r[2] >= 0 for r in rows) and {r[3] for r in rows} <= {1, 2, 3, 4, 5}

"""``kill -9`` inside callback checks: nothing quarantined without its records, no debris.

``SAFEGEN_KILL_TRIALS`` sets the number of random kill points (default 20; the issue's
acceptance run uses 100).
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from faults import run_python

TRIALS = int(os.environ.get("SAFEGEN_KILL_TRIALS", "20"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_random_kills_inside_checks_lose_nothing(tiny_guard, tmp_path):
    guard_dir = tiny_guard.save(tmp_path / "guard")
    code = (
        "import runpy, sys; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    driver = str(os.path.join(os.path.dirname(__file__), "kill_driver.py"))
    proc = run_python(
        code, driver, str(guard_dir), str(tmp_path / "work"), str(TRIALS), "0", timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(res), file=sys.stderr)
    assert res["after_next_run_start"] == {
        "unparseable_lines": 0,
        "temp_files": 0,
        "png_without_json": 0,
        "png_without_audit": 0,
        "hash_mismatch": 0,
        "unreadable_png": 0,
        "dangling_paths": 0,
    }
    assert res["pngs"] > 0 and res["records"] >= res["pngs"]  # the kills hit running checks
    if res["left_by_kills"]["temp_files"]:
        assert "temporary file(s) left by an interrupted write" in proc.stderr

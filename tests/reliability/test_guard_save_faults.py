"""Interrupted ``Guard.save``: the folder always loads as the old or the new guard."""

from __future__ import annotations

import json
import os

import pytest
import torch
from faults import run_python

from safegen_guard import Guard

TRIALS = int(os.environ.get("SAFEGEN_SAVE_TRIALS", "20"))


class _Boom(OSError):
    pass


def _other(guard: Guard) -> Guard:
    """A copy of ``guard`` with another calibration threshold (another fingerprint)."""
    other = Guard(guard.config, guard.data_fingerprint)
    other.load_state_dict(guard.state_dict())
    with torch.no_grad():
        other.calibrator.tau.mul_(2.0)
    other._fingerprint = ""
    assert other.fingerprint != guard.fingerprint
    return other


def test_failure_at_every_file_operation_leaves_old_or_new(tiny_guard, tmp_path, monkeypatch):
    """Main: failing between the weights and the JSON left neither guard loadable."""
    old, new = tiny_guard, _other(tiny_guard)
    folder = tmp_path / "g"
    names = ("write", "fsync", "replace", "link", "unlink")
    seen = set()
    for k in range(200):
        old.save(folder)
        calls = {"n": 0}
        real = {n: getattr(os, n) for n in names}

        def failing(name, *args, _calls=calls, _real=real, _k=k):
            if _calls["n"] == _k:
                _calls["n"] += 1
                raise _Boom(f"injected failure in os.{name}")
            _calls["n"] += 1
            return _real[name](*args)

        for n in names:
            monkeypatch.setattr(os, n, lambda *a, _n=n: failing(_n, *a))
        try:
            new.save(folder)
        except _Boom:
            pass
        finally:
            monkeypatch.undo()
        done = calls["n"] <= k  # the save ran through without reaching the injection
        loaded = Guard.load(folder).fingerprint
        assert loaded in (old.fingerprint, new.fingerprint), f"failure at file operation {k}"
        seen.add(loaded)
        if done:
            break
    assert done and k > 8 and seen == {old.fingerprint, new.fingerprint}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_random_kills_inside_save_leave_old_or_new(tiny_guard, tmp_path):
    guard_dir = tiny_guard.save(tmp_path / "guard")
    code = (
        "import runpy, sys; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    driver = os.path.join(os.path.dirname(__file__), "save_driver.py")
    proc = run_python(
        code, driver, str(guard_dir), str(tmp_path / "work"), str(TRIALS), "0", timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(res))
    assert res["loaded"]["unloadable"] == 0, res["errors"]
    assert res["loaded"]["A"] + res["loaded"]["B"] == TRIALS

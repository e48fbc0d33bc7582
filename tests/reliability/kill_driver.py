"""``kill -9`` at random moments inside SafeGenCallback checks, then check what the next run sees.

Usage: ``python kill_driver.py GUARD_DIR WORK_DIR TRIALS SEED`` prints one JSON object.

Each trial forks a writer that starts a run (``setup``: recovery, new run id) and then runs
checks back to back (evaluate 8 noise images, quarantine the unsafe ones, append the audit
lines); the driver kills it with SIGKILL after a random delay. A fresh "next run" child then
starts (``setup`` only), and the driver verifies the folder: every audit line parses, no temp
file is left, every quarantined PNG has its verdict JSON and its audit line with the same
image hash. Forking after the imports keeps a trial at a fraction of a second.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from PIL import Image

from safegen_guard import Guard, SafeGenCallback

_TRAINER = SimpleNamespace(is_global_zero=True)


def _callback(guard: Guard, work: Path) -> SafeGenCallback:
    cb = SafeGenCallback(guard, num_samples=8, quarantine_dir=work / "q", sample_fn=print)
    cb.setup(_TRAINER, None, "fit")  # type: ignore[arg-type]
    return cb


def _writer(guard: Guard, work: Path, ready: int, seed: int) -> None:
    cb = _callback(guard, work)
    os.write(ready, b"r")
    gen = torch.Generator().manual_seed(seed)
    for index in range(10_000):
        x = torch.rand(8, 1, guard.config.image_size, guard.config.image_size, generator=gen)
        x[1::2] *= 0.05  # dark half: mixes safe and unsafe verdicts
        verdict = guard.evaluate(x)
        cb._write_audit(x, verdict, [0] * 8, 10 * index, index, "train")


def _fork(fn, *args) -> int:  # noqa: ANN001
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _verify(work: Path) -> dict[str, int]:
    q, audit = work / "q", work / "q" / "audit.jsonl"
    text = audit.read_bytes() if audit.exists() else b""
    bad = {"unparseable_lines": 0, "temp_files": 0, "png_without_json": 0}
    bad["png_without_audit"] = bad["hash_mismatch"] = bad["unreadable_png"] = 0
    bad["dangling_paths"] = 0
    if text and not text.endswith(b"\n"):
        bad["unparseable_lines"] += 1
    records = []
    for line in text.split(b"\n")[:-1]:
        try:
            records.append(json.loads(line))
        except ValueError:
            bad["unparseable_lines"] += 1
    bad["temp_files"] = sum(p.name.endswith(".tmp") for p in q.iterdir()) if q.exists() else 0
    by_id = {r.get("sample_id"): r for r in records}
    for png in sorted(q.glob("*.png")) if q.exists() else []:
        side = png.with_suffix(".json")
        if not side.exists():
            bad["png_without_json"] += 1
            continue
        rec = by_id.get(png.stem)
        if rec is None:
            bad["png_without_audit"] += 1
        elif rec.get("image_sha256") != json.loads(side.read_text())["image_sha256"]:
            bad["hash_mismatch"] += 1
        try:
            with Image.open(png) as im:
                im.load()
        except OSError:
            bad["unreadable_png"] += 1
    for r in records:
        if r.get("quarantine_path") and not Path(r["quarantine_path"]).exists():
            bad["dangling_paths"] += 1
    bad["records"], bad["pngs"] = len(records), len(list(q.glob("*.png"))) if q.exists() else 0
    bad["recovered"] = sum(bool(r.get("recovered")) for r in records)
    return bad


def main(guard_dir: str, work_dir: str, trials: int, seed: int) -> dict:
    torch.set_num_threads(1)  # no thread pool before fork()
    guard = Guard.load(guard_dir)
    work = Path(work_dir)
    rng = random.Random(seed)
    totals: dict[str, int] = {}
    before_next_run = {"temp_files": 0, "cut_lines": 0, "png_without_audit": 0}
    for trial in range(trials):
        r, w = os.pipe()
        pid = _fork(_writer, guard, work, w, seed + trial)
        os.close(w)
        if os.read(r, 1) != b"r":
            raise RuntimeError("writer died before it was ready")
        os.close(r)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        state = _verify(work)  # what the kill left, before the next run's clean-up
        before_next_run["temp_files"] += state["temp_files"]
        before_next_run["cut_lines"] += state["unparseable_lines"]
        before_next_run["png_without_audit"] += state["png_without_audit"]
        pid = _fork(_callback, guard, work)  # the next run starts
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("the next run failed to start")
        for key, value in _verify(work).items():
            if key not in ("records", "pngs", "recovered"):
                totals[key] = totals.get(key, 0) + value
    final = _verify(work)
    return {
        "trials": trials,
        "after_next_run_start": totals,
        "left_by_kills": before_next_run,
        "records": final["records"],
        "pngs": final["pngs"],
        "recovered_records": final["recovered"],
    }


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(main(a[0], a[1], int(a[2]), int(a[3]))))

"""``kill -9`` at random moments inside ``Guard.save`` over an existing guard.

Usage: ``python save_driver.py GUARD_DIR WORK_DIR TRIALS SEED`` prints one JSON object.

Guard A is loaded from GUARD_DIR; guard B is A with a different calibration threshold (another
fingerprint). The folder starts as A. Each trial forks a child that saves B, A, B, ... over
the folder back to back and kills it with SIGKILL after a random delay; the driver then loads
the folder and counts which guard it got (A, B, or a failure).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import torch

from safegen_guard import Guard
from safegen_guard.errors import CheckpointError


def _saver(guards: list[Guard], folder: Path, ready: int, first: int) -> None:
    os.write(ready, b"r")
    i = first
    while True:
        guards[i % 2].save(folder)
        i += 1


def main(guard_dir: str, work_dir: str, trials: int, seed: int) -> dict:
    torch.set_num_threads(1)  # no thread pool before fork()
    a = Guard.load(guard_dir)
    b = Guard.load(guard_dir)
    with torch.no_grad():
        b.calibrator.tau.mul_(2.0)
    b._fingerprint = ""
    names = {a.fingerprint: "old_or_A", b.fingerprint: "new_or_B"}
    folder = Path(work_dir)
    a.save(folder)
    rng = random.Random(seed)
    counts = {"A": 0, "B": 0, "unloadable": 0}
    errors: list[str] = []
    max_files = 0
    for trial in range(trials):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _saver([a, b], folder, w, first=1 + trial % 2)
            finally:
                os._exit(1)
        os.close(w)
        os.read(r, 1)
        os.close(r)
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        max_files = max(max_files, len(list(folder.iterdir())))
        try:
            fp = Guard.load(folder).fingerprint
            counts["A" if names.get(fp) == "old_or_A" else "B"] += 1
        except CheckpointError as err:
            counts["unloadable"] += 1
            errors.append(str(err))
    return {"trials": trials, "loaded": counts, "errors": errors[:3], "max_files": max_files}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0], args[1], int(args[2]), int(args[3]))))

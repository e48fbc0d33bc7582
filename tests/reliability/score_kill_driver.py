"""Run `safegen score` and SIGKILL the process after KILL_AFTER appended batches."""

from __future__ import annotations

import os
import signal
import sys

from safegen_guard.cli import main
from safegen_guard.score_run import ShardWriter

_plain = ShardWriter.write_on_batch_end
_batches = {"n": 0}


def _killing(self, trainer, *args):  # noqa: ANN001, ANN002, ANN202
    _plain(self, trainer, *args)
    _batches["n"] += 1
    if _batches["n"] == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)


ShardWriter.write_on_batch_end = _killing

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

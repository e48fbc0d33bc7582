"""Fault-injection helpers for the reliability tests: unprivileged children, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]


def run_unprivileged(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child that cannot write where its user may not write.

    As root, the child drops to uid/gid 65534 (``nobody``) first, so ``chmod`` restrictions
    apply to it; as any other user it just runs. Everything ``fn`` needs must be imported
    before the call (the child may not be allowed to read the interpreter's files).
    An exception (or failed assertion) in the child fails the calling test with its traceback.
    """
    if not hasattr(os, "fork"):
        pytest.skip("read-only folders need os.fork to run as an unprivileged user")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            fn()
        except BaseException:
            os.write(w, traceback.format_exc().encode())
            code = 1
        finally:
            os.close(w)
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        report = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        pytest.fail(f"unprivileged child failed:\n{report}")


def world_dir(tmp_path: Path, name: str) -> Path:
    """A folder an unprivileged child can reach (pytest's own tmp folders are 0700 to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"safegen-{name}-", dir="/tmp"))
    path.chmod(0o777)
    (tmp_path / f"{name}.where").write_text(str(path))  # for debugging a failed run
    return path


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c code args...`` from the repository root; return the finished process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).parent)]))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fit_tiny_generator(callback, tmp_path: Path, sample_fn_mode: str = "normal") -> None:  # noqa: ANN001
    """One epoch of the tests' tiny generator (4 batches) with ``callback``; one check."""
    import lightning.pytorch as pl

    sys.path.insert(0, str(REPO / "tests" / "integrations"))
    from tiny_generator import TinyGenerator, loaders

    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        callbacks=[callback],
    )
    trainer.fit(TinyGenerator(mode=sample_fn_mode), *loaders())

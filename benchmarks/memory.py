"""Peak memory of ``Guard.evaluate`` above the loaded guard's own memory.

Run: ``python -m benchmarks.memory --guard DIR [--n 10000] [--batch-size N] [--explain]``.
Run it as its own process (peaks are per process). Steps:

1. load the guard, build the input batch ``[n, C, S, S]`` (MNI152 test slices repeated, or
   uniform noise with ``--data noise``) and score a small warm-up batch, so lazily built state
   (faiss indexes, fingerprint, thread pools) counts as the model's own memory;
2. ``gc.collect()`` + ``malloc_trim(0)``, read the resident set size (RSS): the *baseline*
   (the guard and the caller's input, which ``evaluate`` does not own);
3. reset the kernel's peak-RSS counter (``/proc/self/clear_refs``; a 1 ms sampling thread where
   that is refused), call ``evaluate`` once and read the peak.

Prints JSON: ``peak_above_baseline_mb`` (what the issue bounds: peak RSS during ``evaluate``
minus the baseline), ``output_mb`` (the returned verdict's tensors, which the caller asked for
and which cannot be streamed away), ``working_mb`` (their difference: what ``evaluate`` holds
besides its result), ``input_mb`` and ``baseline_mb``. Megabytes are 10**6 bytes.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import os
import threading
import time
from pathlib import Path

import torch

from safegen_guard import Guard
from safegen_guard.verdict import Verdict

MB = 1e6


def rss_bytes() -> int:
    """Current resident set size of this process (bytes, ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """Peak RSS since the last reset (``VmHWM``, bytes)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); ``False`` where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRss:
    """Context manager: peak RSS inside the block (``peak`` bytes, ``method`` used)."""

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes()
        self.method = "VmHWM" if _reset_peak() else "sampling"
        self._stop = threading.Event()
        if self.method == "sampling":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        if self.method == "sampling":
            self._stop.set()
            self._thread.join()
        else:
            self.peak = _peak_rss_bytes()
        self.peak = max(self.peak, rss_bytes())


def verdict_bytes(verdict: Verdict) -> int:
    """Bytes held by the verdict's tensors (maps, masks, per-image and per-view values)."""
    total = 0
    for f in dataclasses.fields(verdict):
        v = getattr(verdict, f.name)
        tensors = v.values() if isinstance(v, dict) else [v]
        total += sum(t.nbytes for t in tensors if isinstance(t, torch.Tensor))
    return total


def make_images(n: int, channels: int, size: int, data: str, seed: int) -> torch.Tensor:
    """``[n, channels, size, size]`` float32 in ``[0, 1]``: MNI152 test slices or noise."""
    g = torch.Generator().manual_seed(seed)
    if data == "noise" or channels != 1:
        return torch.rand(n, channels, size, size, generator=g)
    from safegen_guard.data import load_dataset

    real = load_dataset("mni152", "test", size, variants=1, seed=seed).images
    x = real.float().repeat((n + len(real) - 1) // len(real), 1, 1, 1)[:n].contiguous()
    del real
    return x


def measure(
    guard_dir: str | Path,
    n: int,
    *,
    batch_size: int | None = None,
    explain: bool = False,
    data: str = "mni152",
    warmup: int = 64,
    seed: int = 0,
    memorization: bool = True,
) -> dict:
    """Load the guard, evaluate ``n`` images once and report memory figures (see module doc)."""
    guard = Guard.load(guard_dir)
    if not memorization:
        guard.attach_memorization(None)
    cfg = guard.config
    x = make_images(n, cfg.channels, cfg.image_size, data, seed)
    guard.evaluate(x[: min(warmup, n)].clone(), batch_size=batch_size, explain=explain)
    release_free_heap()
    baseline = rss_bytes()
    start = time.perf_counter()
    with PeakRss() as peak:
        verdict = guard.evaluate(x, batch_size=batch_size, explain=explain)
    seconds = time.perf_counter() - start
    out = verdict_bytes(verdict)
    grown = peak.peak - baseline
    return {
        "guard": str(guard_dir),
        "n": n,
        "image_size": cfg.image_size,
        "views": list(cfg.views),
        "memorization": guard.memorization is not None,
        "explain": explain,
        "batch_size": batch_size or cfg.score_batch_size,
        "threads": torch.get_num_threads(),
        "method": peak.method,
        "baseline_mb": round(baseline / MB, 1),
        "input_mb": round(x.nbytes / MB, 1),
        "peak_above_baseline_mb": round(grown / MB, 1),
        "output_mb": round(out / MB, 1),
        "working_mb": round((grown - out) / MB, 1),
        "unsafe_rate": round(float(verdict.unsafe.float().mean()), 4),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print and return the JSON figures."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    p.add_argument("--guard", required=True, help="folder of a saved guard (Guard.save)")
    p.add_argument("--n", type=int, default=10000, help="images in the evaluated batch")
    p.add_argument("--batch-size", type=int, default=None, help="evaluate's chunk size")
    p.add_argument("--explain", action="store_true", help="also compute explanations")
    p.add_argument("--no-memorization", action="store_true", help="detach the memorization index")
    p.add_argument("--data", choices=("mni152", "noise"), default="mni152")
    p.add_argument("--warmup", type=int, default=64, help="images scored before the baseline")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be a positive int, got {args.n}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    result = measure(
        args.guard,
        args.n,
        batch_size=args.batch_size,
        explain=args.explain,
        data=args.data,
        warmup=args.warmup,
        seed=args.seed,
        memorization=not args.no_memorization,
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

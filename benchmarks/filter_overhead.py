"""Overhead of ``SafeGenFilter`` (policy ``flag``) over plain ``DDPMPipeline`` sampling.

Run: ``python -m benchmarks.filter_overhead [--steps 20] [--repeats 3]``. Builds a tiny
32x32 ``UNet2DModel`` DDPM and a ``tiny`` guard fitted on MNI152 slices, then times the plain
pipeline call and the wrapped call at batch 8 and 16 (best of ``repeats``), printing JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from safegen_guard import Guard, GuardConfig, SafeGenFilter
from safegen_guard.data import load_dataset


def _best_time(fn, repeats: int, **kwargs) -> float:
    """Best wall-clock seconds of ``fn(**kwargs)`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(**kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    """Time plain vs guarded sampling; return ``{batch: {plain_s, guarded_s, overhead_pct}}``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.filter_overhead")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    train = load_dataset("mni152", "train", 32, variants=2, seed=0).images
    val = load_dataset("mni152", "val", 32, variants=8, seed=1).images
    cfg = GuardConfig.profile("tiny", max_steps=20, accelerator="cpu")
    guard = Guard.fit(train, cfg, calibration_data=val)
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    pipe = DDPMPipeline(unet, DDPMScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    guarded = SafeGenFilter(guard, "flag").wrap(pipe)
    results = {}
    for batch in (8, 16):
        kw = dict(batch_size=batch, num_inference_steps=args.steps, output_type="pt")
        plain = _best_time(pipe, args.repeats, **kw)
        wrapped = _best_time(guarded, args.repeats, **kw)
        evaluate = _best_time(guard.evaluate, args.repeats, x=torch.rand(batch, 1, 32, 32))
        results[batch] = {
            "plain_s": round(plain, 4), "guarded_s": round(wrapped, 4),
            "guard_evaluate_s": round(evaluate, 4),
            "overhead_pct": round(100 * (wrapped - plain) / plain, 1),
        }  # fmt: skip
    print(
        json.dumps({"steps": args.steps, "threads": torch.get_num_threads(), **results}, indent=2)
    )
    return results


if __name__ == "__main__":
    main()

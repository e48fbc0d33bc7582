"""2-process CPU DDP run of SafeGenCallback (launched by test_ddp_callback.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_generator import TinyGenerator, loaders  # noqa: E402

from safegen_guard import Guard, SafeGenCallback  # noqa: E402


def main(guard_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    guard = Guard.load(guard_dir)
    cb = SafeGenCallback(
        guard,
        every_n_steps=2,
        num_samples=5,
        quarantine_dir=out / "q",
        max_unsafe_rate=0.0,
        patience=100,
    )
    # rank 1 emits NaNs: its samples must come back as non_finite verdicts tagged rank 1
    model = TinyGenerator(mode="nan" if os.environ.get("LOCAL_RANK", "0") == "1" else "normal")
    trainer = pl.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_epochs=1,
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, *loaders(n=16, batch_size=4))
    result = {
        "rank": trainer.global_rank,
        "world": trainer.world_size,
        "checks": cb.checks,
        "errors": cb.errors_by_kind,
        "history": cb.history,
        "consecutive": cb.consecutive,
        "local_samples": [int(c["z"].shape[0]) for c in model.sample_calls],
        "metric": float(trainer.callback_metrics.get("safegen/unsafe_rate", -1)),
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

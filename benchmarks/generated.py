"""Generated test samples: briefly trained StyleGAN2 and DDPM from ``generators/``.

The generators are trained for a short, fixed wall-clock budget on the *same* real training
slices the detectors saw, so many samples are genuinely bad (blurry, noisy, off-manifold). There
is no ground truth for them: the benchmark reports each method's verdict distribution (share
flagged at its calibrated threshold, score quantiles) and an overlay grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

__all__ = ["GeneratedSet", "generate_samples"]

MODELS = ("ddpm", "stylegan2")


@dataclass
class GeneratedSet:
    """Samples of one generator.

    Attributes:
        model: ``"ddpm"`` or ``"stylegan2"``.
        images: ``[n, 1, H, W]`` samples in ``[0, 1]``.
        info: ``preset``, ``steps`` (training batches), ``train_seconds``, ``sample_seconds``.
    """

    model: str
    images: torch.Tensor
    info: dict


def _train(
    model: str,
    preset: str,
    train: torch.Tensor,
    seconds: float,
    max_steps: int,
    seed: int,
    progress: bool,
) -> tuple[object, int]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from generators import build_module, get_model_config, get_train_config

    L.seed_everything(seed, workers=True, verbose=False)
    module = build_module(get_model_config(model, preset, int(train.shape[-1])))
    batch = get_train_config(preset).batch_size if preset != "tiny" else 8
    loader = DataLoader(
        TensorDataset(train),
        batch_size=min(batch, len(train)),
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = L.Trainer(
        max_steps=max_steps * getattr(module, "optimizer_steps_per_batch", 1),
        max_time={"seconds": max(int(seconds), 1)},
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    steps = trainer.global_step // getattr(module, "optimizer_steps_per_batch", 1)
    return module.cpu().eval(), steps


def generate_samples(
    train: torch.Tensor,
    *,
    n: int,
    seconds_per_model: float,
    max_steps: int,
    preset: str = "tiny",
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[GeneratedSet], str | None]:
    """Train each generator briefly on real ``train`` ``[N,1,H,W]`` and draw ``n`` samples.

    Returns:
        The generated sets and ``None``, or ``[]`` and the reason they were skipped
        (``generators`` not importable, or a failure while training/sampling).
    """
    try:
        import generators  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "skip with a reason"
        return [], f"generators/ not importable: {type(err).__name__}: {err}"
    out = []
    for i, model in enumerate(MODELS):
        try:
            t0 = time.perf_counter()
            module, steps = _train(
                model, preset, train, seconds_per_model, max_steps, seed + i, progress
            )
            t1 = time.perf_counter()
            images = module.sample(n, torch.Generator().manual_seed(seed + 100 + i)).cpu()
            info = {
                "preset": preset,
                "steps": steps,
                "train_seconds": round(t1 - t0, 1),
                "sample_seconds": round(time.perf_counter() - t1, 1),
            }
            out.append(GeneratedSet(model, images.float().clamp(0, 1), info))
        except Exception as err:  # noqa: BLE001 - a broken generator must not end the benchmark
            return out, f"{model} failed: {type(err).__name__}: {err}"
    return out, None

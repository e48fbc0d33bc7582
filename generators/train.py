r"""Train a generator with Lightning: ``python -m generators.train {stylegan2,ddpm} ...``.

Example::

    python -m generators.train ddpm --data mni152 --size 64 --preset cpu --max-steps 1500 \
        --out runs/ddpm --guard guards/mni152 --logger wandb

``--max-steps`` counts training iterations (batches). StyleGAN2 takes a discriminator and a
generator step per batch, so its Lightning ``global_step`` ends at twice that number.
Writes ``DIR/checkpoints/*.ckpt`` (``last.ckpt`` plus the 3 most recent), logs, and
``DIR/samples_final.png`` (a grid drawn with a fixed seed).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from generators.configs import (
    MODEL_TYPES,
    PRESETS,
    DDPMConfig,
    StyleGAN2Config,
    get_model_config,
    get_train_config,
)
from generators.datamodule import SliceDataModule
from generators.sample import save_grid
from safegen_guard.console import plain_help, run_main
from safegen_guard.progress import StepProgressBar

__all__ = [
    "build_module",
    "build_logger",
    "build_guard_callback",
    "build_parser",
    "main",
    "subset_indices",
]

LOGGERS: tuple[str, ...] = ("none", "csv", "wandb", "tensorboard")


def build_module(config: StyleGAN2Config | DDPMConfig) -> pl.LightningModule:
    """Return the LightningModule for ``config`` (``StyleGAN2Module`` or ``DDPMModule``)."""
    if isinstance(config, StyleGAN2Config):
        from generators.stylegan2 import StyleGAN2Module

        return StyleGAN2Module(config)
    if isinstance(config, DDPMConfig):
        from generators.ddpm import DDPMModule

        return DDPMModule(config)
    raise TypeError(
        f"`config` must be a StyleGAN2Config or DDPMConfig, got {type(config).__name__}"
    )


def build_logger(kind: str, out: Path, name: str) -> Any:
    """Return a Lightning logger (``False`` for ``"none"``); W&B runs offline without a key."""
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(str(out), name="logs")
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "--logger tensorboard needs the `tensorboard` package "
                "(pip install 'safegen-guard[tensorboard]')"
            ) from exc
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(str(out), name="logs")
    if kind == "wandb":
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
            os.environ.setdefault(var, str(out / "wandb_files"))
        (out / "wandb_files").mkdir(parents=True, exist_ok=True)
        from lightning.pytorch.loggers import WandbLogger

        offline = os.environ.get("WANDB_MODE") == "offline"
        return WandbLogger(
            project="safegen-generators", name=name, save_dir=str(out), offline=offline
        )
    raise ValueError(f"`logger` must be one of {list(LOGGERS)}, got {kind!r}")


def build_guard_callback(guard_dir: str | Path, every_n_steps: int, num_samples: int) -> Callback:
    """Load a saved SAFEGEN guard and wrap it in ``SafeGenCallback``.

    Raises:
        ImportError: ``safegen_guard`` does not provide ``Guard`` and ``SafeGenCallback``.
    """
    try:
        from safegen_guard import Guard, SafeGenCallback
    except ImportError as exc:
        raise ImportError(
            "--guard needs `safegen_guard.Guard` and `safegen_guard."
            f"SafeGenCallback`, which could not be imported: {exc}"
        ) from exc
    guard = Guard.load(guard_dir)
    return SafeGenCallback(guard, every_n_steps=every_n_steps, num_samples=num_samples)


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m generators.train``."""
    p = argparse.ArgumentParser(
        prog="python -m generators.train",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", choices=MODEL_TYPES, help="generator to train")
    p.add_argument(
        "--data", default="mni152", help="'mni152', 'ct_phantom' or a NIfTI/DICOM/PNG folder"
    )
    p.add_argument("--size", type=int, default=64, help="image size (power of two, 16-256)")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default="cpu",
        help="network and training preset: tiny for tests, cpu (default), full for a GPU",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="training iterations (batches); default from the preset",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="also stop after this many minutes of training (Lightning max_time)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--guard", default=None, help="saved SAFEGEN guard directory")
    p.add_argument("--guard-every", type=int, default=100, help="batches between guard checks")
    p.add_argument("--guard-samples", type=int, default=16, help="samples per guard check")
    p.add_argument(
        "--logger", choices=LOGGERS, default="csv", help="metrics and images (default csv)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="default from the preset")
    p.add_argument("--accelerator", default=None, help="default from the preset")
    p.add_argument("--devices", default="auto", help="Lightning devices ('auto', 1, '0,1')")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="iterations between checkpoints; default from the preset",
    )
    p.add_argument("--augment", action="store_true", help="light augmentation in load_dataset")
    p.add_argument(
        "--variants",
        type=int,
        default=1,
        help="acquisition/augmentation draws of every slice (more training images)",
    )
    p.add_argument(
        "--subset",
        type=int,
        default=None,
        help="train on N training images evenly spaced over the split (memorization studies);"
        " their indices are written to DIR/subset.json",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint to resume from")
    p.add_argument("--grid", type=int, default=16, help="images in the final sample grid")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def subset_indices(total: int, n: int) -> list[int]:
    """``n`` indices evenly spaced over ``range(total)`` (first and last included).

    Raises:
        ValueError: ``n`` is not in ``[1, total]``.
    """
    if not 1 <= n <= total:
        raise ValueError(f"`--subset` must be between 1 and the {total} training images, got {n}")
    if n == 1:
        return [0]
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})


def _data_module(args: argparse.Namespace, batch_size: int, out: Path) -> SliceDataModule:
    load_kwargs = {"augment": args.augment, "variants": args.variants}
    if args.subset is None:
        return SliceDataModule(
            source=args.data, size=args.size, batch_size=batch_size, seed=args.seed,
            load_kwargs=load_kwargs,
        )  # fmt: skip
    from safegen_guard.data import load_dataset
    from safegen_guard.io import atomic_write_json

    full = load_dataset(args.data, "train", args.size, seed=args.seed, **load_kwargs)
    index = subset_indices(len(full), args.subset)
    atomic_write_json(out / "subset.json", {"data": args.data, "split": "train", "index": index})
    return SliceDataModule(full.subset(index), batch_size=batch_size, seed=args.seed)


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _callbacks(args: argparse.Namespace, out: Path, every: int, module: Any) -> list[Callback]:
    steps = every * module.optimizer_steps_per_batch
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(out / "checkpoints"),
            filename="{step}",
            every_n_train_steps=steps,
            save_last=True,
            save_top_k=3,
            monitor="step",
            mode="max",
        )
    ]
    if args.guard is not None:
        callbacks.append(build_guard_callback(args.guard, args.guard_every, args.guard_samples))
    if not args.quiet:  # batches out of --max-steps with an ETA, across epochs
        steps_per_batch = module.optimizer_steps_per_batch
        callbacks.append(StepProgressBar(args.model, steps_per_batch=steps_per_batch))
    return callbacks


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 on success. See the module docstring for the outputs."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train_cfg = get_train_config(args.preset)
    batch_size = args.batch_size or train_cfg.batch_size
    max_steps = args.max_steps or train_cfg.max_steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(args.seed, workers=True, verbose=False)
    module = build_module(get_model_config(args.model, args.preset, args.size))
    data = _data_module(args, batch_size, out)
    trainer = pl.Trainer(
        accelerator=args.accelerator or train_cfg.accelerator,
        devices=_devices(str(args.devices)),
        max_steps=max_steps * module.optimizer_steps_per_batch,
        max_time=None if args.max_minutes is None else {"minutes": args.max_minutes},
        logger=build_logger(args.logger, out, f"{args.model}-{args.preset}-{args.size}"),
        callbacks=_callbacks(
            args, out, args.checkpoint_every or train_cfg.checkpoint_every, module
        ),
        log_every_n_steps=train_cfg.log_every,
        default_root_dir=str(out),
        enable_progress_bar=not args.quiet,
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(args.resume) if args.resume else None)
    # the periodic checkpoints miss the final steps (and a --max-minutes stop entirely)
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    if trainer.is_global_zero:
        images = module.sample(args.grid, torch.Generator().manual_seed(args.seed)).cpu()
        grid = save_grid(images, out / "samples_final.png")
        print(f"trained {args.model} for {trainer.global_step} optimizer steps; grid: {grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m generators.train"))

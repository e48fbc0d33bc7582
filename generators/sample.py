"""Sample a trained generator checkpoint: ``python -m generators.sample CKPT -n 64 --out DIR``.

Writes one PNG per image, a grid PNG and the ``[n, C, S, S]`` float tensor (``samples.pt``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image

from generators.configs import config_from_dict
from safegen_guard.console import plain_help, run_main
from safegen_guard.validation import check_images, check_positive_int

__all__ = ["load_generator", "save_grid", "save_pngs", "main"]


def load_generator(
    checkpoint: str | Path, map_location: str | torch.device = "cpu"
) -> pl.LightningModule:
    """Load a ``StyleGAN2Module`` or ``DDPMModule`` from a Lightning checkpoint.

    The model type is read from the checkpoint's hyperparameters (``config["model"]``). The
    file is read with ``torch.load(weights_only=True)``: plain tensors and containers only.

    Args:
        checkpoint: Path of a ``.ckpt`` written by ``generators.train`` / ``ModelCheckpoint``.
        map_location: Device to load the weights on.

    Returns:
        The module in eval mode.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The checkpoint holds no generator config.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    config = ckpt.get("hyper_parameters", {}).get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(
            f"{path} is not a generators checkpoint: expected "
            "hyper_parameters['config']['model'] in ('stylegan2', 'ddpm')"
        )
    cfg = config_from_dict(config)
    if cfg.model_type == "stylegan2":
        from generators.stylegan2 import StyleGAN2Module as module_cls
    else:
        from generators.ddpm import DDPMModule as module_cls
    module = module_cls(cfg)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[n, C, H, W]`` in [0, 1] -> ``[n, H, W]`` (C = 1) or ``[n, H, W, C]`` uint8."""
    arr = (images.detach().float().cpu() * 255.0).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def save_grid(
    images: torch.Tensor, path: str | Path, nrow: int | None = None, padding: int = 2
) -> Path:
    """Save ``images`` ``[n, C, H, W]`` in ``[0, 1]`` (C = 1 or 3) as one PNG grid.

    Args:
        images: The batch; validated, never clamped.
        path: Output PNG path (parents are created).
        nrow: Images per row; default ``ceil(sqrt(n))``.
        padding: Black pixels between tiles.

    Returns:
        The written path.
    """
    check_images(images, channels=None)
    n, c, h, w = images.shape
    nrow = math.ceil(math.sqrt(n)) if nrow is None else check_positive_int(nrow, "nrow")
    rows = math.ceil(n / nrow)
    tiles = _to_uint8(images)
    shape = (rows * (h + padding) + padding, nrow * (w + padding) + padding) + (
        () if c == 1 else (c,)
    )
    grid = np.zeros(shape, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y : y + h, x : x + w] = tiles[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def save_pngs(images: torch.Tensor, directory: str | Path, prefix: str = "sample") -> list[Path]:
    """Save each image of ``[n, C, H, W]`` in ``[0, 1]`` as ``{prefix}_{i:05d}.png``."""
    check_images(images, channels=None)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, tile in enumerate(_to_uint8(images)):
        p = directory / f"{prefix}_{i:05d}.png"
        Image.fromarray(tile).save(p)
        paths.append(p)
    return paths


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m generators.sample``."""
    p = argparse.ArgumentParser(
        prog="python -m generators.sample",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="Lightning .ckpt from generators.train")
    p.add_argument("-n", "--num-samples", type=int, default=64, help="images to draw")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--steps", type=int, default=None, help="DDPM denoising steps")
    p.add_argument("--truncation", type=float, default=1.0, help="StyleGAN2 truncation psi")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 on success. Writes PNGs, ``grid.png`` and ``samples.pt``."""
    args = build_parser().parse_args(argv)
    n = check_positive_int(args.num_samples, "num_samples")
    module = load_generator(args.checkpoint, map_location=args.device)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    if module.hparams["config"]["model"] == "ddpm":
        images = module.sample(n, gen, num_inference_steps=args.steps)
    else:
        images = module.sample(n, gen, truncation_psi=args.truncation)
    images = images.cpu()
    out = Path(args.out)
    save_pngs(images, out / "images")
    save_grid(images, out / "grid.png")
    torch.save(images, out / "samples.pt")
    print(f"wrote {n} samples to {out} (images/, grid.png, samples.pt)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m generators.sample"))

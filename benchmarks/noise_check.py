"""Does a guard reject pure noise where the README uses it? The filter and the callback paths.

Uniform and Gaussian noise images in ``[0, 1]`` (and, with diffusers, the samples of an
untrained DDPM) go through ``SafeGenFilter`` (``"flag"``: the share rejected; ``"resample"``:
how many a batch of 8 still returns after 4 rounds) and through ``SafeGenCallback`` in a
Lightning run (``unsafe_rate`` of one check)::

    python -m benchmarks.noise_check --guard guard/ --out noise_check.json

A guard fit for the README's examples rejects every one; the ``tiny`` profile is for tests.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from safegen_guard import Guard, SafeGenCallback, SafeGenFilter
from safegen_guard.console import plain_help, run_main
from safegen_guard.io import atomic_write_json

__all__ = ["noise", "filter_rates", "callback_rate", "untrained_ddpm_rate", "main"]

KINDS = ("uniform", "gaussian")


def noise(kind: str, n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[n, 1, size, size]`` noise in ``[0, 1]``: ``U(0, 1)``, or ``N(0.5, 0.2)`` clipped."""
    if kind == "uniform":
        return torch.rand(n, 1, size, size, generator=generator)
    if kind == "gaussian":
        return (0.5 + 0.2 * torch.randn(n, 1, size, size, generator=generator)).clamp(0, 1)
    raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")


class _NoisePipeline:
    """A stand-in diffusers pipeline whose samples are pure noise."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind, self.size = kind, size

    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> Any:
        from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

        return ImagePipelineOutput(images=noise(self.kind, batch_size, self.size, generator))


def filter_rates(guard: Guard, kind: str, n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` noise images through ``SafeGenFilter``: flagged share, and what resample returns."""
    size = guard.config.image_size
    pipe = _NoisePipeline(kind, size)
    g = torch.Generator().manual_seed(seed)
    flagged = SafeGenFilter(guard, policy="flag").wrap(pipe)(batch_size=n, generator=g)
    g = torch.Generator().manual_seed(seed + 1)
    kept = SafeGenFilter(guard, policy="resample", max_rounds=4).wrap(pipe)(
        batch_size=8, generator=g
    )
    return {
        "rejected": int(flagged.unsafe.sum()),
        "of": n,
        "max_p_value": float(flagged.p_values.max()),
        "resample_returned": len(kept.images),
        "resample_attempts": kept.attempts,
    }


def callback_rate(guard: Guard, kind: str, n: int, seed: int = 0) -> dict[str, Any]:
    """One ``SafeGenCallback`` check of ``n`` noise samples in a one-epoch Lightning run."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    size = guard.config.image_size

    class NoiseGenerator(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            return (self.w - batch[0].mean()) ** 2

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
            return noise(kind, k, size, generator)

    cb = SafeGenCallback(guard, num_samples=n, seed=seed)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
    )  # fmt: skip
    trainer.fit(NoiseGenerator(), DataLoader(TensorDataset(torch.rand(2, 1)), batch_size=2))
    last = cb.history[-1]
    return {"unsafe_rate": last["unsafe_rate"], "of": int(last["num_samples"])}


def untrained_ddpm_rate(guard: Guard, n: int, seed: int = 0) -> dict[str, Any]:
    """Samples of an untrained ``tiny`` DDPM (noise-like) through the filter, as in the README."""
    from generators import get_model_config
    from generators.ddpm import DDPMModule, load_pipeline

    torch.manual_seed(seed)
    module = DDPMModule(get_model_config("ddpm", "tiny", guard.config.image_size))
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipeline(module.export_pipeline(tmp))
        pipe.set_progress_bar_config(disable=True)
        out = SafeGenFilter(guard, policy="flag").wrap(pipe)(
            batch_size=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=50
        )
    return {"rejected": int(out.unsafe.sum()), "of": n, "max_p_value": float(out.p_values.max())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every path and print (and with ``--out`` write) the results as JSON."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.noise_check",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--guard", required=True, help="guard folder")
    p.add_argument("-n", type=int, default=32, help="noise images per kind and path (32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (0)")
    p.add_argument("--no-ddpm", action="store_true", help="skip the untrained DDPM")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    guard = Guard.load(args.guard)
    results: dict[str, Any] = {"guard": str(args.guard), "fingerprint": guard.fingerprint}
    for kind in KINDS:
        results[f"filter/{kind}"] = filter_rates(guard, kind, args.n, args.seed)
        results[f"callback/{kind}"] = callback_rate(guard, kind, args.n, args.seed)
    if not args.no_ddpm:
        results["filter/untrained_ddpm"] = untrained_ddpm_rate(guard, args.n, args.seed)
    print(json.dumps(results, indent=1))
    if args.out is not None:
        atomic_write_json(args.out, results)
    return results


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.noise_check"))

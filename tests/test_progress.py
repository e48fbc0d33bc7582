"""StepProgressBar: one bar over the whole run, step n of the total (safegen_guard.progress)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from safegen_guard.detector.training import fit_module
from safegen_guard.progress import StepProgressBar


def _fit(steps: int, progress: bool) -> None:
    model = nn.Conv2d(1, 1, 3, padding=1)
    images = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def loss(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return nn.functional.mse_loss(model(x), x)

    # 10 images in batches of 4 (last dropped): 2 steps per epoch, so 7 steps span 4 epochs
    fit_module(
        model, loss, images, steps=steps, batch_size=4, learning_rate=1e-3, seed=0,
        accelerator="cpu", progress=progress, description="unit",
    )  # fmt: skip


def test_bar_counts_steps_of_the_whole_run(capsys):
    _fit(7, progress=True)
    out = capsys.readouterr().out
    counts = re.findall(r"unit: *\d+%\|[^|]*\| (\d+)/(\d+) \[", out)
    assert counts, out
    assert {total for _, total in counts} == {"7"}  # the run's total, not the epoch's 2
    assert counts[-1][0] == "7" and "Epoch" not in out
    assert [int(n) for n, _ in counts] == sorted(int(n) for n, _ in counts)
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", out)  # elapsed<remaining (the ETA)


def test_no_bar_without_progress(capsys):
    _fit(3, progress=False)
    assert "unit" not in capsys.readouterr().out


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="`steps_per_batch` must be a positive int, got 0"):
        StepProgressBar(steps_per_batch=0)
    with pytest.raises(TypeError, match="`description` must be a str, got int"):
        StepProgressBar(3)

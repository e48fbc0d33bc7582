"""The inputs of the docs screenshots (benchmarks.figures.review_screenshots)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.figures.review_screenshots import write_inputs


def test_inputs_are_real_slices_and_noise_at_the_guard_size(tmp_path):
    folder = write_inputs(tmp_path / "in", 32, n_real=4, n_noise=2)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["noise0.png", "noise1.png", "real0.png", "real1.png", "real2.png", "real3.png"]
    arrays = {n: np.asarray(Image.open(folder / n)) for n in names}
    assert all(a.shape == (32, 32) and a.dtype == np.uint8 for a in arrays.values())
    # real slices have a dark background; uniform noise has none
    assert all((arrays[f"real{k}.png"] < 10).mean() > 0.2 for k in range(4))
    assert all((arrays[f"noise{k}.png"] < 10).mean() < 0.1 for k in range(2))

"""Tests of safegen_guard.detector.ops against closed forms and scipy.ndimage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from safegen_guard.detector import ops


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_local_noise_std_recovers_gaussian_noise_std(sigma):
    x = 0.5 + sigma * torch.randn(8, 1, 64, 64, generator=_gen(0))
    est = ops.local_noise_std(x, 7)
    assert est.shape == x.shape and bool((est >= 0).all())
    interior = est[..., 4:-4, 4:-4]
    assert float(interior.mean()) == pytest.approx(sigma, rel=0.10)
    assert float(interior.median()) == pytest.approx(sigma, rel=0.10)


def test_local_noise_std_ignores_linear_ramps():
    ramp = torch.linspace(0, 1, 32)[None, None, None, :].expand(2, 1, 32, 32)
    assert float(ops.local_noise_std(ramp, 5)[..., 3:-3, 3:-3].abs().max()) < 1e-5


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.5, 2.0])
def test_gaussian_blur_matches_scipy_mirror(sigma):
    # torch "reflect" padding (edge not repeated) is scipy's "mirror" mode; the kernel radius
    # is ceil(3 sigma), which scipy uses with truncate = radius / sigma.
    x = torch.rand(2, 1, 24, 20, generator=_gen(1), dtype=torch.float64)
    truncate = math.ceil(3 * sigma) / sigma
    y = ops.gaussian_blur(x, sigma).numpy()
    for i in range(2):
        ref = ndimage.gaussian_filter(x[i, 0].numpy(), sigma, mode="mirror", truncate=truncate)
        np.testing.assert_allclose(y[i, 0], ref, atol=1e-12)
        # interior: independent of the boundary mode
        ref_r = ndimage.gaussian_filter(x[i, 0].numpy(), sigma, mode="reflect", truncate=truncate)
        np.testing.assert_allclose(y[i, 0, 7:-7, 7:-7], ref_r[7:-7, 7:-7], atol=1e-12)


def test_gaussian_blur_preserves_constants_and_identity_for_zero_sigma():
    x = torch.full((3, 1, 16, 16), 0.37)
    torch.testing.assert_close(ops.gaussian_blur(x, 1.5), x)
    torch.testing.assert_close(ops.gaussian_blur(x, 10.0), x)  # radius capped to the image
    y = torch.rand(1, 1, 8, 8, generator=_gen(2))
    assert ops.gaussian_blur(y, 0) is y


def test_box_mean_matches_scipy_uniform_filter():
    x = torch.rand(1, 1, 12, 12, generator=_gen(3), dtype=torch.float64)
    ref = ndimage.uniform_filter(x[0, 0].numpy(), 5, mode="mirror")
    np.testing.assert_allclose(ops.box_mean(x, 5)[0, 0].numpy(), ref, atol=1e-12)


def test_estimate_foreground_and_radial_index():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:24, 8:24] = 0.8
    x[0, 0, 0, 0] = float("nan")
    fg = ops.estimate_foreground(x)
    assert fg.dtype == torch.bool and bool(fg[0, 0, 16, 16]) and not bool(fg[0, 0, 1, 1])
    r = ops.radial_index(5, 5)
    assert r.dtype == torch.long and int(r[2, 2]) == 0 and int(r[2, 4]) == 2 and int(r[0, 0]) == 3


def test_erode_square_and_frame_edges():
    m = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    m[..., 2:7, 2:7] = True
    expected = torch.zeros_like(m)
    expected[..., 3:6, 3:6] = True
    assert torch.equal(ops.erode(m, 1), expected)
    assert torch.equal(ops.erode(m, 0), m)
    # the frame border is not background: a full mask stays full
    assert ops.erode(torch.ones(1, 1, 5, 5, dtype=torch.bool), 2).all()

from __future__ import annotations

import pytest
import torch

from safegen_guard.memorization import AlignmentSearch, CopyPerturbation, aligned_ncc
from safegen_guard.memorization.align import subpixel_peak
from safegen_guard.memorization.perturb import perturb_copies, rotate_shift


def test_perturbation_is_seeded_in_range_and_identity_when_disabled(copy_data) -> None:
    x = copy_data["train"][:4]
    a = perturb_copies(x, torch.Generator().manual_seed(3))
    b = perturb_copies(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.allclose(a, x)
    none = CopyPerturbation(0.0, 0.0, 0.0, (1.0, 1.0), (0.0, 0.0))
    torch.testing.assert_close(perturb_copies(x, torch.Generator(), none), x)
    with pytest.raises(ValueError, match="`flip_prob` must be in"):
        CopyPerturbation(flip_prob=2.0)


def test_aligned_ncc_finds_shifted_mirrored_copies_and_ranks_other_slices_lower(copy_data):
    x = copy_data["train"][:6]
    moved = rotate_shift(x, torch.full((6,), 4.0), torch.tensor([[2.0, -1.5]] * 6), None)
    moved = moved.flip(-1)
    others = x.roll(3, 0)  # other slices, far apart in the scan
    sim = aligned_ncc(moved, torch.stack([x, others], 1))
    assert sim.shape == (6, 2)
    assert bool((sim[:, 0] > 0.9).all()), sim
    assert bool((sim[:, 0] > sim[:, 1]).all()), sim
    # without the mirror search the mirrored copies are no longer found
    no_flip = aligned_ncc(moved, x[:, None], AlignmentSearch(flips=False))[:, 0]
    assert bool((no_flip < sim[:, 0]).all())


def test_aligned_ncc_validates_shapes_and_settings() -> None:
    with pytest.raises(ValueError, match=r"`x` must have shape \[B, 1, H, W\]"):
        aligned_ncc(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"`candidates` must have shape \[2, K, 1, 8, 8\]"):
        aligned_ncc(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="`sigma_coarse` must be 0 or >"):
        AlignmentSearch(sigma_fine=2.0, sigma_coarse=1.0)
    with pytest.raises(TypeError, match="`max_shift` must be an int"):
        AlignmentSearch(max_shift=1.5)


def test_subpixel_peak_recovers_the_peak_of_a_sampled_parabola() -> None:
    d = torch.arange(-2.0, 3.0)
    true_peak, cx, cy = 0.9, 0.3, -0.4
    window = true_peak - 0.05 * (d[:, None] - cy) ** 2 - 0.02 * (d[None, :] - cx) ** 2
    assert float(window.max()) < true_peak - 1e-3
    torch.testing.assert_close(subpixel_peak(window[None])[0], torch.tensor(true_peak))
    # a peak on the border is not extrapolated
    edge = -((d[:, None] - 3.0) ** 2) - d[None, :] ** 2
    assert float(subpixel_peak(edge[None])[0]) == float(edge.max())

import numpy as np
import pytest
import torch

from safegen_guard.data import load_dataset
from safegen_guard.data.ct_phantom import (
    SLICES_PER_SUBJECT,
    SUBJECT_SPLITS,
    render_phantom_hu,
    simulate_ct,
    split_subjects,
)

N_VAL = len(split_subjects("val")) * SLICES_PER_SUBJECT


@pytest.fixture(scope="module")
def val():
    return load_dataset("ct_phantom", "val", 32)


def test_shapes_ranges_masks(val):
    assert N_VAL == 240  # 60 calibration subjects x 4 slices
    assert len(val) == N_VAL and val.images.shape == (N_VAL, 1, 32, 32)
    assert val.images.dtype == torch.float32 and torch.isfinite(val.images).all()
    assert val.images.min() >= 0 and val.images.max() <= 1
    coverage = val.masks.flatten(1).float().mean(1)
    assert (coverage > 0.2).all() and (coverage < 0.8).all()
    assert ((val.positions >= 0) & (val.positions <= 1)).all()
    # positions are stratified: every quarter of the thorax is represented
    assert set((val.positions * 4).floor().long().tolist()) == {0, 1, 2, 3}


def test_subject_splits_disjoint():
    ranges = {s: set(split_subjects(s)) for s in SUBJECT_SPLITS}
    assert not ranges["train"] & ranges["val"] and not ranges["val"] & ranges["test"]
    assert not ranges["train"] & ranges["test"]
    assert ranges["test"] == set(range(80, 100)) and len(ranges["val"]) == 60
    test = load_dataset("ct_phantom", "test", 16, acquisition=None)
    assert set(test.info["subjects"]) == ranges["test"]
    assert test.info["subject_ranges"] == [[80, 100]]


def test_phantom_anatomy_hu_values():
    hu, body = render_phantom_hu(3, 0.6, 64)
    assert hu.shape == (64, 64) and body.dtype == bool
    assert hu[~body].max() < -700  # air outside; edge pixels hold < half a voxel of fat
    assert np.median(hu[~body]) == -1000
    assert (hu < -700).sum() > 200  # lungs
    assert (hu > 500).sum() > 5  # spine / ribs
    assert np.median(hu[body & (hu > -200)]) == pytest.approx(40, abs=60)
    # subjects differ
    assert not np.array_equal(hu, render_phantom_hu(4, 0.6, 64)[0])


def test_dose_controls_noise():
    hu, body = render_phantom_hu(1, 0.5, 64)
    clean = simulate_ct(hu, None)
    g = torch.Generator().manual_seed(0)
    low = simulate_ct(hu, 1e4, g) - clean
    high = simulate_ct(hu, 1e6, g) - clean
    assert low[body].std() > 5 * high[body].std()
    assert 15 < low[body].std() < 200  # low dose: visible, plausible HU noise
    assert np.abs(clean[body] - hu[body]).mean() < 60  # reconstruction is faithful


def test_acquisition_noise_and_determinism(val):
    clean = load_dataset("ct_phantom", "val", 32, acquisition=None)
    assert torch.equal(clean.masks, val.masks)
    assert not torch.equal(clean.images, val.images)
    again = load_dataset("ct_phantom", "val", 32)
    assert torch.equal(again.images, val.images)
    other = load_dataset("ct_phantom", "val", 32, seed=1)
    assert not torch.equal(other.images, val.images)
    two = load_dataset("ct_phantom", "val", 32, variants=2)
    assert len(two) == 2 * N_VAL and not torch.equal(two.images[0], two.images[1])


def test_augment_changes_images(val):
    aug = load_dataset("ct_phantom", "val", 32, augment=True)
    assert aug.images.shape == val.images.shape
    assert (aug.masks ^ val.masks).sum() > 0

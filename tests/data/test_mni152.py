import dataclasses
import json

import numpy as np
import pytest
import torch

from safegen_guard.data import DATASETS, AcquisitionConfig, SliceDataset, load_dataset
from safegen_guard.data.foreground import interleaved_split
from safegen_guard.errors import DataLoadError

SPLIT_NAMES = ("train", "val", "test")


@pytest.fixture(scope="module")
def splits() -> dict[str, SliceDataset]:
    return {s: load_dataset("mni152", s, 32) for s in SPLIT_NAMES}


def test_registry_lists_embedded_datasets():
    assert set(DATASETS) == {"mni152", "ct_phantom"}


def test_shapes_dtype_range(splits):
    for split, ds in splits.items():
        assert ds.split == split and ds.name == "mni152"
        assert ds.images.shape[1:] == (1, 32, 32)
        assert ds.images.dtype == torch.float32
        assert torch.isfinite(ds.images).all()
        assert ds.images.min() >= 0 and ds.images.max() <= 1
        assert ds.masks.dtype == torch.bool
        coverage = ds.masks.flatten(1).float().mean(1)
        assert (coverage > 0.05).all() and (coverage < 0.95).all()
        assert ((ds.positions >= 0) & (ds.positions <= 1)).all()
    assert len(splits["train"]) > len(splits["val"]) > len(splits["test"]) > 0


def test_splits_disjoint_not_adjacent_and_span_the_brain(splits):
    idx = {s: set(ds.info["slice_indices"]) for s, ds in splits.items()}
    for a in SPLIT_NAMES:
        for b in SPLIT_NAMES:
            if a < b:
                assert not idx[a] & idx[b]
                # guard gap: no slice has a direct neighbour in another split
                assert not {i + 1 for i in idx[a]} & idx[b]
                assert not {i - 1 for i in idx[a]} & idx[b]
    for split in ("train", "test"):
        pos = splits[split].positions
        assert pos.min() < 0.2 and pos.max() > 0.8, split
    assert splits["val"].positions.max() - splits["val"].positions.min() > 0.4


def test_short_volume_keeps_plain_pattern():
    # fewer than 2 pattern cycles (30 slices): the ends are not forced to val
    parts = {s: interleaved_split(np.arange(13), s) for s in SPLIT_NAMES}
    assert parts["train"].tolist() == [0, 1, 2, 3, 4, 5, 11, 12]
    assert parts["val"].tolist() == [7, 8, 9]
    assert parts["test"].tolist() == []


def test_interleaved_split_rule_on_synthetic_indices():
    indices = np.arange(100)
    parts = {s: interleaved_split(indices, s) for s in SPLIT_NAMES}
    # hand-derived: V(0-2) gap T(4-6) gap V(8-10) gap T(12-14) gap X(16-18) gap T(20-25) ...;
    # the last full block (96-98) is val, the partial 99 falls in its guard gap
    assert parts["val"][:6].tolist() == [0, 1, 2, 8, 9, 10]
    assert parts["train"][:3].tolist() == [4, 5, 6]
    assert parts["test"][:3].tolist() == [16, 17, 18]
    assert parts["val"][-3:].tolist() == [96, 97, 98]
    # every test slice lies strictly between val slices
    assert parts["val"].min() < parts["test"].min() and parts["test"].max() < parts["val"].max()
    # (len(train), len(val), len(test)) == (42, 21, 15)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [42, 21, 15]
    assert not set(parts["train"]) & set(parts["test"])
    # the guard gap: no slice of one split is a direct neighbour of another split's slice
    for a in SPLIT_NAMES:
        for b in SPLIT_NAMES:
            if a != b:
                assert not set(parts[a] + 1) & set(parts[b])


def test_clean_template_masks_match_foreground(splits):
    clean = load_dataset("mni152", "val", 32, acquisition=None)
    assert torch.equal(clean.masks, splits["val"].masks)
    # outside the mask only partial-volume edge pixels are non-zero; bright tissue is inside
    assert clean.images[~clean.masks].mean() < 0.02
    bright = clean.images > 0.4
    assert (bright & clean.masks).sum() >= 0.99 * bright.sum()
    assert clean.images[clean.masks].mean() > 0.3


def test_determinism_and_seed_changes_draws():
    a = load_dataset("mni152", "val", 32, variants=2, augment=True, seed=1)
    b = load_dataset("mni152", "val", 32, variants=2, augment=True, seed=1)
    c = load_dataset("mni152", "val", 32, variants=2, augment=True, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    # variants of one slice differ from each other
    assert not torch.equal(a.images[0], a.images[1])
    assert a.positions[0] == a.positions[1]


def test_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_dataset("mni152", "val", 32, augment=True)
    assert torch.equal(torch.rand(3), expected)


def test_info_is_json_and_records_settings(splits):
    info = splits["val"].info
    json.dumps(info)
    assert info["acquisition"] == dataclasses.asdict(AcquisitionConfig())
    assert len(info["slice_indices"]) == len(splits["val"])


@pytest.mark.parametrize("size", [64, 128])
def test_other_sizes(size):
    ds = load_dataset("mni152", "val", size, acquisition=None)
    assert ds.size == (size, size)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`split` must be one of \['train', 'val', 'test'\]"):
        load_dataset("mni152", "training")
    with pytest.raises(ValueError, match="`size` must be >= 16 pixels, got 8"):
        load_dataset("mni152", "val", 8)
    with pytest.raises(ValueError, match="`variants` must be a positive int, got 0"):
        load_dataset("mni152", "val", 32, variants=0)
    with pytest.raises(TypeError, match="`seed` must be an int, got str"):
        load_dataset("mni152", "val", 32, seed="1")
    with pytest.raises(ValueError, match="`acquisition` must be 'default', 'none'"):
        load_dataset("mni152", "val", 32, acquisition="noisy")
    with pytest.raises(TypeError, match="`acquisition` must be .* got int"):
        load_dataset("mni152", "val", 32, acquisition=3)
    with pytest.raises(DataLoadError, match="unknown dataset 'brats'"):
        load_dataset("brats")

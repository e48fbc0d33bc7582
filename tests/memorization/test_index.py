from __future__ import annotations

import json

import pytest
import torch

from safegen_guard.calibration import conformal_p_values
from safegen_guard.errors import CheckpointError
from safegen_guard.memorization import (
    CopyPerturbation,
    MemorizationConfig,
    MemorizationIndex,
    build_knn,
    perturb_copies,
    search_knn,
)
from safegen_guard.memorization.encoder import nt_xent
from safegen_guard.memorization.sources import slice_labels


def test_index_flags_near_copies_with_their_source_and_spares_heldout(tiny_index, copy_data):
    train = copy_data["train"]
    # 32 px: a 3 px shift is a tenth of the field of view; the benchmark tests the full
    # perturbation at 64 px, this test the mechanics with milder copies
    mild = CopyPerturbation(max_shift=1.0, max_rotation=2.0)
    copies = perturb_copies(train, torch.Generator().manual_seed(11), mild)
    result = tiny_index.check(copies)
    assert result.memorized.float().mean() >= 0.9
    assert (result.nearest_index == torch.arange(len(train))).float().mean() >= 0.9
    held = tiny_index.check(copy_data["test"])
    assert held.memorized.float().mean() <= 0.3
    assert float(result.similarity.median()) > float(held.similarity.median())
    # p-values are the conformal share of the stored held-out null
    torch.testing.assert_close(
        result.p_value, conformal_p_values(tiny_index.null, result.similarity)
    )
    assert bool((result.memorized == (result.similarity > result.threshold)).all())


def test_index_round_trips_without_pickle_and_rejects_tampering(tiny_index, copy_data, tmp_path):
    tiny_index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "memorization.json").read_text())
    assert meta["num_images"] == 16 and len(meta["labels"]) == 16
    loaded = MemorizationIndex.load(tmp_path / "idx")
    x = copy_data["test"][:5]
    a, b = tiny_index.check(x), loaded.check(x)
    torch.testing.assert_close(a.similarity, b.similarity)
    torch.testing.assert_close(a.nearest_index, b.nearest_index)
    weights = tmp_path / "idx" / "memorization.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="modified after saving"):
        MemorizationIndex.load(tmp_path / "idx")


def test_fit_validates_heldout_and_alpha(copy_data, tiny_config) -> None:
    with pytest.raises(ValueError, match="`heldout` .* is required"):
        MemorizationIndex.fit(copy_data["train"], config=tiny_config)
    small = MemorizationConfig.from_dict({**tiny_config.to_dict(), "alpha": 0.01})
    with pytest.raises(ValueError, match="alpha=0.01 needs at least 99 held-out real images"):
        MemorizationIndex.fit(copy_data["train"], copy_data["test"], config=small)
    with pytest.raises(ValueError, match="`alpha` must be"):
        MemorizationConfig(alpha=1.5)
    with pytest.raises(TypeError, match="a training set must be"):
        MemorizationIndex.fit([1, 2], copy_data["val"], size=32, config=tiny_config)


def test_config_round_trips_through_json(tiny_config) -> None:
    data = json.loads(json.dumps(tiny_config.to_dict()))
    assert MemorizationConfig.from_dict(data) == tiny_config


def test_faiss_exact_and_ivf_indexes_return_the_nearest_rows() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(2000, 16, generator=g), dim=1)
    queries = torch.nn.functional.normalize(emb[:50] + 0.05 * torch.randn(50, 16, generator=g))
    for threshold in (10_000, 500):  # exact, then IVF
        index = build_knn(emb, ivf_threshold=threshold, nprobe=8)
        sim, rows = search_knn(index, queries, 3)
        assert sim.shape == rows.shape == (50, 3)
        assert (rows[:, 0] == torch.arange(50)).float().mean() >= 0.95
    assert type(build_knn(emb, ivf_threshold=500)).__name__ == "IndexIVFFlat"
    with pytest.raises(ValueError, match="non-empty"):
        build_knn(torch.zeros(0, 4))


def test_nt_xent_prefers_matching_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    assert float(nt_xent(z, z, 0.1)) < float(nt_xent(z, z.roll(1, 0), 0.1))


def test_slice_labels_name_the_source_slice() -> None:
    from safegen_guard.data import load_dataset

    mri = load_dataset("mni152", "train", 16)
    labels = slice_labels(mri)
    assert len(labels) == len(mri)
    assert labels[0] == f"mni152/train/slice{mri.info['slice_indices'][0]:03d}"
    ct = load_dataset("ct_phantom", "val", 16, variants=2)
    assert (
        slice_labels(ct)[1].startswith("ct_phantom/val/subject060_z")
        and "~1" in slice_labels(ct)[1]
    )


def test_index_deep_copies_with_simpleitk_imported(tiny_index, copy_data):
    """faiss's own index serialisation breaks once SimpleITK is imported; copies rebuild."""
    import copy

    import SimpleITK  # noqa: F401  (MONAI's reader; registers a clashing SWIG vector type)

    x = copy_data["train"][:4]
    before = tiny_index.check(x)  # builds the faiss index
    twin = copy.deepcopy(tiny_index)
    after = twin.check(x)
    assert torch.equal(after.nearest_index, before.nearest_index)
    assert torch.equal(after.memorized, before.memorized)

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import torch

from benchmarks.guard_eval import artifact_suite
from safegen_guard.artifacts import ARTIFACTS, list_artifacts, register_artifact
from safegen_guard.explain.explainer import assign_kinds, inject_mix
from safegen_guard.seeds import TEST_SUITE_SEED, derive_seed

NEW_KIND = "aaa_probe"  # sorts first: a position-based seed would move every other kind


@pytest.fixture
def new_kind() -> Iterator[str]:
    @register_artifact(NEW_KIND, local=True, description="brightens a square")
    def _brighten(x, severity, generator, foreground):  # noqa: ANN001, ANN202
        support = torch.zeros_like(x, dtype=torch.bool)
        support[..., 4:12, 4:12] = True
        shift = float(torch.rand((), generator=generator)) * severity
        return torch.where(support, x + shift, x), support

    try:
        yield NEW_KIND
    finally:
        del ARTIFACTS[NEW_KIND]


def test_derive_seed_is_a_stable_hash_of_base_and_names():
    seed = derive_seed(7, "artifact_suite", "ring", "mild")
    digest = hashlib.sha256(b"7\x1fartifact_suite\x1fring\x1fmild").digest()
    assert seed == int.from_bytes(digest[:8], "big") >> 1 and 0 <= seed < 2**63
    assert seed != derive_seed(7, "artifact_suite", "mild", "ring")  # order matters
    assert seed != derive_seed(8, "artifact_suite", "ring", "mild")
    torch.Generator().manual_seed(seed)  # a valid torch seed
    with pytest.raises(TypeError, match=r"`base` must be an int, got str \('7'\)"):
        derive_seed("7", "ring")
    with pytest.raises(TypeError, match=r"seed names must be str, got int \(3\)"):
        derive_seed(7, "ring", 3)


def test_new_kind_leaves_other_suite_cells_unchanged(tiny_real, new_kind):
    images, masks = tiny_real["test"][:6], tiny_real["test_masks"][:6]
    old_kinds = [k for k in list_artifacts() if k != new_kind]
    before = artifact_suite(images, masks, TEST_SUITE_SEED, kinds=old_kinds)
    after = artifact_suite(images, masks, TEST_SUITE_SEED)
    assert [c["kind"] for c in after[:2]] == [new_kind, new_kind]
    for old, new in zip(before, after[2:], strict=True):
        assert (old["kind"], old["severity"]) == (new["kind"], new["severity"])
        assert torch.equal(old["images"], new["images"]), old["kind"]
        assert torch.equal(old["masks"], new["masks"]), old["kind"]


def test_inject_mix_depends_on_names_not_positions(tiny_real, new_kind):
    images = tiny_real["test"][:24]
    kinds = ["noise_local", "blur_local", "dropout"]
    x, gt = inject_mix(images, kinds, seed=3)
    x_rev, gt_rev = inject_mix(images, kinds[::-1], seed=3)
    assert torch.equal(x, x_rev) and torch.equal(gt, gt_rev)
    assert not torch.equal(x, images) and gt.any()
    # with one more kind, an image keeps its kind or goes to the new kind
    before = [kinds[i] for i in assign_kinds(200, kinds, seed=3)]
    with_new = [new_kind, *kinds]
    after = [with_new[i] for i in assign_kinds(200, with_new, seed=3)]
    assert all(a in (b, new_kind) for a, b in zip(after, before))
    assert 0 < after.count(new_kind) < 200 and len(set(before)) == 3
    with pytest.raises(ValueError, match=r"`kinds` must be distinct artifact kind names"):
        inject_mix(images, ["ring", "ring"], seed=0)

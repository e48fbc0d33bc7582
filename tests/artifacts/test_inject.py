from __future__ import annotations

import pytest
import torch

from safegen_guard.artifacts import ARTIFACTS, estimate_foreground, inject, list_artifacts

KINDS = list_artifacts()
EXPECTED = {
    "noise_local",
    "noise_global",
    "blur_local",
    "blur_global",
    "ring",
    "dropout",
    "kspace_spike",
    "gibbs",
    "bias_field",
    "checkerboard",
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_required_kinds_registered() -> None:
    assert EXPECTED <= set(KINDS)
    assert {"noise_local", "blur_local", "dropout", "checkerboard"} <= set(
        list_artifacts(local=True)
    )
    assert set(list_artifacts(local=True)).isdisjoint(list_artifacts(local=False))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fixture", ["images", "small_images"])
def test_output_contract(kind: str, fixture: str, request: pytest.FixtureRequest) -> None:
    x = request.getfixturevalue(fixture)
    before = x.clone()
    out, mask = inject(x, kind, "strong", gen(1))
    assert torch.equal(x, before), "input was mutated"
    assert out.shape == x.shape and mask.shape == x.shape
    assert out.dtype == torch.float32 and mask.dtype == torch.bool
    assert out.device == x.device and mask.device == x.device
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    # every image of the batch gets a non-empty mask at strong severity
    assert mask.flatten(1).any(1).all()


@pytest.mark.parametrize("kind", KINDS)
def test_mild_masks_not_empty(kind: str, images: torch.Tensor) -> None:
    _, mask = inject(images, kind, "mild", gen(2))
    assert mask.flatten(1).any(1).all()


@pytest.mark.parametrize("kind", list_artifacts(local=True))
def test_local_masks_are_small(kind: str, images: torch.Tensor) -> None:
    _, mask = inject(images, kind, "strong", gen(3))
    fraction = mask.flatten(1).float().mean(1)
    assert (fraction > 0).all() and (fraction < 0.5).all()


@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_where_the_image_changed(kind: str, images: torch.Tensor) -> None:
    out, mask = inject(images, kind, "strong", gen(4))
    diff = (out - images).abs()
    head = estimate_foreground(images)
    assert diff[mask].mean() > 0.02
    outside = ~mask & head
    if outside.any():  # inside the head, what the mask leaves out barely changed
        assert diff[outside].mean() < 0.02


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind: str, images: torch.Tensor) -> None:
    a, ma = inject(images, kind, "strong", gen(5))
    b, mb = inject(images, kind, "strong", gen(5))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    c, _ = inject(images, kind, "strong")
    d, _ = inject(images, kind, "strong", None)
    assert torch.equal(c, d), "generator=None must be deterministic (seed 0)"
    e, _ = inject(images, kind, "strong", gen(6))
    assert torch.equal(a, e) != ARTIFACTS[kind].stochastic


@pytest.mark.parametrize("kind", KINDS)
def test_mild_changes_less_than_strong(kind: str, images: torch.Tensor) -> None:
    mild, _ = inject(images, kind, "mild", gen(7))
    strong, _ = inject(images, kind, "strong", gen(7))
    assert (mild - images).abs().mean() < (strong - images).abs().mean()


@pytest.mark.parametrize("kind", KINDS)
def test_severity_is_monotonic(kind: str, images: torch.Tensor) -> None:
    changes = [(inject(images, kind, s, gen(8))[0] - images).abs().mean() for s in (0.2, 0.6, 1)]
    assert changes[0] < changes[1] < changes[2]


@pytest.mark.parametrize("kind", KINDS)
def test_batch_elements_independent_of_batch_size(kind: str, images: torch.Tensor) -> None:
    one, mask = inject(images[:1], kind, "strong", gen(9))
    assert one.shape == (1, 1, 64, 64) and mask[0].any()


@pytest.mark.parametrize("kind", list_artifacts(local=True))
def test_local_artifacts_stay_in_foreground(kind: str, images: torch.Tensor) -> None:
    fg = torch.zeros_like(images, dtype=torch.bool)
    fg[..., 16:48, 16:48] = True
    out, mask = inject(images, kind, "strong", gen(10), foreground=fg)
    changed = (out - images).abs() > 0
    assert not changed[..., :12, :].any() and not changed[..., 52:, :].any()
    assert not mask[..., :12, :].any()


def test_global_mask_is_changed_foreground_not_frame(images: torch.Tensor) -> None:
    out, mask = inject(images, "noise_global", "strong", gen(11))
    assert (out[..., :4, :4] != images[..., :4, :4]).any()  # the frame corner did change
    assert not mask[..., :4, :4].any()  # ... but it is outside the head


def test_ring_is_concentric() -> None:
    flat = torch.full((1, 1, 65, 65), 0.5)
    out, _ = inject(flat, "ring", "strong", gen(12), foreground=torch.ones_like(flat).bool())
    diff = (out - flat)[0, 0]
    assert diff.abs().max() > 0.05
    yy, xx = torch.meshgrid(torch.arange(65.0), torch.arange(65.0), indexing="ij")
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 28**2
    # rings around the centre pixel (32, 32) are invariant to 90-degree rotation and flips
    for other in (torch.rot90(diff, 1), diff.flip(0)):
        corr = torch.corrcoef(torch.stack([diff[inside], other[inside]]))[0, 1]
        assert corr > 0.9

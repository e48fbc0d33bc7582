"""Artifact families for the leave-one-family-out protocol, including validation-only kinds.

Every kind of :mod:`safegen_guard.artifacts` belongs to one *family* (kinds that are the same
failure at different extents, e.g. local and global noise). On top of them this module defines
ten **validation-only kinds** that the library itself never injects, each its own family:
MRI acquisition artifacts from TorchIO's physics-based simulators (motion, ghosting), a
wrap-around (aliasing) error, resampling errors (anisotropic and nearest-neighbour
up-sampling), intensity errors (window clipping, gamma contrast) and anatomically implausible
structure (local elastic warp, swirl, a mirrored region). They exist so that view selection can
be validated on failures nobody wrote a view for; they are not part of the product's registry,
so no view of the product can be tuned to them by accident.

The product is judged on still other kinds, held back from this repository.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from safegen_guard.artifacts import ARTIFACTS, inject
from safegen_guard.artifacts.masks import change_mask

__all__ = ["Family", "FAMILIES", "families_for", "corrupt", "VALIDATION_KINDS"]

Corruptor = Callable[[torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]
"""``(images [B,1,H,W], foreground [B,1,H,W] bool, strength, generator) -> corrupted``."""

STRENGTH = {"mild": 0.5, "strong": 1.0}


@dataclass(frozen=True)
class Family:
    """A family of artifact kinds that the protocol holds out together.

    Attributes:
        name: Family name.
        kinds: Its kinds (registry kinds or validation-only kinds).
        local: Whether its kinds act on a region (Dice is measured on local kinds only).
        modality: ``"any"``, ``"mri"`` or ``"ct"``.
        validation_only: Not in :mod:`safegen_guard.artifacts` (defined here).
    """

    name: str
    kinds: tuple[str, ...]
    local: bool
    modality: str = "any"
    validation_only: bool = False


def _motion(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    import torchio as tio

    out = []
    for img in x:
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=g)))
        t = tio.RandomMotion(degrees=6 * s, translation=6 * s, num_transforms=int(1 + 2 * s))
        out.append(t(img[..., None].float())[..., 0])
    return torch.stack(out)


def _ghosting(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    import torchio as tio

    out = []
    for img in x:
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=g)))
        t = tio.RandomGhosting(num_ghosts=(2, 4), axes=(0, 1), intensity=(0.4 * s, 0.8 * s))
        out.append(t(img[..., None].float())[..., 0])
    return torch.stack(out)


def _wraparound(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    dim = 2 + int(torch.randint(2, (1,), generator=g))
    shift = x.shape[dim] // 2
    return x + 0.25 * s * torch.roll(x, shift, dims=dim)


def _down_up(x: torch.Tensor, factor: tuple[int, int], mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(h // factor[0], w // factor[1]), mode="area")
    if mode == "nearest":
        return F.interpolate(small, size=(h, w), mode="nearest")
    return F.interpolate(small, size=(h, w), mode=mode, align_corners=False)


def _anisotropy(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    f = 2 if s < 0.75 else 4
    axis = int(torch.randint(2, (1,), generator=g))
    return _down_up(x, (f, 1) if axis == 0 else (1, f), "bilinear")


def _nearest(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    f = 2 if s < 0.75 else 4
    return _down_up(x, (f, f), "nearest")


def _window_clip(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    level = 1.0 - 0.35 * s
    return (x / level).clamp_max(1.0)


def _contrast(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    up = bool(torch.randint(2, (1,), generator=g))
    gamma = (1.0 + 0.9 * s) if up else 1.0 / (1.0 + 0.9 * s)
    return x.clamp_min(0.0) ** gamma


def _region(fg: torch.Tensor, frac: float, g: torch.Generator) -> list[tuple[int, int, int]]:
    """One square (top, left, side) per image, centred on a random foreground pixel."""
    h = fg.shape[-1]
    side = max(4, int(frac * h))
    out = []
    for m in fg[:, 0]:
        pix = m.nonzero()
        if len(pix) == 0:
            cy = cx = h // 2
        else:
            cy, cx = (int(v) for v in pix[int(torch.randint(len(pix), (1,), generator=g))])
        top = min(max(0, cy - side // 2), h - side)
        left = min(max(0, cx - side // 2), h - side)
        out.append((top, left, side))
    return out


def _region_flip(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    out = x.clone()
    for i, (t, lft, side) in enumerate(_region(fg, 0.15 + 0.15 * s, g)):
        patch = out[i, :, t : t + side, lft : lft + side]
        out[i, :, t : t + side, lft : lft + side] = patch.flip(-2)
    return out


def _warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at identity + ``flow`` (``[B, H, W, 2]`` in pixels)."""
    b, _, h, w = x.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([xx, yy], -1).float()[None] + flow
    grid = 2 * grid / torch.tensor([w - 1, h - 1]) - 1
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _bump(fg: torch.Tensor, frac: float, g: torch.Generator) -> tuple[torch.Tensor, list]:
    h = fg.shape[-1]
    regions = _region(fg, frac, g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    weights = []
    for t, lft, side in regions:
        cy, cx, r = t + side / 2, lft + side / 2, side / 2
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        weights.append(torch.exp(-2 * d2) * (d2 < 1))
    return torch.stack(weights), regions


def _elastic(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    h = x.shape[-1]
    w, _ = _bump(fg, 0.3, g)
    low = torch.randn(x.shape[0], 2, 4, 4, generator=g)
    field = F.interpolate(low, size=(h, h), mode="bicubic", align_corners=False)
    flow = field.permute(0, 2, 3, 1) * w[..., None] * (0.06 * s * h)
    return _warp(x, flow)


def _swirl(x: torch.Tensor, fg: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    h = x.shape[-1]
    w, regions = _bump(fg, 0.35, g)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(h).float(), indexing="ij")
    flows = []
    for i, (t, lft, side) in enumerate(regions):
        cy, cx = t + side / 2, lft + side / 2
        theta = 2.5 * s * w[i]
        dy, dx = yy - cy, xx - cx
        ny = cy + dy * torch.cos(theta) - dx * torch.sin(theta)
        nx = cx + dy * torch.sin(theta) + dx * torch.cos(theta)
        flows.append(torch.stack([nx - xx, ny - yy], -1))
    return _warp(x, torch.stack(flows))


VALIDATION_KINDS: dict[str, tuple[Corruptor, bool, str]] = {
    "motion": (_motion, False, "mri"),
    "ghosting": (_ghosting, False, "mri"),
    "wraparound": (_wraparound, False, "mri"),
    "anisotropy": (_anisotropy, False, "any"),
    "nearest_upsample": (_nearest, False, "any"),
    "window_clip": (_window_clip, False, "any"),
    "contrast": (_contrast, False, "any"),
    "elastic": (_elastic, True, "any"),
    "swirl": (_swirl, True, "any"),
    "region_flip": (_region_flip, True, "any"),
}
"""name -> (corruptor, local, modality) of the validation-only kinds."""

_REGISTRY_FAMILIES = {
    "blur": ("blur_local", "blur_global"),
    "noise": ("noise_local", "noise_global"),
    "checkerboard": ("checkerboard", "checkerboard_global"),
    "dropout": ("dropout",),
    "bias_field": ("bias_field",),
    "gibbs": ("gibbs",),
    "kspace_spike": ("kspace_spike",),
    "ring": ("ring",),
}


def _registry_family(name: str, kinds: tuple[str, ...]) -> Family:
    specs = [ARTIFACTS[k] for k in kinds]
    modality = specs[0].modality
    return Family(name, kinds, any(s.local for s in specs), modality)


FAMILIES: tuple[Family, ...] = tuple(
    [_registry_family(n, k) for n, k in _REGISTRY_FAMILIES.items()]
    + [Family(n, (n,), loc, mod, True) for n, (_, loc, mod) in VALIDATION_KINDS.items()]
)


def families_for(modality: str) -> tuple[Family, ...]:
    """Families meaningful for ``modality`` (``"mri"`` or ``"ct"``)."""
    return tuple(f for f in FAMILIES if f.modality in ("any", modality))


def corrupt(
    images: torch.Tensor,
    foreground: torch.Tensor,
    kind: str,
    severity: str,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``images`` with a registry or validation-only ``kind`` at ``severity``.

    Args:
        images: ``[B, 1, H, W]`` in ``[0, 1]``.
        foreground: ``[B, 1, H, W]`` bool head/body masks.
        kind: A kind of :mod:`safegen_guard.artifacts` or of :data:`VALIDATION_KINDS`.
        severity: ``"mild"`` or ``"strong"``.
        generator: Source of randomness.

    Returns:
        ``(corrupted [B, 1, H, W] in [0, 1], ground-truth mask [B, 1, H, W] bool)``; the mask
        of a global validation kind is the changed foreground.
    """
    if kind in ARTIFACTS:
        return inject(images, kind, severity, generator, foreground=foreground)
    if kind not in VALIDATION_KINDS:
        known = sorted(set(ARTIFACTS) | set(VALIDATION_KINDS))
        raise ValueError(f"unknown kind {kind!r}; known: {known}")
    fn, local, _ = VALIDATION_KINDS[kind]
    out = fn(images.float(), foreground, STRENGTH[severity], generator)
    out = torch.nan_to_num(out.float(), nan=0.0).clamp(0.0, 1.0)
    support = torch.ones_like(foreground) if not local else foreground
    return out, change_mask(images, out, support)

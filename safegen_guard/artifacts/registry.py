"""Registry of artifact kinds and the single entry point :func:`inject`.

An artifact function has the signature
``fn(images, severity, generator, foreground) -> (corrupted, support)``:

* ``images``: ``[B, 1, H, W]`` float32 in [0, 1] (a private copy; the caller's tensor is never
  passed in);
* ``severity``: float in (0, 1], mapped by the kind to its physical parameter monotonically;
* ``generator``: the ``torch.Generator`` every random draw must come from;
* ``foreground``: ``[B, 1, H, W]`` bool head / body mask;
* ``corrupted``: ``[B, 1, H, W]`` float (not yet clamped);
* ``support``: ``[B, 1, H, W]`` bool region where the artifact acts (the patch of a local
  kind), or ``None`` for a global kind, whose support is then the foreground.

:func:`inject` clamps the result to [0, 1] and builds the ground-truth mask with
:func:`safegen_guard.artifacts.masks.change_mask`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from safegen_guard.artifacts import masks
from safegen_guard.validation import check_choice, check_images

__all__ = [
    "ARTIFACTS",
    "ArtifactFn",
    "ArtifactKind",
    "SEVERITY_PRESETS",
    "inject",
    "list_artifacts",
    "register_artifact",
    "resolve_severity",
]

ArtifactFn = Callable[
    [torch.Tensor, float, torch.Generator, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor | None],
]

SEVERITY_PRESETS: dict[str, float] = {"mild": 0.4, "strong": 1.0}
"""Named severities. ``mild`` (0.4) is subtle but visible side by side with the clean slice;
``strong`` (1.0) is obvious. Each kind maps severity to its physical parameter."""

MODALITIES = ("any", "mri", "ct")


@dataclass(frozen=True)
class ArtifactKind:
    """One registered artifact kind.

    Attributes:
        name: Registry key, e.g. ``"noise_local"``.
        description: One line: the physical model.
        local: True if the artifact is confined to a random patch (mask much smaller than the
            frame), False if it acts on the whole image.
        modality: Where it is physically meaningful: ``"any"``, ``"mri"`` or ``"ct"`` (a hint;
            every kind runs on any image).
        fn: The artifact function (see the module docstring for its contract).
        stochastic: False if the result does not depend on the generator.
    """

    name: str
    description: str
    local: bool
    modality: str
    fn: ArtifactFn = field(repr=False)
    stochastic: bool = True


ARTIFACTS: dict[str, ArtifactKind] = {}
"""All registered kinds by name (filled by :func:`register_artifact`)."""


def register_artifact(
    name: str,
    *,
    local: bool,
    modality: str = "any",
    description: str | None = None,
    stochastic: bool = True,
) -> Callable[[ArtifactFn], ArtifactFn]:
    """Decorator that registers an artifact function under ``name``.

    Args:
        name: Registry key; must be new.
        local: Whether the artifact is confined to a patch.
        modality: ``"any"``, ``"mri"`` or ``"ct"``.
        description: One-line description; defaults to the first line of the docstring.
        stochastic: False if the function ignores the generator.

    Returns:
        The decorator, which returns the function unchanged.

    Raises:
        ValueError: ``name`` is already registered or ``modality`` is unknown.
    """
    check_choice(modality, "modality", MODALITIES)
    if name in ARTIFACTS:
        raise ValueError(f"artifact kind {name!r} is already registered")

    def decorator(fn: ArtifactFn) -> ArtifactFn:
        doc = description or (fn.__doc__ or name).strip().splitlines()[0]
        ARTIFACTS[name] = ArtifactKind(name, doc, local, modality, fn, stochastic)
        return fn

    return decorator


def list_artifacts(local: bool | None = None) -> list[str]:
    """Return registered kind names (sorted), optionally only local or only global ones.

    Example:
        >>> "noise_local" in list_artifacts(local=True)
        True
    """
    return sorted(n for n, k in ARTIFACTS.items() if local is None or k.local == local)


def resolve_severity(severity: object) -> float:
    """Turn ``"mild"``, ``"strong"`` or a float in (0, 1] into a float in (0, 1].

    Raises:
        TypeError: ``severity`` is neither a str nor a real number.
        ValueError: unknown preset name, or a number outside (0, 1].

    Example:
        >>> resolve_severity("strong")
        1.0
    """
    if isinstance(severity, str):
        if severity not in SEVERITY_PRESETS:
            raise ValueError(
                f"`severity` must be one of {list(SEVERITY_PRESETS)} or a float in (0, 1], "
                f"got {severity!r}"
            )
        return SEVERITY_PRESETS[severity]
    if isinstance(severity, bool) or not isinstance(severity, (int, float)):
        raise TypeError(
            f"`severity` must be a str preset or a float in (0, 1], got {type(severity).__name__}"
        )
    value = float(severity)
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(f"`severity` must be in (0, 1], got {severity}")
    return value


def _check_kind(kind: object) -> ArtifactKind:
    if not isinstance(kind, str):
        raise TypeError(f"`kind` must be a str, got {type(kind).__name__}")
    if kind not in ARTIFACTS:
        raise ValueError(f"unknown artifact kind {kind!r}; known kinds: {list_artifacts()}")
    return ARTIFACTS[kind]


def _check_foreground(foreground: object, images: torch.Tensor) -> torch.Tensor:
    if not isinstance(foreground, torch.Tensor):
        raise TypeError(
            "`foreground` must be a bool torch.Tensor [B, 1, H, W], got "
            f"{type(foreground).__name__}"
        )
    if foreground.dtype != torch.bool or foreground.shape != images.shape:
        raise ValueError(
            f"`foreground` must be a bool tensor of shape {tuple(images.shape)}, got dtype "
            f"{foreground.dtype} and shape {tuple(foreground.shape)}"
        )
    return masks.dilate(foreground.to(images.device), masks.size_scale(images.shape[-1]))


def inject(
    images: torch.Tensor,
    kind: str,
    severity: str | float = "strong",
    generator: torch.Generator | None = None,
    *,
    foreground: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inject an artifact into a batch of images and return its ground-truth mask.

    Args:
        images: ``[B, 1, H, W]`` float in [0, 1]; never modified.
        kind: A registered kind name (see :func:`list_artifacts`).
        severity: ``"mild"``, ``"strong"`` or a float in (0, 1] (see :data:`SEVERITY_PRESETS`).
        generator: Source of randomness. ``None`` uses a fresh generator seeded 0, so the
            call is deterministic; pass your own generator for varied draws.
        foreground: Optional ``[B, 1, H, W]`` bool head / body mask (dilated by ``scale(H)``
            pixels). ``None`` estimates it with
            :func:`~safegen_guard.artifacts.masks.estimate_foreground`.

    Returns:
        ``(corrupted, mask)``: ``corrupted`` ``[B, 1, H, W]`` float32 in [0, 1] (clamped,
        finite) on the device of ``images``; ``mask`` ``[B, 1, H, W]`` bool, the pixels the
        artifact meaningfully changed (see :mod:`safegen_guard.artifacts.masks`).

    Raises:
        TypeError: ``images``, ``kind``, ``severity``, ``generator`` or ``foreground`` has the
            wrong type.
        ValueError: bad images (shape, dtype, range, NaN), unknown kind, severity outside
            (0, 1] or unknown preset, foreground of the wrong shape or dtype.

    Example:
        >>> x = torch.zeros(2, 1, 32, 32)
        >>> x[:, :, 8:24, 8:24] = 0.5
        >>> corrupted, mask = inject(x, "noise_local", "strong")
        >>> corrupted.shape, mask.dtype, bool(mask.any())
        (torch.Size([2, 1, 32, 32]), torch.bool, True)
    """
    # 1. validate every argument
    check_images(images)
    spec = _check_kind(kind)
    level = resolve_severity(severity)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    elif not isinstance(generator, torch.Generator):
        raise TypeError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}"
        )
    clean = images.detach().to(torch.float32).clone()
    if foreground is None:
        fg = masks.estimate_foreground(clean)
    else:
        fg = _check_foreground(foreground, images)
    # 2. apply the artifact to a private copy, then clamp (data generation: clamping is intended)
    corrupted, support = spec.fn(clean.clone(), level, generator, fg)
    corrupted = torch.nan_to_num(corrupted.float(), nan=0.0).clamp(0.0, 1.0)
    # 3. ground-truth mask: meaningful change inside the support (patch or foreground)
    mask = masks.change_mask(clean, corrupted, fg if support is None else support)
    return corrupted.to(images.device), mask

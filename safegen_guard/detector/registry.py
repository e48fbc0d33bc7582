"""The view registry: every detector view is registered here by name, built-in or user-made.

A view is a :class:`~safegen_guard.detector.views.View` subclass that turns a
:class:`~safegen_guard.detector.views.ScoringContext` into an image statistic ``[B]`` and an
optional pixel map ``[B, 1, H, W]``. Register a factory ``size -> View`` once and name the view
in :class:`~safegen_guard.config.GuardConfig` ``views``::

    from safegen_guard.detector import View, register_view

    class EdgeView(View):
        name = "edges"
        def forward(self, ctx):
            m = ctx.x.diff(dim=-1).abs()
            m = torch.nn.functional.pad(m, (0, 1)) * ctx.foreground
            return m.flatten(1).amax(1), m

    register_view("edges", lambda size: EdgeView(), default=False)
    views = (*default_views("mri"), "edges")
    guard = Guard.fit("mni152", GuardConfig.profile("quick", modality="mri", views=views))

Defaults depend on the modality: the leave-one-family-out protocol (``python -m
benchmarks.loo``, docs/realism.md) chose ``image_density, texture, denoise, noise`` on MRI
and ``patch_density, texture, ring, recon, noise`` on CT; a view that carries no evidence for a
modality only spends its false-reject budget (the ring detector fired on 12 % of real MRI test
slices at 32 px). ``default_views()`` without a modality is the union, for data of unknown
modality.

A user view must be registered (imported) again before a guard that uses it is loaded.
Views are built in registration order, so a guard's columns are the same wherever it loads.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = [
    "MODALITIES",
    "ViewSpec",
    "register_view",
    "list_views",
    "default_views",
    "view_spec",
    "build_views",
]

MODALITIES = ("mri", "ct")
"""Modalities with their own default views (``GuardConfig.modality``)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# the modules holding the built-in views; imported on first use of the registry
_BUILTIN_MODULES = ("safegen_guard.detector.views", "safegen_guard.detector.learned_views")


@dataclass(frozen=True)
class ViewSpec:
    """A registered view.

    Attributes:
        name: Registry name (lowercase identifier; the verdict's reason when it fires).
        factory: ``image_size -> View``.
        default: Part of :func:`default_views` for at least one modality.
        modalities: The modalities whose default view set includes it (empty when not a
            default).
        needs_realism: The view reads the self-supervised realism network
            (:mod:`~safegen_guard.detector.realism`), which the guard then trains.
        summary: One line for listings and docs.
    """

    name: str
    factory: Callable[[int], nn.Module]
    default: bool
    needs_realism: bool
    summary: str
    modalities: tuple[str, ...] = ()


_REGISTRY: dict[str, ViewSpec] = {}
_loaded = False


def register_view(
    name: str,
    factory: Callable[[int], nn.Module],
    *,
    default: bool | str | tuple[str, ...] = False,
    needs_realism: bool = False,
    summary: str = "",
    overwrite: bool = False,
) -> None:
    """Register a view factory under ``name``.

    Args:
        name: Lowercase identifier (``[a-z][a-z0-9_]*``).
        factory: Callable ``image_size -> View``.
        default: Include it in :func:`default_views`: ``True`` for every modality, a modality
            (``"mri"``, ``"ct"``) or a tuple of them for those only, ``False`` for none.
        needs_realism: It reads the realism network (``ctx.realism``).
        summary: One-line description.
        overwrite: Replace an existing registration instead of raising.

    Raises:
        ValueError: bad name, unknown modality, or the name is taken and ``overwrite`` is
            false.
        TypeError: ``factory`` is not callable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"view name must match [a-z][a-z0-9_]*, got {name!r}")
    if not callable(factory):
        raise TypeError(f"`factory` must be callable (image_size -> View), got {type(factory)}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"view {name!r} is already registered (pass overwrite=True to replace)")
    if isinstance(default, bool):
        modalities = MODALITIES if default else ()
    else:
        modalities = (default,) if isinstance(default, str) else tuple(default)
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown or not modalities:
            raise ValueError(
                f"`default` must be a bool, a modality or a tuple of modalities from "
                f"{list(MODALITIES)}, got {default!r}"
            )
    _REGISTRY[name] = ViewSpec(
        name, factory, bool(modalities), bool(needs_realism), summary, tuple(modalities)
    )


def _ensure_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def list_views() -> tuple[str, ...]:
    """Names of every registered view, in registration (column) order."""
    _ensure_builtins()
    return tuple(_REGISTRY)


def default_views(modality: str | None = None) -> tuple[str, ...]:
    """Names of the views a guard uses by default, in column order.

    Args:
        modality: ``"mri"`` or ``"ct"`` for that modality's set (chosen by the
            leave-one-family-out protocol); ``None`` for the union (data of unknown modality).

    Raises:
        ValueError: unknown modality.
    """
    _ensure_builtins()
    if modality is None:
        return tuple(n for n, s in _REGISTRY.items() if s.default)
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(MODALITIES)}")
    return tuple(n for n, s in _REGISTRY.items() if modality in s.modalities)


def view_spec(name: str) -> ViewSpec:
    """The :class:`ViewSpec` of ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered views).
    """
    _ensure_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown view {name!r}; registered views: {list(_REGISTRY)}")
    return _REGISTRY[name]


def build_views(names: tuple[str, ...] | list[str], size: int) -> nn.ModuleDict:
    """Instantiate the named views for ``size x size`` images, in registration order.

    Raises:
        ValueError: a name is not registered.
    """
    _ensure_builtins()
    unknown = sorted(set(names) - set(_REGISTRY))
    if unknown:
        raise ValueError(f"unknown view(s) {unknown}; registered views: {list(_REGISTRY)}")
    return nn.ModuleDict({n: _REGISTRY[n].factory(size) for n in _REGISTRY if n in names})

"""`GuardConfig`: every setting of a guard, as plain JSON-able data, with profiles."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from safegen_guard.detector.registry import MODALITIES, default_views, list_views, view_spec
from safegen_guard.validation import check_choice, check_positive_int, check_probability

PIXEL_FPR_DEFAULTS: dict[str | None, float] = {"mri": 0.1, "ct": 0.05, None: 0.05}
"""Default ``pixel_fpr`` per modality (``None``: unknown). The leave-one-family-out choice of
the mask (``python -m benchmarks.mask_choice``) took 0.1 in every MRI fold at 32 and 64 px
(the MRI default maps localise less sharply) and 0.02-0.05 on CT; docs/realism.md."""

__all__ = ["GuardConfig", "PROFILES", "PIXEL_FPR_DEFAULTS"]

PROFILES = ("tiny", "quick", "full")


@dataclass(frozen=True)
class GuardConfig:
    """Settings of :class:`~safegen_guard.Guard` (saved as JSON next to the weights).

    Use :meth:`profile` for the presets: ``tiny`` (tests, seconds), ``quick`` (2 CPU cores,
    minutes) and ``full`` (GPU; the design's 5-level U-Net at 128 px).

    Attributes:
        image_size: Height = width of the images the guard scores.
        channels: Image channels.
        base_channels: Autoencoder channels at full resolution (doubled per level).
        levels: Autoencoder resolution levels.
        latent_dim: Dense latent size.
        max_steps: Optimiser steps of autoencoder training.
        batch_size: Training batch size.
        learning_rate: Adam learning rate.
        coarse_noise_std: Std of the coarse denoising noise added to training inputs.
        coarse_noise_res: Resolution of that noise before bilinear up-sampling.
        modality: ``"mri"``, ``"ct"`` or ``None`` (unknown). It chooses the default ``views``;
            :meth:`Guard.fit <safegen_guard.Guard.fit>` and ``safegen fit`` take it from a
            named data set when the config leaves it unset and its views to the default
            (:meth:`with_data_modality`).
        views: Registered detector views to use. ``None`` (default) resolves at construction
            to ``default_views(modality)``: the views the leave-one-family-out protocol chose
            for that modality, or their union when it is unknown (see
            :mod:`safegen_guard.detector.registry`).
        realism_steps: Optimiser steps of the realism network's self-supervised training
            (only when a view needs it; see :mod:`safegen_guard.detector.realism`).
        realism_learning_rate: Its Adam learning rate.
        false_reject_rate: Requested share of real images rejected (image level).
        pixel_fpr: Requested share of real foreground pixels in the mask. ``None``
            (default) resolves to the modality's (:data:`PIXEL_FPR_DEFAULTS`: MRI 0.1, CT and
            unknown 0.05), chosen per modality by the mask's Dice on held-out local artifact
            families (``python -m benchmarks.mask_choice``; :mod:`safegen_guard.calibration`,
            step 4); a named data set's modality chooses it like the views.
        calibration_bins: Mondrian bins by foreground fraction (see ``calibration``).
        train_variants: Acquisition draws per training slice (named datasets only).
        calibration_variants: Acquisition draws per calibration slice (named datasets only).
        accelerator: Lightning accelerator for training (``"auto"`` uses a GPU if present).
        score_batch_size: Images per chunk in ``evaluate`` (bounds memory). Small chunks are
            faster on CPU (activations stay in cache; measured at 64 px on 2 cores: 32 ->
            ~220 images/s, 128 -> ~170, 512 -> ~120); ``full`` (GPU) uses 128.
        seed: Seed of training, data draws and calibration splits.
        progress: Show progress bars.
    """

    image_size: int = 64
    channels: int = 1
    base_channels: int = 8
    levels: int = 5
    latent_dim: int = 256
    max_steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    coarse_noise_std: float = 0.2
    coarse_noise_res: int = 16
    modality: str | None = None
    views: tuple[str, ...] | None = None
    realism_steps: int = 1000
    realism_learning_rate: float = 2e-3
    false_reject_rate: float = 0.05
    pixel_fpr: float | None = None
    calibration_bins: int = 3
    train_variants: int = 8
    calibration_variants: int = 32
    accelerator: str = "auto"
    score_batch_size: int = 32
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in (
            "image_size",
            "channels",
            "base_channels",
            "levels",
            "latent_dim",
            "max_steps",
            "batch_size",
            "calibration_bins",
            "coarse_noise_res",
            "train_variants",
            "calibration_variants",
            "score_batch_size",
            "realism_steps",
        ):
            check_positive_int(getattr(self, name), name)
        check_probability(self.false_reject_rate, "false_reject_rate")
        if self.modality is not None:
            check_choice(self.modality, "modality", MODALITIES)
        object.__setattr__(self, "_pixel_fpr_defaulted", self.pixel_fpr is None)
        if self.pixel_fpr is None:
            object.__setattr__(self, "pixel_fpr", PIXEL_FPR_DEFAULTS[self.modality])
        check_probability(self.pixel_fpr, "pixel_fpr")
        # remembered (not a field): whether ``views`` is the modality's default, so that a
        # named data set's modality may still choose them (``with_data_modality``)
        object.__setattr__(self, "_views_defaulted", self.views is None)
        if self.views is None:
            object.__setattr__(self, "views", default_views(self.modality))
        if isinstance(self.views, str) or not self.views:
            raise ValueError(
                f"`views` must name at least one view (a tuple of names), got {self.views!r}"
            )
        for v in self.views:
            check_choice(v, "views", list_views())
        object.__setattr__(self, "views", tuple(self.views))
        if self.needs_realism and self.image_size % 16:
            raise ValueError(
                f"views {[v for v in self.views if view_spec(v).needs_realism]} need an "
                f"image_size divisible by 16, got {self.image_size}"
            )
        if not self.realism_learning_rate > 0:
            raise ValueError(
                f"`realism_learning_rate` must be > 0, got {self.realism_learning_rate!r}"
            )

    @property
    def views_defaulted(self) -> bool:
        """Whether ``views`` was left to ``default_views(modality)`` (not named)."""
        return bool(self.__dict__.get("_views_defaulted", False))

    def replace(self, **changes: Any) -> GuardConfig:
        """A copy with ``changes``; views left to the default stay the default.

        Unlike ``dataclasses.replace`` (which passes the resolved ``views`` on as if named),
        a config whose ``views`` were defaulted re-resolves them for the new ``modality`` and
        can still take a named data set's modality in ``Guard.fit``.

        Example:
            >>> GuardConfig().replace(modality="ct").views
            ('recon', 'noise', 'texture', 'ring', 'patch_density')
        """
        data = {**self.to_dict(), **changes}
        if self.views_defaulted and "views" not in changes:
            data["views"] = None
        if self.__dict__.get("_pixel_fpr_defaulted", False) and "pixel_fpr" not in changes:
            data["pixel_fpr"] = None
        return GuardConfig.from_dict(data)

    def with_data_modality(self, modality: str | None) -> GuardConfig:
        """This config for data of ``modality`` (e.g. a named data set's).

        A config that leaves both ``modality`` and ``views`` unset gets the modality and,
        with it, that modality's default views; any other config is returned unchanged (a
        modality or views the user set are never overridden).

        Example:
            >>> GuardConfig().with_data_modality("mri").views
            ('denoise', 'noise', 'texture', 'image_density')
            >>> GuardConfig(views=("texture",)).with_data_modality("mri").views
            ('texture',)
        """
        if modality is None or self.modality is not None or not self.views_defaulted:
            return self
        return self.replace(modality=modality)

    @property
    def needs_realism(self) -> bool:
        """Whether a configured view reads the realism network (which ``fit`` then trains)."""
        return any(view_spec(v).needs_realism for v in self.views)

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> GuardConfig:
        """Return a preset (``tiny``, ``quick``, ``full``) with optional overrides."""
        check_choice(name, "profile", PROFILES)
        presets: dict[str, dict[str, Any]] = {
            "tiny": dict(
                image_size=32,
                base_channels=8,
                levels=3,
                latent_dim=32,
                max_steps=30,
                batch_size=16,
                train_variants=2,
                calibration_variants=8,
                calibration_bins=1,
                realism_steps=20,
                progress=False,
            ),
            "quick": {},
            "full": dict(
                image_size=128,
                base_channels=32,
                levels=5,
                max_steps=20000,
                batch_size=16,
                learning_rate=1e-4,
                train_variants=16,
                calibration_variants=32,
                score_batch_size=128,
                realism_steps=10000,
                realism_learning_rate=1e-3,
            ),
        }
        # one construction, so that ``views`` resolves with an overridden ``modality``
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-able)."""
        d = asdict(self)
        d["views"] = list(self.views)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GuardConfig field(s) {unknown}")
        d = dict(data)
        if d.get("views") is not None:
            d["views"] = tuple(d["views"])
        return cls(**d)

"""`Guard`: fit on real scans, then turn generated batches into calibrated verdicts."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from safegen_guard import checkpoint
from safegen_guard.calibration import Calibrator, check_groups, foreground_fraction, map_radius
from safegen_guard.config import GuardConfig
from safegen_guard.data.dataset import SliceDataset
from safegen_guard.detector.autoencoder import AutoencoderConfig
from safegen_guard.detector.detector import Detector
from safegen_guard.detector.realism import train_realism_net
from safegen_guard.detector.training import train_autoencoder
from safegen_guard.errors import CheckpointError, NotFittedError
from safegen_guard.explain.protocol import ExplainContext, Explainer
from safegen_guard.memorization.index import MemorizationConfig, MemorizationIndex
from safegen_guard.memorization.verdicts import add_copy_check
from safegen_guard.streaming import explain_stream, score_stream
from safegen_guard.validation import check_images, check_positive_int
from safegen_guard.verdict import Verdict

__all__ = ["Guard"]

log = logging.getLogger(__name__)

RealData = SliceDataset | torch.Tensor | str | Path


class Guard(nn.Module):
    """The object every integration holds: detector + calibration, one ``evaluate`` verb.

    Build one with :meth:`fit` (trains on real images only) or :meth:`load`.

    Example:
        >>> guard = Guard.fit("mni152")  # quick profile, MRI views  # doctest: +SKIP
        >>> verdict = guard.evaluate(images)  # [B, 1, 64, 64] in [0, 1]  # doctest: +SKIP
        >>> verdict.unsafe, verdict.p_value, verdict.mask  # doctest: +SKIP
    """

    def __init__(self, config: GuardConfig, data_fingerprint: str = "") -> None:
        super().__init__()
        self.config = config
        self.data_fingerprint = data_fingerprint
        ae = AutoencoderConfig.from_guard_config(config)
        # initial weights come from ``config.seed``, not from the caller's global RNG state
        # (two fits with one seed in one process used to differ); the caller's state is kept
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.detector = Detector(ae, config.views)
        self.calibrator = Calibrator(
            self.detector.view_names,
            config.false_reject_rate,
            config.pixel_fpr,
            n_bins=config.calibration_bins,
            map_radius=map_radius(config.image_size),
        )
        self.explainer: Explainer | None = None
        self.memorization: MemorizationIndex | None = None
        self.provenance: dict[str, Any] = {}
        """Plain data on how the guard was made (``safegen fit`` records its arguments); saved
        in ``guard.json`` under its hash, never part of a decision or the fingerprint."""
        self._fingerprint = ""
        self.eval()

    def attach_explainer(self, explainer: Explainer | None) -> Guard:
        """Attach a fitted explainer (see :mod:`safegen_guard.explain`); saved with the guard.

        The explainer is an ``nn.Module`` implementing
        :class:`~safegen_guard.explain.protocol.Explainer`; ``evaluate(x, explain=...)``
        calls its ``explain`` with :meth:`explain_context` (never with the guard).

        Raises:
            TypeError: ``explainer`` is not an ``nn.Module`` implementing the protocol.
        """
        if explainer is not None and not (
            isinstance(explainer, nn.Module) and isinstance(explainer, Explainer)
        ):
            raise TypeError(
                "`explainer` must be an nn.Module with config_dict(), from_config() and "
                f"explain() (safegen_guard.explain.protocol.Explainer), got "
                f"{type(explainer).__name__}"
            )
        self.explainer = explainer
        self._fingerprint = ""
        return self

    def attach_memorization(self, index: MemorizationIndex | None) -> Guard:
        """Attach a training-set index (:mod:`safegen_guard.memorization`); saved with the guard.

        Verdicts then report ``memorized``, ``copy_p_value`` and ``nearest_index``; a copy is
        ``unsafe`` unless the index has ``mark_unsafe=False``. The index holds the training
        images: handle the saved guard like the training data.
        """
        if index is not None and index.size != self.config.image_size:
            raise ValueError(
                f"the index holds {index.size} px images, the guard scores "
                f"{self.config.image_size} px images"
            )
        self.memorization = index
        self._fingerprint = ""
        return self

    def fit_memorization(
        self,
        training: SliceDataset | torch.Tensor | str | Path,
        heldout: SliceDataset | torch.Tensor | str | Path | None = None,
        config: MemorizationConfig | None = None,
    ) -> Guard:
        """Index the generator's training images and attach the index.

        See :meth:`MemorizationIndex.fit`: a name or path indexes its ``train`` split and takes
        its ``val`` split as the held-out null; tensors need ``heldout`` (real images the
        generator did not train on).
        """
        index = MemorizationIndex.fit(
            training,
            heldout,
            size=self.config.image_size,
            config=config or MemorizationConfig(seed=self.config.seed),
            accelerator=self.config.accelerator,
            progress=self.config.progress,
        )
        return self.attach_memorization(index)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        real_data: RealData,
        config: GuardConfig | None = None,
        *,
        calibration_data: SliceDataset | torch.Tensor | None = None,
        calibration_groups: torch.Tensor | None = None,
    ) -> Guard:
        """Train the detector on real images and calibrate it on held-out real images.

        Args:
            real_data: A dataset name (``"mni152"``, ``"ct_phantom"``) or path, whose
                ``train`` split trains and ``val`` split calibrates; or a ``SliceDataset`` /
                ``[N, C, H, W]`` tensor of real training images in ``[0, 1]``.
            config: Settings; default ``GuardConfig.profile("quick")``. A named data set's
                modality (and so its default views) fills a config that leaves ``modality``
                and ``views`` unset (:meth:`GuardConfig.with_data_modality`).
            calibration_data: Real held-out images for calibration. Required when
                ``real_data`` is a tensor or dataset (never taken from the training images).
            calibration_groups: ``[M]`` integer label per calibration image of the valid
                preparation that produced it (scanner, site, resampling pipeline, ...): the
                false-reject rate then holds within every group, not only on their mixture
                (:class:`~safegen_guard.calibration.Calibrator`, step 3a). Default: a named
                data set's augmented and plain draws are two groups; tensors are one group.

        Returns:
            A fitted guard in eval mode.
        """
        from safegen_guard.data import dataset_modality
        from safegen_guard.detector.registry import default_views
        from safegen_guard.guard_fit import load_fit_data

        modality = dataset_modality(real_data)
        given = config
        config = GuardConfig.profile("quick") if config is None else config
        config = config.with_data_modality(modality)
        if given is not None and config is not given:
            log.info("%r is %s data: using its default views %s", real_data, modality, config.views)
        elif (
            modality is not None and config.modality is None and config.views == default_views(None)
        ):
            # the union named explicitly (or a ``dataclasses.replace`` copy, which cannot know
            # its views were defaulted; ``GuardConfig.replace`` keeps track)
            warnings.warn(
                f"{real_data!r} is {modality.upper()} data but the config has modality=None and "
                f"the views chosen for unknown data {list(config.views)}; pass "
                f"GuardConfig(..., modality={modality!r}) for the views chosen for "
                f"{modality.upper()}",
                UserWarning,
                stacklevel=2,
            )
        train, cal, groups, fingerprint = load_fit_data(
            real_data, calibration_data, config, calibration_groups
        )
        guard = cls(config, data_fingerprint=fingerprint)
        log.info("training the autoencoder on %d real images", len(train))
        train_autoencoder(
            guard.detector.autoencoder,
            train,
            max_steps=config.max_steps,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            noise_std=config.coarse_noise_std,
            noise_res=config.coarse_noise_res,
            seed=config.seed,
            accelerator=config.accelerator,
            progress=config.progress,
        )
        if guard.detector.realism is not None:
            log.info("training the realism network on %d real images", len(train))
            train_realism_net(
                guard.detector.realism,
                train,
                steps=config.realism_steps,
                batch_size=config.batch_size,
                learning_rate=config.realism_learning_rate,
                seed=config.seed + 1,
                accelerator=config.accelerator,
                progress=config.progress,
            )
        guard.calibrate(cal, training=train, groups=groups)
        return guard

    @torch.no_grad()
    def calibrate(
        self,
        calibration: torch.Tensor,
        training: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> Guard:
        """Calibrate on real held-out images (never the training images).

        ``calibration`` is split deterministically in two halves (even/odd positions). Half A
        fits the views' reference statistics and each view's reference tail; half B,
        untouched until then, sets the conformal p-values and the pixel threshold. The
        autoencoder's residuals are smaller on its own training images, so references fitted
        there would be biased. Views that keep a memory bank of real patches
        (``View.fit_on_training``) fit it on ``training``: the bank only has to cover real
        anatomy, and calibration (half A and B) sees its bias on held-out images.

        Args:
            calibration: ``[M, C, S, S]`` real images in ``[0, 1]``, not used for training.
            training: ``[N, C, S, S]`` real training images for memory banks (default: half A).
            groups: ``[M]`` integer preparation group per calibration image (default one
                group); the false-reject rate holds within each group.

        Raises:
            ValueError: images of the wrong shape, groups of the wrong length, or too few
                half-B images of some group for the requested false-reject rate.
            TypeError: non-integer groups.
        """
        self.eval()
        check_images(
            calibration,
            name="calibration",
            channels=self.config.channels,
            size=self.config.image_size,
        )
        groups = check_groups(groups, len(calibration), "groups")
        half_a, half_b = calibration[0::2], calibration[1::2]
        self.detector.fit_views(half_a, training)
        stats_a, _, fg_a = self._score_chunks(half_a)
        stats_b, maps_b, fg_b = self._score_chunks(half_b)
        cond_a, cond_b = foreground_fraction(fg_a), foreground_fraction(fg_b)
        self.calibrator.fit_images(stats_a, stats_b, cond_a, cond_b, groups[1::2])
        self.calibrator.fit_pixels(
            maps_b, fg_b, seed=self.config.seed, in_mask=self.detector.maps_in_mask
        )
        self._fingerprint = ""
        return self

    def for_preparation(self, groups: int | list[int] | tuple[int, ...] | None) -> Guard:
        """A copy of this guard that decides with these preparation groups' calibration only.

        A guard calibrated with preparation groups (``Guard.fit`` on a named data set: its
        augmented and plain acquisition draws, labels ``safegen_guard.guard_fit.AUGMENTED`` and
        ``PLAIN``; or the caller's ``calibration_groups``) rejects real images of *any* group
        at most at the requested rate, and images of a narrower group (plain draws) less
        often than that. When the judged images follow one known preparation, e.g. a
        generator trained on plain draws (``generators.train``'s default), the copy from
        ``guard.for_preparation(PLAIN)`` rejects real images exchangeable with that group's
        calibration images at the requested rate and is correspondingly more sensitive. It
        loses the margin the other groups gave: real images of new subjects or other slice
        positions can be rejected more often (measured 0.03-0.07 on plain CT test draws at
        32/64 px with the current augmentation, up to 0.12 with the earlier, narrower one;
        docs/realism.md). Views, weights and maps are shared by value; only the decision
        (p-value, threshold, severity) changes, and so does the fingerprint. The choice is
        saved with the guard.

        Args:
            groups: One group label, several, or ``None`` for every group (the default).

        Returns:
            A new :class:`Guard`; this one is unchanged.

        Raises:
            NotFittedError: the guard is not fitted.
            TypeError: a label that is not an int.
            ValueError: no label, a repeated one, or one without calibration images.
        """
        import copy

        self.calibrator._require_fitted()
        new = copy.deepcopy(self)
        new.calibrator.select_groups(groups)
        new._fingerprint = ""
        return new

    # --------------------------------------------------------------- evaluation
    def evaluate(
        self,
        x: torch.Tensor,
        *,
        explain: bool | tuple[str, ...] = False,
        batch_size: int | None = None,
    ) -> Verdict:
        """Score a batch of generated images.

        Args:
            x: ``[B, C, H, W]`` float images in ``[0, 1]`` with ``C`` and ``H = W`` as the
                guard was fitted. NaN/Inf images are verdicts (unsafe, ``"non_finite"``).
            explain: ``False`` (default, fastest), ``True`` for every explanation the attached
                explainer offers, or a tuple of names such as ``("gradcam",)``. Needs an
                explainer (:meth:`attach_explainer`).
            batch_size: Images per internal chunk (default ``config.score_batch_size``).

        Returns:
            A :class:`Verdict` on the CPU.

        Raises:
            TypeError: ``x`` is not a tensor.
            InputValidationError: wrong rank, dtype, channels, size, range or empty batch.
        """
        check_images(
            x, channels=self.config.channels, size=self.config.image_size, allow_non_finite=True
        )
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size")
        size = batch_size or self.config.score_batch_size
        x = x.detach()  # each chunk is copied to CPU float32 (no whole-batch copy)
        finite = torch.cat([torch.isfinite(c).flatten(1).all(1).cpu() for c in x.split(size)])
        stats, amap, cond = score_stream(
            self.detector, self.calibrator, x, finite, size, combine=True
        )
        verdict = self._verdict(stats, amap, cond, finite)
        if self.memorization is not None:
            verdict = add_copy_check(self.memorization, x, verdict, finite)
        if explain:
            verdict = self._explain(x, finite, verdict, explain, size)
        return verdict

    @torch.no_grad()
    def view_statistics(
        self, x: torch.Tensor, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw per-view statistics and the calibration condition, for analysis.

        ``calibrator.decide(stats, condition, columns)`` turns them into the decisions a
        guard with only those views would make (the leave-one-family-out protocol uses this).

        Args:
            x: ``[B, C, H, W]`` finite images in ``[0, 1]``.
            batch_size: Images per chunk (default ``config.score_batch_size``).

        Returns:
            ``stats`` ``[B, V]`` (columns: ``detector.view_names``) and ``condition`` ``[B]``.
        """
        check_images(x, channels=self.config.channels, size=self.config.image_size)
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size")
        x = x.detach()
        finite = torch.ones(len(x), dtype=torch.bool)
        size = batch_size or self.config.score_batch_size
        stats, _, cond = score_stream(self.detector, self.calibrator, x, finite, size)
        return stats, cond

    def explain_context(self) -> ExplainContext:
        """What this guard hands its explainer: autoencoder, statistic, anomaly-map functions."""
        return ExplainContext(
            autoencoder=self.detector.autoencoder,
            statistic=self.fused_statistic,
            anomaly_map=lambda x: self.evaluate(x).anomaly_map,
            image_size=self.config.image_size,
            channels=self.config.channels,
        )

    def fused_statistic(self, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """The fused statistic ``T(x) = max_v z_v`` ``[B]`` of finite images ``x``.

        Continuous, unlike the severity (its conformal transform); the regression target of
        the explainer's distilled predictor and the score of insertion/deletion curves.
        """
        x = x.detach()
        finite = torch.ones(len(x), dtype=torch.bool)
        stats, _, cond = score_stream(self.detector, self.calibrator, x, finite, batch_size)
        return self.calibrator.decide(stats, cond)["fused"]

    def _explain(
        self,
        x: torch.Tensor,
        finite: torch.Tensor,
        verdict: Verdict,
        explain: bool | tuple,
        batch_size: int,
    ) -> Verdict:
        """Add the explainer's maps (computed chunk by chunk, see :mod:`.streaming`)."""
        if self.explainer is None:
            raise NotFittedError(
                "explanations need a fitted explainer: see safegen_guard.explain "
                "(fit one and call guard.attach_explainer), got a guard without one"
            )
        methods = None if explain is True else tuple(explain)
        extra = explain_stream(
            self.explainer, self.explain_context(), x, finite, verdict.anomaly_map, methods,
            batch_size,
        )  # fmt: skip
        return dataclasses.replace(verdict, **extra)

    def _score_chunks(
        self, x: torch.Tensor, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = batch_size or self.config.score_batch_size
        outs = [self.detector.score(chunk) for chunk in x.split(size)]
        return tuple(torch.cat(parts) for parts in zip(*outs))  # type: ignore[return-value]

    def _verdict(
        self, stats: torch.Tensor, amap: torch.Tensor, cond: torch.Tensor, finite: torch.Tensor
    ) -> Verdict:
        """Calibrated decisions from ``stats`` ``[B, V]`` into a :class:`Verdict`.

        ``amap`` (``[B, 1, H, W]`` combined map) becomes the verdict's: the maps of
        non-finite images are set to 1 in place, without a copy.
        """
        d = self.calibrator.decide(stats, cond)
        names = self.detector.view_names
        unsafe = d["unsafe"] | ~finite
        p_value = torch.where(finite, d["p_value"], torch.zeros_like(d["p_value"]))
        score = torch.where(finite, d["severity"], torch.full_like(p_value, float("inf")))
        amap.masked_fill_(~finite[:, None, None, None], 1.0)
        reasons = []
        for i in range(len(finite)):
            if not bool(finite[i]):
                reasons.append(("non_finite",))
            else:
                reasons.append(tuple(n for n, f in zip(names, d["fired"][i]) if bool(f)))
        return Verdict(
            score=score,
            p_value=p_value,
            unsafe=unsafe,
            anomaly_map=amap,
            mask=amap > 0.5,
            reasons=reasons,
            view_scores={n: stats[:, i] for i, n in enumerate(names)},
            view_p_values={n: d["view_p"][:, i] for i, n in enumerate(names)},
            threshold=self.calibrator.alpha,
            guard_fingerprint=self.fingerprint,
        )

    # -------------------------------------------------------------- persistence
    @property
    def fingerprint(self) -> str:
        """16-hex SHA-256 of everything that decides a verdict (in every verdict).

        Covers the configuration (thresholds, views, sizes), every tensor (weights, view
        references, calibration), the explainer's class and configuration and the
        memorization index's configuration.
        """
        if not self._fingerprint:
            # ``modality`` only chose the default views, which the config records explicitly;
            # leaving it out keeps the fingerprints of guards saved before it existed
            decisive = {k: v for k, v in self.config.to_dict().items() if k != "modality"}
            h = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode())
            h.update(json.dumps(self._explainer_spec(), sort_keys=True, default=str).encode())
            mem = self.memorization.config_dict() if self.memorization is not None else None
            h.update(json.dumps(mem, sort_keys=True, default=str).encode())
            # buffers at the value older formats imply: left out, so those guards keep theirs
            legacy = {f"calibrator.{k}" for k in self.calibrator.legacy_defaults()}
            for k, v in sorted(self.state_dict().items()):
                if k in legacy:
                    continue
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def _explainer_spec(self) -> dict | None:
        if self.explainer is None:
            return None
        cls_ = type(self.explainer)
        return {
            "class": f"{cls_.__module__}.{cls_.__qualname__}",
            "config": self.explainer.config_dict(),
        }

    def save(self, directory: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
        """Save to ``directory`` (``guard.json`` + hash-named weights), durably.

        An interrupted save (crash, full disk, ``kill -9``) leaves the folder loadable as the
        guard saved there before, or as this one; see :mod:`safegen_guard.checkpoint`.

        Args:
            directory: The guard folder (created if needed).
            provenance: JSON-able notes on how the guard was made (replaces
                :attr:`provenance`); kept in ``guard.json``, so they are verified on load like
                everything else in the folder.
        """
        if provenance is not None:
            if not isinstance(provenance, dict):
                raise TypeError(f"`provenance` must be a dict, got {type(provenance).__name__}")
            self.provenance = dict(provenance)
        meta = {
            "config": self.config.to_dict(),
            "views": self.detector.view_names,
            "data_fingerprint": self.data_fingerprint,
            "guard_fingerprint": self.fingerprint,
        }
        if self.explainer is not None:
            meta["explainer"] = self._explainer_spec()
        if self.memorization is not None:
            meta["memorization"] = self.memorization.config_dict()
        if self.provenance:
            meta["provenance"] = self.provenance
        checkpoint.write_checkpoint(directory, dict(self.state_dict()), meta)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> Guard:
        """Load a guard saved by :meth:`save` (no pickle; every byte and key verified).

        Raises:
            CheckpointError: missing, tampered, corrupted or incompatible files, an explainer
                class that is not one of SAFEGEN's, a fingerprint that is missing or differs.
        """
        tensors, meta = checkpoint.read_checkpoint(directory)
        if not isinstance(meta.get("guard_fingerprint"), str):
            raise CheckpointError(f"{directory}: guard.json records no guard_fingerprint")
        try:
            config = GuardConfig.from_dict(meta["config"])
            guard = cls(config, data_fingerprint=str(meta.get("data_fingerprint", "")))
            if meta.get("explainer") is not None:
                guard.attach_explainer(_build_explainer(meta["explainer"]))
            if "memorization" in meta:
                guard.attach_memorization(MemorizationIndex.from_config(meta["memorization"]))
            provenance = meta.get("provenance", {})
            if not isinstance(provenance, dict):
                raise TypeError(f"provenance must be a JSON object, got {provenance!r}")
            guard.provenance = provenance
            guard.load_state_dict(tensors, strict=True)
            guard.detector.channels_last()
        except CheckpointError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as err:
            msg = f"{directory} does not match this SAFEGEN version: {err}"
            raise CheckpointError(msg) from err
        if meta["guard_fingerprint"] != guard.fingerprint:
            raise CheckpointError(
                f"{directory}: fingerprint {guard.fingerprint} differs from the recorded "
                f"{meta['guard_fingerprint']}; refusing to load"
            )
        return guard.eval()


EXPLAINER_CLASSES = ("safegen_guard.explain.explainer.GuardExplainer",)
"""The explainer classes :meth:`Guard.load` may build (exact ``module.QualName``)."""


def _build_explainer(spec: object) -> Explainer:
    """Rebuild an explainer from its saved ``{"class", "config"}`` (allow-listed classes only)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise CheckpointError(
            f"explainer spec must be {{'class', 'config': {{...}}}}, got {spec!r}"
        )
    name = spec.get("class")
    if name not in EXPLAINER_CLASSES:
        raise CheckpointError(
            f"refusing to build explainer class {name!r}; allowed: {list(EXPLAINER_CLASSES)}"
        )
    module_name, _, cls_name = name.rpartition(".")
    return getattr(importlib.import_module(module_name), cls_name).from_config(spec["config"])

"""`GuardExplainer`: Grad-CAM + SHAP + combined heatmap, attached to a `Guard`.

Fit it with :func:`fit_explainer` and attach it with
``guard.attach_explainer(explainer)``; ``guard.evaluate(x, explain=True)`` then fills
``verdict.gradcam``, ``verdict.shap``, ``verdict.heatmap`` and ``verdict.heatmap_mask``
(``heatmap > tau``); ``verdict.mask`` keeps its meaning (``anomaly_map > 0.5``). It implements
:class:`~safegen_guard.explain.protocol.Explainer`: the guard hands it an
:class:`~safegen_guard.explain.protocol.ExplainContext` (autoencoder, statistic and
anomaly-map functions), never itself. Every fitted quantity (predictor weights, SHAP
background, calibrated map scales, ``alpha``, ``tau``) is a parameter or buffer, so
``guard.save``/``Guard.load`` keep it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from safegen_guard.detector import ops
from safegen_guard.explain.combine import calibrated_unit, combine_maps, fit_combination
from safegen_guard.explain.distill import ScorePredictor, distil_predictor
from safegen_guard.explain.gradcam import GRADCAM_LAYERS, GRADCAM_TARGETS, AnomalyGradCam
from safegen_guard.explain.protocol import EXPLANATIONS, ExplainContext
from safegen_guard.explain.shap_maps import SHAP_METHODS, ShapMap
from safegen_guard.seeds import (
    EXPLAINER_DISTIL,
    EXPLAINER_REPORT,
    EXPLAINER_SELECT,
    INJECT_MIX,
    derive_seed,
)

__all__ = [
    "GuardExplainer",
    "fit_explainer",
    "assign_kinds",
    "inject_mix",
    "EXPLANATIONS",
    "COMPONENTS",
]

COMPONENTS = ("anomaly_map", "gradcam", "shap")
"""Order of the heatmap components and of ``alpha``."""


class GuardExplainer(nn.Module):
    """Explanations of a guard's verdicts (see the module docstring).

    Args:
        image_size: Image height = width.
        channels: Image channels.
        width: Width of the distilled :class:`ScorePredictor`.
        n_background: Number of real background images for SHAP.
        gradcam_layer, gradcam_target, gradcam_sign, top_frac: See :class:`AnomalyGradCam`.
        shap_method: ``"deep"`` or ``"gradient"`` (see :class:`ShapMap`).
        shap_sigma: Gaussian smoothing (pixels) of ``|SHAP|`` before calibration.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 1,
        width: int = 16,
        n_background: int = 16,
        gradcam_layer: str = "head_out",
        gradcam_target: str = "topk",
        gradcam_sign: str = "relu",
        top_frac: float = 0.01,
        shap_method: str = "deep",
        shap_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        if n_background < 1:
            raise ValueError(f"`n_background` must be a positive int, got {n_background}")
        self._config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        _check_choice(gradcam_layer, "gradcam_layer", GRADCAM_LAYERS)
        _check_choice(gradcam_target, "gradcam_target", GRADCAM_TARGETS)
        _check_choice(gradcam_sign, "gradcam_sign", ("relu", "abs"))
        _check_choice(shap_method, "shap_method", SHAP_METHODS)
        if not 0.0 < top_frac <= 1.0:
            raise ValueError(f"`top_frac` must be in (0, 1], got {top_frac}")
        self.predictor = ScorePredictor(image_size, channels, width)
        self.register_buffer(
            "background", torch.zeros(n_background, channels, image_size, image_size)
        )
        self.register_buffer("map_scale", torch.ones(2))  # gradcam, shap (real 99.5th pct)
        self.register_buffer("alpha", torch.tensor([1.0, 0.0, 0.0]))
        self.register_buffer("tau", torch.tensor(0.5))
        self.register_buffer("target_center", torch.zeros(()))
        self.register_buffer("target_scale", torch.ones(()))

    def config_dict(self) -> dict[str, Any]:
        """Plain JSON-able constructor arguments (saved by ``Guard.save``)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GuardExplainer:
        """Rebuild an unfitted explainer from :meth:`config_dict` (weights come after)."""
        return cls(**config)

    # ------------------------------------------------------------------ components
    def gradcam_raw(self, context: ExplainContext, x: torch.Tensor) -> torch.Tensor:
        """Foreground-masked Grad-CAM ``[B, 1, H, W]`` (>= 0, uncalibrated)."""
        c = self._config
        cam = AnomalyGradCam(
            context.autoencoder,
            c["gradcam_layer"],
            c["gradcam_target"],
            c["gradcam_sign"],
            c["top_frac"],
        ).attribute(x)
        return cam * _foreground(context, x)

    def shap_raw(self, context: ExplainContext, x: torch.Tensor) -> torch.Tensor:
        """Foreground-masked smoothed ``|SHAP|`` of the predictor ``[B, 1, H, W]`` (>= 0)."""
        phi = ShapMap(self.predictor, self.background, self._config["shap_method"]).attribute(x)
        phi = ops.gaussian_blur(phi.abs().sum(1, keepdim=True), self._config["shap_sigma"])
        return phi * _foreground(context, x)

    def predict_score(self, x: torch.Tensor) -> torch.Tensor:
        """The distilled predictor's estimate of the detector's fused statistic ``[B]``."""
        with torch.inference_mode(False), torch.no_grad():
            y = self.predictor(x.detach().clone())[:, 0]
        return torch.sinh(y * self.target_scale + self.target_center)

    def components(
        self,
        context: ExplainContext,
        x: torch.Tensor,
        anomaly_map: torch.Tensor,
        names: tuple[str, ...],
    ) -> dict[str, torch.Tensor]:
        """Calibrated component maps in ``[0, 1)`` for ``names`` among :data:`COMPONENTS`."""
        out = {}
        if "anomaly_map" in names:
            out["anomaly_map"] = anomaly_map
        if "gradcam" in names:
            out["gradcam"] = calibrated_unit(self.gradcam_raw(context, x), self.map_scale[0])
        if "shap" in names:
            out["shap"] = calibrated_unit(self.shap_raw(context, x), self.map_scale[1])
        return out

    # ----------------------------------------------------------------- the verb
    def explain(
        self,
        context: ExplainContext,
        x: torch.Tensor,
        anomaly_map: torch.Tensor,
        methods: tuple[str, ...] | None,
    ) -> dict[str, torch.Tensor]:
        """Explanations for ``x`` ``[B, C, H, W]`` (called by ``Guard.evaluate``).

        Args:
            context: What the guard offers (its autoencoder; see :class:`ExplainContext`).
            x: Images (finite; the guard zeroes non-finite ones).
            anomaly_map: ``[B, 1, H, W]`` the verdict's anomaly map (the first component).
            methods: Names among :data:`EXPLANATIONS`; ``None`` for all.

        Returns:
            dict with the requested keys: ``gradcam``/``shap``/``heatmap`` ``[B, 1, H, W]``
            float in ``[0, 1]``, ``heatmap_mask`` ``[B, 1, H, W]`` bool (``heatmap > tau``).

        Raises:
            ValueError: a name outside :data:`EXPLANATIONS` (``"mask"`` is the verdict's own
                ``anomaly_map > 0.5``; the heatmap's mask is ``"heatmap_mask"``).
        """
        methods = EXPLANATIONS if methods is None else tuple(methods)
        unknown = sorted(set(methods) - set(EXPLANATIONS))
        if unknown or not methods:
            raise ValueError(f"explanations must be among {EXPLANATIONS}, got {methods}")
        combined = bool({"heatmap", "heatmap_mask"} & set(methods))
        names = tuple(
            n
            for i, n in enumerate(COMPONENTS)
            if n in methods or (combined and float(self.alpha[i]) > 0)
        )
        comp = self.components(context, x, anomaly_map, names)
        out = {k: comp[k] for k in ("gradcam", "shap") if k in methods}
        if combined:
            stack = torch.cat([comp.get(n, torch.zeros_like(anomaly_map)) for n in COMPONENTS], 1)
            heat = combine_maps(stack, self.alpha)
            if "heatmap" in methods:
                out["heatmap"] = heat
            if "heatmap_mask" in methods:
                out["heatmap_mask"] = heat > self.tau
        return out


def _foreground(context: ExplainContext, x: torch.Tensor) -> torch.Tensor:
    """Foreground of the bottleneck reconstruction (as the detector's views use) -> bool."""
    with torch.inference_mode(False), torch.no_grad():
        recon = context.autoencoder(x.detach().clone(), use_skips=False)
    return ops.estimate_foreground(recon)


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")


# --------------------------------------------------------------------------- fitting
def assign_kinds(n: int, kinds: list[str], seed: int) -> torch.Tensor:
    """Give each of ``n`` images one of ``kinds`` by rendezvous hashing on the kinds' names.

    Each kind draws a priority per image from a generator seeded by ``seed`` and its name;
    image ``i`` goes to the kind with the highest priority. The result does not depend on the
    order of ``kinds``, and adding a kind only moves the images the new kind wins.

    Returns:
        ``[n]`` long, the index into ``kinds`` of each image's kind.

    Raises:
        ValueError: ``kinds`` is empty or repeats a name.
    """
    if not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(f"`kinds` must be distinct artifact kind names, got {list(kinds)}")
    seeds = [derive_seed(seed, INJECT_MIX, "assign", k) for k in kinds]
    priority = [torch.rand(n, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(priority).argmax(0)


def inject_mix(
    images: torch.Tensor, kinds: list[str], seed: int, severity: tuple[float, float] = (0.3, 1.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt every image with one of ``kinds``, chosen and drawn by the kinds' names.

    Images are split by :func:`assign_kinds`; each kind's severity (uniform in ``severity``)
    and injection come from its own generator, seeded by ``seed`` and its name
    (:func:`~safegen_guard.seeds.derive_seed`), never by its position in ``kinds``.

    Args:
        images: ``[N, C, H, W]`` real images in ``[0, 1]``.
        kinds: distinct registered artifact kind names.
        seed: base seed.
        severity: ``(low, high)`` range of the per-kind severity.

    Returns:
        ``(corrupted, gt)`` ``[N, C, H, W]`` (same order as ``images``) and bool masks.
    """
    from safegen_guard.artifacts import inject

    owner = assign_kinds(images.shape[0], kinds, seed)
    out, gt = images.clone(), torch.zeros_like(images, dtype=torch.bool)
    for j, kind in enumerate(kinds):
        g = torch.Generator().manual_seed(derive_seed(seed, INJECT_MIX, kind))
        idx = (owner == j).nonzero().flatten()
        sev = float(torch.empty(()).uniform_(*severity, generator=g))
        if len(idx):
            out[idx], gt[idx] = inject(images[idx], kind, sev, g)
    return out, gt


def fit_explainer(
    guard: Any,
    real_train: torch.Tensor,
    real_val: torch.Tensor,
    *,
    seed: int = 0,
    steps: int = 1500,
    progress: bool = True,
    max_val: int = 128,
    **config: Any,
) -> GuardExplainer:
    """Distil the score predictor, calibrate map scales and choose ``alpha``/``tau``.

    Only real images are used: ``real_train`` (plus artifact-injected copies, stream
    ``EXPLAINER_DISTIL``) trains the predictor; ``real_val`` (even positions) gives the SHAP
    background and the real-pixel scales of Grad-CAM/SHAP; ``real_val`` (odd positions) with
    *local* artifacts injected (stream ``EXPLAINER_SELECT``; the registry's kinds, never the
    test cells of ``TEST_SUITE_SEED``) selects ``alpha``/``tau`` by mean Dice. Streams are
    named in :mod:`safegen_guard.seeds`. The caller attaches the result.

    Args:
        guard: A fitted guard (only its :meth:`~safegen_guard.guard.Guard.explain_context` is
            used), or an :class:`ExplainContext`.
        real_train: ``[N, C, H, W]`` real training images in ``[0, 1]``.
        real_val: ``[M, C, H, W]`` real validation images (disjoint from test).
        seed: Seed of every random draw.
        steps: Distillation steps.
        progress: Print progress.
        max_val: At most this many images from each half of ``real_val``.
        **config: :class:`GuardExplainer` arguments.

    Returns:
        A fitted explainer; ``explainer.fit_report`` holds validation figures.
    """
    from safegen_guard.artifacts import ARTIFACTS, list_artifacts

    ctx = guard if isinstance(guard, ExplainContext) else guard.explain_context()
    size, ch = ctx.image_size, ctx.channels
    with torch.random.fork_rng(devices=[]):  # initial weights from ``seed``, not global state
        torch.manual_seed(seed)
        expl = GuardExplainer(size, ch, **config)
    # 1. distil f on real + artifact-injected real training images
    corrupted, _ = inject_mix(real_train, list_artifacts(), derive_seed(seed, EXPLAINER_DISTIL))
    x_fit = torch.cat([real_train, corrupted])
    y = torch.asinh(ctx.statistic(x_fit))
    expl.target_center.fill_(float(y.mean()))
    expl.target_scale.fill_(float(y.std().clamp_min(1e-6)))
    losses = distil_predictor(
        expl.predictor,
        x_fit,
        (y - expl.target_center) / expl.target_scale,
        steps=steps,
        seed=seed,
        progress=progress,
    )
    # 2. SHAP background and real-pixel scales from real validation images (half A)
    g = torch.Generator().manual_seed(seed)
    half_a, half_b = real_val[0::2][:max_val], real_val[1::2][:max_val]
    expl.background.copy_(half_a[torch.randperm(len(half_a), generator=g)[: len(expl.background)]])
    fg = _foreground(ctx, half_a)
    for i, raw in enumerate((expl.gradcam_raw(ctx, half_a), expl.shap_raw(ctx, half_a))):
        expl.map_scale[i] = torch.quantile(raw[fg], 0.995).clamp_min(1e-8)
    # 3. alpha / tau on local artifacts injected into validation images (half B)
    local = [k for k in list_artifacts() if ARTIFACTS[k].local]
    x_val, gt_val = inject_mix(
        half_b.repeat(2, 1, 1, 1), local, derive_seed(seed, EXPLAINER_SELECT)
    )
    comp = expl.components(ctx, x_val, ctx.anomaly_map(x_val), COMPONENTS)
    alpha, tau, dice = fit_combination(torch.cat([comp[n] for n in COMPONENTS], 1), gt_val)
    expl.alpha.copy_(alpha)
    expl.tau.fill_(tau)
    expl.fit_report = _fit_report(ctx, expl, half_b, local, seed, losses, dice)
    return expl


def _fit_report(ctx, expl, held_out, kinds, seed, losses, dice) -> dict[str, Any]:  # noqa: ANN001
    """Spearman/Pearson of ``f`` vs the detector on held-out validation images (+ artifacts)."""
    from scipy.stats import pearsonr, spearmanr

    from safegen_guard.artifacts import list_artifacts

    corrupted, _ = inject_mix(held_out, list_artifacts(), derive_seed(seed, EXPLAINER_REPORT))
    x = torch.cat([held_out, corrupted])
    t, p = ctx.statistic(x).numpy(), expl.predict_score(x).numpy()
    return {
        "spearman_f_vs_detector": float(spearmanr(t, p).statistic),
        "pearson_f_vs_detector": float(pearsonr(t, p).statistic),
        "n_held_out": int(len(x)),
        "final_distil_mse": float(sum(losses[-50:]) / len(losses[-50:])),
        "alpha": expl.alpha.tolist(),
        "tau": float(expl.tau),
        "val_dice": dice,
        "val_kinds": kinds,
    }

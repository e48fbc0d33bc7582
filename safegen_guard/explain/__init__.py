"""Explanations of guard verdicts: Grad-CAM, SHAP, a combined heatmap and its mask.

The interface is :class:`Explainer` (a ``typing.Protocol``): a guard hands its explainer an
:class:`ExplainContext`, never itself.

Example:
    >>> from safegen_guard.explain import fit_explainer  # doctest: +SKIP
    >>> guard.attach_explainer(fit_explainer(guard, train_images, val_images))  # doctest: +SKIP
    >>> v = guard.evaluate(x, explain=True)  # doctest: +SKIP
"""

from __future__ import annotations

from safegen_guard.explain.combine import calibrated_unit, combine_maps, fit_combination
from safegen_guard.explain.distill import ScorePredictor, distil_predictor
from safegen_guard.explain.explainer import EXPLANATIONS, GuardExplainer, fit_explainer
from safegen_guard.explain.gradcam import AnomalyGradCam, GlobalAnomalyScore
from safegen_guard.explain.protocol import ExplainContext, Explainer
from safegen_guard.explain.shap_maps import ShapMap

__all__ = [
    "AnomalyGradCam",
    "EXPLANATIONS",
    "ExplainContext",
    "Explainer",
    "GlobalAnomalyScore",
    "GuardExplainer",
    "ScorePredictor",
    "ShapMap",
    "calibrated_unit",
    "combine_maps",
    "distil_predictor",
    "fit_combination",
    "fit_explainer",
]

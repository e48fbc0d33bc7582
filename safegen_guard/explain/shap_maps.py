"""Shapley attributions of the distilled score predictor with the ``shap`` library.

``shap`` takes ~2.5 s to import, so it is imported inside :meth:`ShapMap.attribute` only.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

__all__ = ["ShapMap", "SHAP_METHODS"]

SHAP_METHODS = ("deep", "gradient")


class ShapMap:
    """Per-pixel SHAP values of a predictor ``f: [B, C, H, W] -> [B, 1]``.

    ``"deep"`` uses ``shap.DeepExplainer`` (DeepLIFT-style Shapley approximation, additive:
    ``sum(phi) = f(x) - E[f(background)]``); ``"gradient"`` uses ``shap.GradientExplainer``
    (expected gradients, additive only in expectation).

    Args:
        predictor: The score predictor (copied, because DeepExplainer leaves hooks on it).
        background: ``[N, C, H, W]`` real images, the reference distribution.
        method: One of :data:`SHAP_METHODS`.
        nsamples: Samples per image for ``"gradient"``.
    """

    def __init__(
        self,
        predictor: nn.Module,
        background: torch.Tensor,
        method: str = "deep",
        nsamples: int = 32,
    ) -> None:
        if method not in SHAP_METHODS:
            raise ValueError(f"`method` must be one of {SHAP_METHODS}, got {method!r}")
        if background.ndim != 4 or background.shape[0] < 1:
            raise ValueError(
                f"`background` must be [N, C, H, W] with N >= 1, got {tuple(background.shape)}"
            )
        with torch.inference_mode(False):  # copies made here must not be inference tensors
            self.predictor = copy.deepcopy(predictor).eval()
            self.background = background.detach().clone()
        self.method, self.nsamples = method, nsamples

    def attribute(self, inputs: torch.Tensor, check_additivity: bool = True) -> torch.Tensor:
        """Signed SHAP values ``[B, C, H, W]`` (same shape as ``inputs``).

        Works under ``torch.no_grad()`` / ``torch.inference_mode()`` (grad re-enabled locally).
        """
        import shap

        with torch.inference_mode(False), torch.enable_grad():
            x = inputs.detach().clone()
            bg = self.background.clone()
            if self.method == "deep":
                expl = shap.DeepExplainer(self.predictor, bg)
                values = expl.shap_values(x, check_additivity=check_additivity)
            else:
                expl = shap.GradientExplainer(self.predictor, bg)
                values = expl.shap_values(x, nsamples=self.nsamples, rseed=0)
        values = np.asarray(values[0] if isinstance(values, list) else values)
        if values.ndim == inputs.ndim + 1:
            values = values[..., 0]
        return torch.from_numpy(values).to(inputs.dtype).reshape(inputs.shape)

    def expected_value(self) -> float:
        """``E[f(background)]``, the baseline the attributions sum away from."""
        with torch.inference_mode(False), torch.no_grad():
            return float(self.predictor(self.background).mean())

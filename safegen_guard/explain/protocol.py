"""The explainer interface: what a guard hands an explainer, and what it gets back.

A guard never passes itself to its explainer. It builds an :class:`ExplainContext` (the
autoencoder the views read, a function giving the fused statistic, a function giving the
calibrated anomaly map) and calls :meth:`Explainer.explain`; the explainer returns maps named
after :class:`~safegen_guard.verdict.Verdict` fields (:data:`EXPLANATIONS`), which the guard
puts into the verdict. ``Verdict.mask`` keeps its meaning (``anomaly_map > 0.5``); the mask of
the combined heatmap is ``Verdict.heatmap_mask``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["EXPLANATIONS", "ExplainContext", "Explainer"]

EXPLANATIONS: tuple[str, ...] = ("gradcam", "shap", "heatmap", "heatmap_mask")
"""Names an explainer may return; each is a map field of the verdict."""


@dataclass(frozen=True)
class ExplainContext:
    """What an explainer may use from the guard that asks for explanations.

    Attributes:
        autoencoder: the detector's autoencoder (``forward(x, use_skips=...)``), the
            Grad-CAM target and the source of the foreground.
        statistic: ``statistic(x [B, C, H, W]) -> [B]``, the guard's fused (continuous)
            statistic, the regression target of a distilled predictor.
        anomaly_map: ``anomaly_map(x) -> [B, 1, H, W]`` in ``[0, 1]``, the calibrated pixel
            evidence of the verdict.
        image_size: image height = width the guard scores.
        channels: image channels.
    """

    autoencoder: nn.Module
    statistic: Callable[[torch.Tensor], torch.Tensor]
    anomaly_map: Callable[[torch.Tensor], torch.Tensor]
    image_size: int
    channels: int


@runtime_checkable
class Explainer(Protocol):
    """An explainer a guard can attach, save and load (``Guard.attach_explainer``).

    Besides these methods it is an ``nn.Module`` (its fitted state is parameters and buffers,
    saved in the guard's safetensors) and its class must be allow-listed in
    ``safegen_guard.guard.EXPLAINER_CLASSES`` to be loaded.
    """

    def config_dict(self) -> dict[str, Any]:
        """Plain JSON-able constructor arguments (saved with the guard)."""
        ...

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Explainer:
        """Rebuild an unfitted explainer from :meth:`config_dict` (weights are loaded after)."""
        ...

    def explain(
        self,
        context: ExplainContext,
        x: torch.Tensor,
        anomaly_map: torch.Tensor,
        methods: tuple[str, ...] | None,
    ) -> dict[str, torch.Tensor]:
        """Explanations of ``x`` ``[B, C, H, W]`` (finite, in ``[0, 1]``).

        Args:
            context: what the guard offers (see :class:`ExplainContext`).
            x: the images.
            anomaly_map: ``[B, 1, H, W]`` the verdict's anomaly map.
            methods: names among :data:`EXPLANATIONS`; ``None`` for every one offered.

        Returns:
            ``{name: [B, 1, H, W]}`` for names among :data:`EXPLANATIONS` (float maps in
            ``[0, 1]``, ``heatmap_mask`` bool).
        """
        ...

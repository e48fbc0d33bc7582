"""Grad-CAM (captum ``LayerGradCam``) of a differentiable global anomaly score.

The detector's calibrated score (conformal p-value of a max over views) is piecewise constant,
so Grad-CAM targets a differentiable surrogate computed on the bottleneck path:

``A_global(x) = top-k mean over the foreground of blur(|x - G(E(x))|, sigma)``  (``"topk"``)

or its root-mean-square over the foreground (``"l2"``). Grad-CAM then weights the channels
``A^k`` of a layer of the decoder by ``alpha_k = mean_{ij} dA_global / dA^k_{ij}`` and returns
``sign_fn(sum_k alpha_k A^k)`` up-sampled bilinearly to the image size, where ``sign_fn`` is
ReLU (the original Grad-CAM, ``sign="relu"``) or the absolute value (``sign="abs"``). The map is
*not* normalised here; :mod:`safegen_guard.explain.combine` maps it to ``[0, 1]`` with a scale
calibrated on real images (never a per-image max, which would light up clean images).
"""

from __future__ import annotations

import torch
from torch import nn

from safegen_guard.detector.views import ResidualView, ScoringContext

__all__ = ["AnomalyGradCam", "GlobalAnomalyScore", "GRADCAM_LAYERS", "GRADCAM_TARGETS"]

GRADCAM_LAYERS = ("head_out", "head_in", "last_block")
"""``head_out``: output of the last decoder conv ``autoencoder.head[-1]`` (1 channel);
``head_in``: its input (the last hidden activations, ``base_channels`` channels);
``last_block``: output of the last decoder residual block (before the head's norm)."""
GRADCAM_TARGETS = ("topk", "l2")
_SIGNS = ("relu", "abs")


class GlobalAnomalyScore(nn.Module):
    """Differentiable global anomaly score ``[B, C, H, W] -> [B]`` (bottleneck residual).

    Args:
        autoencoder: The detector's :class:`SafeGenAutoencoder` (not copied).
        target: ``"topk"`` (top ``top_frac`` mean) or ``"l2"`` (RMS) over the foreground.
        top_frac: Share of pixels averaged by ``"topk"``, in ``(0, 1]``.
        sigma: Gaussian smoothing of the residual in pixels.

    The residual map is the detector's own :class:`~safegen_guard.detector.views.ResidualView`
    on the bottleneck reconstruction; with ``target="topk"`` and ``top_frac=0.01`` the score
    is that view's statistic.
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        target: str = "topk",
        top_frac: float = 0.01,
        sigma: float = 1.0,
    ) -> None:
        super().__init__()
        if target not in GRADCAM_TARGETS:
            raise ValueError(f"`target` must be one of {GRADCAM_TARGETS}, got {target!r}")
        if not 0.0 < top_frac <= 1.0:
            raise ValueError(f"`top_frac` must be in (0, 1], got {top_frac}")
        self.autoencoder, self.target = autoencoder, target
        self.top_frac, self.sigma = top_frac, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score ``[B, C, H, W]`` images in ``[0, 1]`` -> ``[B]`` (higher = more anomalous)."""
        recon = self.autoencoder(x, use_skips=False)
        ctx = ScoringContext(x, recon, recon)
        _, r = ResidualView("global", "recon", self.sigma)(ctx)  # the detector's residual map
        if self.target == "l2":
            fg = ctx.foreground.flatten(1).sum(1).clamp_min(1)
            return (r.pow(2).flatten(1).sum(1) / fg).sqrt()
        v = r.flatten(1)  # zero off the foreground, as in the view's own top-k mean
        k = max(1, int(self.top_frac * v.shape[1]))
        return v.topk(k, dim=1).values.mean(1)


def _layer(autoencoder: nn.Module, name: str) -> tuple[nn.Module, bool]:
    """Return ``(module, attribute_to_layer_input)`` for a :data:`GRADCAM_LAYERS` name."""
    if name == "head_out":
        return autoencoder.head[-1], False
    if name == "head_in":
        return autoencoder.head[-1], True
    return autoencoder.up[-1]["block"], False


class AnomalyGradCam:
    """Grad-CAM of :class:`GlobalAnomalyScore` on a decoder layer, at image resolution.

    Args:
        autoencoder: The detector's autoencoder (weights are read, never changed).
        layer: One of :data:`GRADCAM_LAYERS` (default: the last decoder convolution's output).
        target: One of :data:`GRADCAM_TARGETS`.
        sign: ``"relu"`` (Grad-CAM) or ``"abs"`` (keep negative evidence too).
        top_frac: See :class:`GlobalAnomalyScore`.

    Example:
        >>> cam = AnomalyGradCam(guard.detector.autoencoder)  # doctest: +SKIP
        >>> cam.attribute(x).shape  # [B, 1, H, W], >= 0  # doctest: +SKIP
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        layer: str = "head_out",
        target: str = "topk",
        sign: str = "relu",
        top_frac: float = 0.01,
    ) -> None:
        if layer not in GRADCAM_LAYERS:
            raise ValueError(f"`layer` must be one of {GRADCAM_LAYERS}, got {layer!r}")
        if sign not in _SIGNS:
            raise ValueError(f"`sign` must be one of {_SIGNS}, got {sign!r}")
        self.score = GlobalAnomalyScore(autoencoder, target, top_frac)
        self.layer_name, self.sign = layer, sign
        self.module, self.to_input = _layer(autoencoder, layer)

    def attribute(self, inputs: torch.Tensor) -> torch.Tensor:
        """Grad-CAM maps for ``inputs`` ``[B, C, H, W]`` -> ``[B, 1, H, W]`` float ``>= 0``.

        Works under ``torch.no_grad()`` and ``torch.inference_mode()``: gradients are enabled
        locally on a clone of ``inputs``; the result is detached.
        """
        from captum.attr import LayerAttribution, LayerGradCam

        with torch.inference_mode(False), torch.enable_grad():
            x = inputs.detach().clone().requires_grad_(True)
            cam = LayerGradCam(self.score, self.module).attribute(
                x, attribute_to_layer_input=self.to_input, relu_attributions=False
            )
            cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
            cam = cam.relu() if self.sign == "relu" else cam.abs()
        return cam.detach()

"""Grad-CAM against a hand-computed map on a fixed-weight tiny autoencoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from safegen_guard.detector import ops
from safegen_guard.explain.gradcam import AnomalyGradCam, GlobalAnomalyScore


class TinyAE(nn.Module):
    """Stands in for SafeGenAutoencoder: ``head[-1]`` is the last decoder convolution."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.head = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.SiLU(), nn.Conv2d(3, 1, 3, padding=1)
        )
        for p in self.parameters():
            p.data = 0.4 * torch.randn(p.shape, generator=g)

    def forward(self, x: torch.Tensor, use_skips: bool = False) -> torch.Tensor:
        return self.head(x)


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = 0.4 + 0.2 * torch.rand(2, 1, 16, 16, generator=g)
    x[:, :, 5:8, 9:12] += 0.3  # a bright "artifact"
    return x


def _by_hand(ae: TinyAE, x: torch.Tensor, layer_input: bool) -> torch.Tensor:
    """alpha_k = mean_ij d s / d A^k_ij ; returns the signed sum_k alpha_k A^k."""
    with torch.enable_grad():
        hidden = ae.head[:-1](x)
        act = hidden if layer_input else ae.head[-1](hidden)
        if layer_input:
            act = act.detach().requires_grad_(True)
            recon = ae.head[-1](act)
        else:
            act = act.detach().requires_grad_(True)
            recon = act
        fg = ops.estimate_foreground(recon.detach())
        r = (ops.gaussian_blur((x - recon).abs(), 1.0) * fg).flatten(1)
        score = r.topk(max(1, int(0.05 * r.shape[1])), dim=1).values.mean(1)
        (grad,) = torch.autograd.grad(score.sum(), act)
    alpha = grad.mean((2, 3), keepdim=True)
    return (alpha * act).sum(1, keepdim=True).detach()


@pytest.mark.parametrize("layer", ["head_out", "head_in"])
def test_gradcam_matches_hand_computed(layer: str) -> None:
    ae, x = TinyAE(), _images()
    signed = _by_hand(ae, x, layer == "head_in")
    assert signed.abs().max() > 1e-4
    for sign, expected in (("relu", signed.relu()), ("abs", signed.abs())):
        cam = AnomalyGradCam(ae, layer=layer, sign=sign, top_frac=0.05).attribute(x)
        assert cam.shape == (2, 1, 16, 16)
        torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-6)


def test_gradcam_inside_inference_mode_and_no_grad() -> None:
    ae, x = TinyAE(), _images()
    ref = AnomalyGradCam(ae, top_frac=0.05).attribute(x)
    with torch.inference_mode():
        xi = x.clone()
        cam_i = AnomalyGradCam(ae, top_frac=0.05).attribute(xi)
    with torch.no_grad():
        cam_n = AnomalyGradCam(ae, top_frac=0.05).attribute(x)
    torch.testing.assert_close(cam_i, ref)
    torch.testing.assert_close(cam_n, ref)
    assert not x.requires_grad


def test_abs_sign_keeps_negative_evidence() -> None:
    ae, x = TinyAE(), _images()
    relu = AnomalyGradCam(ae, sign="relu").attribute(x)
    absolute = AnomalyGradCam(ae, sign="abs").attribute(x)
    assert torch.all(absolute >= relu - 1e-7)


def test_score_targets_and_bad_arguments() -> None:
    ae, x = TinyAE(), _images()
    assert GlobalAnomalyScore(ae, "l2")(x).shape == (2,)
    with pytest.raises(ValueError, match="`layer` must be one of"):
        AnomalyGradCam(ae, layer="stem")
    with pytest.raises(ValueError, match="`sign` must be one of"):
        AnomalyGradCam(ae, sign="neg")
    with pytest.raises(ValueError, match="`target` must be one of"):
        GlobalAnomalyScore(ae, "max")
    with pytest.raises(ValueError, match="`top_frac` must be in"):
        GlobalAnomalyScore(ae, top_frac=0.0)


def test_global_score_is_the_detectors_residual_view_statistic() -> None:
    from safegen_guard.detector.views import ResidualView, ScoringContext

    ae = TinyAE()
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        recon = ae(x)
        view_stat, _ = ResidualView("recon", "recon", 1.0)(ScoringContext(x, recon, recon))
        score = GlobalAnomalyScore(ae, "topk", top_frac=0.01, sigma=1.0)(x)
    torch.testing.assert_close(score, view_stat)
    assert not torch.equal(score, GlobalAnomalyScore(ae, "topk", top_frac=0.1)(x).detach())

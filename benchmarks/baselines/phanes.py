"""PHANES-style pseudo-healthy reconstruction (re-implementation after Bercea et al. 2023).

"Reversing the abnormal: pseudo-healthy generative networks for anomaly detection" (PHANES,
MICCAI 2023). Pipeline, per image ``x``:

1. **Coarse reconstruction** ``c = G(E(x))`` with a bottleneck autoencoder (no skips).
2. **Anomaly mask** ``m``: the residual ``|x - c|`` smoothed with a 5x5 mean filter, above its
   95th percentile on real validation foreground pixels, dilated by one pixel.
3. **Inpainting**: ``x_in = (1 - m) x + m c``; a second network (skip-path U-Net) trained to
   restore real images from randomly masked inputs returns the pseudo-healthy ``h``.
4. **Map** ``|x - h|``; image score = its L2 norm.

Differences from the paper (documented simplification): the paper's coarse model is a
variational AE and its inpainter a GAN-trained network with masked-region losses; here both are
SAFEGEN-sized residual U-Nets trained jointly with MSE for the same number of steps as
SAFEGEN's autoencoder (each step updates both nets, ~2x SAFEGEN's per-step compute); training
masks are random rectangles instead of masks from the coarse residual; no perceptual loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.baselines.base import Baseline, autoencoder_config, residual_score
from safegen_guard.detector.autoencoder import SafeGenAutoencoder

__all__ = ["PhanesStyle", "random_box_masks"]

_MASK_QUANTILE = 0.95


def random_box_masks(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """One random rectangle per image, sides 1/8 to 1/3 of the image.

    Returns:
        ``shape`` (``[B, 1, H, W]``) float mask in ``{0, 1}``.
    """
    b, _, h, w = shape
    out = torch.zeros(shape)
    sides = torch.randint(max(h // 8, 1), max(h // 3, 2), (b, 2), generator=generator)
    for i in range(b):
        sh, sw = int(sides[i, 0]), int(sides[i, 1])
        y = int(torch.randint(0, h - sh + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - sw + 1, (1,), generator=generator))
        out[i, :, y : y + sh, x : x + sw] = 1.0
    return out


class _Pair(torch.nn.Module):
    def __init__(self, coarse: SafeGenAutoencoder, inpaint: SafeGenAutoencoder) -> None:
        super().__init__()
        self.coarse, self.inpaint = coarse, inpaint


class PhanesStyle(Baseline):
    """Coarse AE -> residual mask -> inpainting -> residual to the pseudo-healthy image."""

    name = "phanes"
    label = "PHANES-style pseudo-healthy (re-implementation)"
    reference = "Bercea, Wiestler, Rueckert, Schnabel 2023, MICCAI (PHANES)"

    def fit(
        self, train: torch.Tensor, val: torch.Tensor, budget_steps: int, seed: int
    ) -> PhanesStyle:
        """Train both nets jointly for ``budget_steps`` steps; set the mask level on ``val``."""
        cfg = self.guard_config
        torch.manual_seed(seed)
        ae = autoencoder_config(cfg)
        self.nets = _Pair(SafeGenAutoencoder(ae), SafeGenAutoencoder(ae))

        def loss(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            c = self.nets.coarse(x, use_skips=False)
            m = random_box_masks(x.shape, g).to(x)
            x_in = (1 - m) * x + m * c.detach()
            h = self.nets.inpaint(x_in, use_skips=True)
            return F.mse_loss(c, x) + F.mse_loss(h, x) + F.mse_loss(h * m, x * m)

        self.train_module(self.nets, loss, train, budget_steps, seed)
        with torch.no_grad():
            sm = torch.cat([self._smoothed_residual(v)[0] for v in val.split(128)])
            fg = val > 0.02
            self.mask_level = float(torch.quantile(sm[fg][:2_000_000], _MASK_QUANTILE))
        return self

    def _smoothed_residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.nets.coarse(x, use_skips=False)
        return F.avg_pool2d((x - c).abs(), 5, stride=1, padding=2, count_include_pad=False), c

    @torch.no_grad()
    def pseudo_healthy(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the pseudo-healthy images ``[B,1,H,W]`` and the inpainting masks (bool)."""
        sm, c = self._smoothed_residual(x)
        m = F.max_pool2d((sm > self.mask_level).float(), 3, stride=1, padding=1)
        h = self.nets.inpaint((1 - m) * x + m * c, use_skips=True)
        return h, m.bool()

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` L2 norms and ``[B,1,H,W]`` maps ``|x - pseudo-healthy|``."""
        return residual_score(x, self.pseudo_healthy(x)[0])

"""What `safegen score` writes per image for people: evidence panels and the report's inputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from safegen_guard.verdict import Verdict

__all__ = ["MAP_LABELS", "PanelWriter", "calibration_scores", "resize_to"]

#: Verdict map field -> label shown above its overlay (the combined heatmap first).
MAP_LABELS = {"heatmap": "heatmap", "gradcam": "Grad-CAM", "shap": "SHAP"}


class PanelWriter:
    """Write one evidence panel PNG per image under ``folder`` with names unique in the run.

    Args:
        folder: where the PNGs go (created on first write).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._used: set[str] = set()

    def name_for(self, path: Path, index: int, n: int) -> str:
        """``<stem>.png`` (or ``<stem>_<index>.png`` in a batch file), made unique in this run."""
        base = f"{path.stem}_{index}" if n > 1 else path.stem
        name, k = f"{base}.png", 1
        while name in self._used:
            name, k = f"{base}-{k}.png", k + 1
        self._used.add(name)
        return name

    def write(self, image: torch.Tensor, verdict: Verdict, name: str) -> Path:
        """Write the panel of a one-image ``verdict`` for ``image`` ``[1, H, W]``.

        The panel shows the image, the combined heatmap (or the anomaly map when the guard
        did not explain) with the mask contour, Grad-CAM and SHAP when present, the mask, a
        colour bar and the verdict, p-value and reasons as a title.
        """
        from safegen_guard.viz import evidence_mask, save_png, verdict_panel, verdict_titles

        maps = {lab: getattr(verdict, f)[0] for f, lab in MAP_LABELS.items() if _has(verdict, f)}
        if not maps:
            maps = {"anomaly map": verdict.anomaly_map[0]}
        img = torch.nan_to_num(image, nan=0.0).clamp(0, 1)
        mask = evidence_mask(verdict)[0]
        panel = verdict_panel(img, maps, mask, verdict_titles(verdict)[0])
        return save_png(panel, self.folder / name)


def _has(verdict: Verdict, field: str) -> bool:
    return getattr(verdict, field, None) is not None


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` images to ``[N, C, size, size]`` (bilinear, antialiased).

    Non-square images are stretched; values stay in ``[0, 1]`` (bilinear interpolation never
    leaves the input range).
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)


def calibration_scores(guard: torch.nn.Module) -> list[float]:
    """Scores (``-log10 p``) of the guard's own conformal reference images.

    Each reference image gets the p-value a new image with its fused statistic would get
    against the other reference images of its bin (the largest over the bin's preparation
    groups, as in the calibrator), so the list is the distribution that a real image's
    ``score`` follows: the baseline the report draws scores against.
    """
    from safegen_guard.calibration import conformal_p_values

    cal = guard.calibrator
    fused, n = cal.cal_fused, len(cal.cal_fused)
    out: list[float] = []
    for b in range(cal.n_bins):
        cells = [(cal.cal_bin == b) & (cal.cal_group == g) for g in cal.cal_group.unique()]
        for i in torch.nonzero(cal.cal_bin == b).flatten().tolist():
            others = torch.arange(n) != i
            p = max(
                float(conformal_p_values(fused[cell & others], fused[i : i + 1])[0])
                for cell in cells
                if bool((cell & others).any())
            )
            out.append(-math.log10(max(p, 1e-12)))
    return out

"""Regenerate ``docs/figures/artifacts.png``: every artifact kind at mild and strong severity.

Run from the repository root::

    python -m benchmarks.figures.artifacts_figure [--out docs/figures/artifacts.png] [--size 128]

Rows are artifact kinds (plus a CT row for ``ring`` when the CT phantom dataset loads);
columns are clean | mild | mild + mask contour | strong | strong + mask contour.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from safegen_guard.artifacts import ARTIFACTS, inject, list_artifacts  # noqa: E402

COLUMNS = ("clean", "mild", "mild mask", "strong", "strong mask")


def example_slice(source: str, size: int) -> torch.Tensor | None:
    """Return one mid-volume test slice ``[1, 1, size, size]`` of ``source``, or None."""
    try:
        from safegen_guard.data import load_dataset

        ds = load_dataset(source, "test", size)
    except Exception as err:  # the figure must still build without a dataset  # noqa: BLE001
        print(f"could not load {source!r}: {err}")
        return None
    order = torch.argsort((ds.positions - 0.5).abs().nan_to_num(0.0))
    return ds.images[order[:1]].float()


def mni_fallback(size: int) -> torch.Tensor:
    """Axial slice 90 of nilearn's MNI152 template, square, resized, plus Rician-like noise."""
    from nilearn.datasets import load_mni152_template

    vol = load_mni152_template(resolution=1).get_fdata()
    img = torch.as_tensor(vol[:, :, 90], dtype=torch.float32).T.flip(0)
    side = max(img.shape)
    pad = (side - img.shape[1], 0, side - img.shape[0], 0)
    img = torch.nn.functional.pad(img, pad)[None, None]
    img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear")
    img = img / img.max()
    g = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(2, *img.shape, generator=g)
    return torch.sqrt((img + noise[0]) ** 2 + noise[1] ** 2).clamp(0, 1)


def _panel(ax: plt.Axes, image: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    ax.imshow(image[0, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if mask is not None and bool(mask.any()):
        ax.contour(mask[0, 0].numpy().astype(float), levels=[0.5], colors="red", linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])


def build_figure(rows: list[tuple[str, str, torch.Tensor]], seed: int = 3) -> plt.Figure:
    """Draw one row per ``(label, kind, image)``: clean, mild, mild mask, strong, strong mask."""
    fig, axes = plt.subplots(len(rows), 5, figsize=(10, 2.05 * len(rows)), squeeze=False)
    for r, (label, kind, image) in enumerate(rows):
        panels: list[tuple[torch.Tensor, torch.Tensor | None]] = [(image, None)]
        for severity in ("mild", "strong"):
            out, mask = inject(image, kind, severity, torch.Generator().manual_seed(seed))
            panels += [(out, None), (out, mask)]
        for c, (img, mask) in enumerate(panels):
            _panel(axes[r, c], img, mask)
            if r == 0:
                axes[r, c].set_title(COLUMNS[c], fontsize=10)
        scope = "local" if ARTIFACTS[kind].local else "global"
        axes[r, 0].set_ylabel(f"{label}\n({scope})", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    """Build the figure and save it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures/artifacts.png"))
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    mri = example_slice("mni152", args.size)
    if mri is None:
        mri = mni_fallback(args.size)
    rows = [(kind, kind, mri) for kind in list_artifacts()]
    ct = example_slice("ct_phantom", args.size)
    if ct is not None:
        rows.append(("ring (CT)", "ring", ct))
    fig = build_figure(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({len(rows)} rows); mask contour in red")


if __name__ == "__main__":
    main()

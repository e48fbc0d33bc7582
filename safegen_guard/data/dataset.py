"""`SliceDataset`: the one container every SAFEGEN dataset is returned in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from safegen_guard.validation import check_images

__all__ = ["SliceDataset", "SPLITS"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class SliceDataset(Dataset):
    """A split of 2-D slices held in memory, with foreground masks and slice positions.

    Attributes:
        images: ``[N, 1, H, W]`` float32, intensities in ``[0, 1]``.
        masks: ``[N, 1, H, W]`` bool foreground (head/body) masks.
        positions: ``[N]`` float32 normalised slice position along the scan axis in ``[0, 1]``
            (NaN when unknown, e.g. PNG folders).
        name: Short dataset name (``"mni152"``, ``"ct_phantom"``) or the user path.
        split: ``"train"``, ``"val"`` or ``"test"``.
        info: Plain-data provenance (source files, slice indices, acquisition settings).
    """

    images: torch.Tensor
    masks: torch.Tensor
    positions: torch.Tensor
    name: str
    split: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_images(self.images, name="images")
        n = self.images.shape[0]
        if self.masks.shape != self.images.shape or self.masks.dtype != torch.bool:
            raise ValueError(
                f"`masks` must be a bool tensor of shape {tuple(self.images.shape)}, got "
                f"{self.masks.dtype} {tuple(self.masks.shape)}"
            )
        if self.positions.shape != (n,):
            raise ValueError(
                f"`positions` must have shape ({n},), got {tuple(self.positions.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Return ``{"image": [1,H,W], "mask": [1,H,W] bool, "position": []}``."""
        return {
            "image": self.images[index],
            "mask": self.masks[index],
            "position": self.positions[index],
        }

    @property
    def size(self) -> tuple[int, int]:
        """Spatial size ``(H, W)``."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the name, split and image bytes: identifies the data."""
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.split}|{tuple(self.images.shape)}".encode())
        h.update(self.images.detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def subset(self, index: torch.Tensor | slice | list[int]) -> SliceDataset:
        """Return a new dataset with the selected items (same name, split and info)."""
        return SliceDataset(
            images=self.images[index],
            masks=self.masks[index],
            positions=self.positions[index],
            name=self.name,
            split=self.split,
            info=dict(self.info),
        )

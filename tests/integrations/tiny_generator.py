"""A tiny generator LightningModule with the `sample(n, generator)` protocol (tests only)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyGenerator(pl.LightningModule):
    """Conv net trained with MSE on random data; `sample` maps uniform noise through it."""

    def __init__(self, size: int = 32, mode: str = "normal") -> None:
        super().__init__()
        self.size, self.mode = size, mode
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(4, 1, 3, padding=1)
        )
        self.sample_calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self(batch[0]), batch[0])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.mse_loss(self(batch[0]), batch[0]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.rand(n, 1, self.size, self.size, generator=generator)
        self.sample_calls.append(
            {"training": self.training, "grad": torch.is_grad_enabled(), "z": z.clone()}
        )
        x = self(z)
        if self.mode == "nan":
            x = torch.full_like(x, float("nan"))
        return x


def loaders(n: int = 16, batch_size: int = 4, size: int = 32) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(n, 1, size, size, generator=g))
    return DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=batch_size)

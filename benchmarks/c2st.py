"""Classifier two-sample test (C2ST): the supervised yardstick of realism for generated samples.

A small CNN is trained to tell real test slices from generated samples under stratified k-fold
cross-validation (Lopez-Paz & Oquab, 2017). Its out-of-fold AUROC says how separable the two
sets are (0.5: indistinguishable; 1.0: every sample is recognisably fake), and its out-of-fold
probability ``P(fake)`` of each generated sample says which samples a supervised model would
call fake. It sees *generated* samples, so it is an upper bound no unsupervised guard can reach
on unknown generators; the benchmark reports how close the guard comes, and how many of the
samples the guard accepts the C2ST calls fake with probability above 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from safegen_guard.adaptive import SmallCNN

__all__ = ["C2STResult", "classifier_two_sample_test", "SmallCNN"]


class _Classifier(L.LightningModule):
    def __init__(self, net: nn.Module, learning_rate: float) -> None:
        super().__init__()
        self.net, self.learning_rate = net, learning_rate

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        x = torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x, x.flip(-1))  # left-right flips
        loss = F.binary_cross_entropy_with_logits(self.net(x), y)
        self.log("c2st/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)


@dataclass
class C2STResult:
    """Out-of-fold results.

    Attributes:
        auroc: Out-of-fold AUROC real (0) vs generated (1).
        p_fake_real: ``[n_real]`` out-of-fold ``P(fake)`` of the real images.
        p_fake_generated: ``[n_gen]`` out-of-fold ``P(fake)`` of the generated images.
        folds: Number of folds.
    """

    auroc: float
    p_fake_real: np.ndarray
    p_fake_generated: np.ndarray
    folds: int


def classifier_two_sample_test(
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    folds: int = 5,
    steps: int = 300,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
) -> C2STResult:
    """k-fold C2ST between ``real`` ``[N, C, H, W]`` and ``generated`` ``[M, C, H, W]`` in [0, 1].

    Each fold trains a fresh :class:`SmallCNN` for ``steps`` optimiser steps (Lightning, CPU)
    on the other folds and predicts the held-out fold.

    Raises:
        ValueError: shapes differ, or a set has fewer images than ``folds``.
    """
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(
            f"real and generated images must have one shape, got {tuple(real.shape[1:])} and "
            f"{tuple(generated.shape[1:])}"
        )
    if min(len(real), len(generated)) < folds:
        raise ValueError(
            f"each set needs >= {folds} images (folds), got {len(real)} real and "
            f"{len(generated)} generated"
        )
    x = torch.cat([real, generated]).float()
    y = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    oof = np.zeros(len(x))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(splitter.split(np.zeros(len(y)), y)):
        L.seed_everything(seed + k, verbose=False)
        net = SmallCNN(x.shape[1])
        data = TensorDataset(x[tr], torch.from_numpy(y[tr]).float())
        loader = DataLoader(
            data,
            batch_size=min(batch_size, len(tr)),
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(seed + k),
        )
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
        )
        trainer.fit(_Classifier(net, learning_rate), loader)
        net.eval()
        with torch.no_grad():
            oof[te] = torch.sigmoid(torch.cat([net(b) for b in x[te].split(256)])).numpy()
    return C2STResult(
        auroc=float(roc_auc_score(y, oof)),
        p_fake_real=oof[: len(real)],
        p_fake_generated=oof[len(real) :],
        folds=folds,
    )

"""Test doubles shared by the sampling-policy tests (no fitted guard needed)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from safegen_guard.verdict import Verdict


class MeanRuleGuard:
    """Test double for policy logic: `unsafe` = mean intensity above the batch median."""

    config = SimpleNamespace(image_size=32, channels=1)
    fingerprint, explainer = "mean-rule-double", None

    def __init__(self, reject_all: bool = False) -> None:
        self.reject_all = reject_all

    @staticmethod
    def rule(x: torch.Tensor) -> torch.Tensor:
        m = x.mean((1, 2, 3))
        return m > m.median()

    def evaluate(self, x: torch.Tensor, explain=False) -> Verdict:
        unsafe = torch.ones(len(x), dtype=torch.bool) if self.reject_all else self.rule(x)
        p = torch.where(unsafe, 0.01, 0.5)
        return Verdict(
            score=-p.log10(),
            p_value=p,
            unsafe=unsafe,
            anomaly_map=x.clone(),
            mask=x > 0.5,
            reasons=[("mean",) if u else () for u in unsafe.tolist()],
            guard_fingerprint=self.fingerprint,
        )

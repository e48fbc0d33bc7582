"""Detection / localisation metrics and paired statistics against scikit-learn and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from benchmarks import metrics
from benchmarks.stats import auroc, auroc_contributions, paired_comparison


def _scores(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(40, generator=g), torch.randn(30, generator=g) + 1.0


def test_image_metrics_match_sklearn() -> None:
    clean, anom = _scores()
    out = metrics.image_metrics(clean, anom, threshold=0.8)
    y = np.r_[np.zeros(40), np.ones(30)]
    s = torch.cat([clean, anom]).numpy()
    pred = s > 0.8
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert out["auprc"] == pytest.approx(average_precision_score(y, s))
    assert out["precision"] == pytest.approx(precision_score(y, pred))
    assert out["recall"] == pytest.approx(recall_score(y, pred))
    assert out["f1"] == pytest.approx(f1_score(y, pred))


def test_auroc_contributions_mean_is_auroc_with_ties() -> None:
    clean = np.array([0.0, 1.0, 1.0, 2.0])
    anom = np.array([1.0, 3.0, 0.5])
    y = np.r_[np.zeros(4), np.ones(3)]
    assert auroc(clean, anom) == pytest.approx(roc_auc_score(y, np.r_[clean, anom]))
    assert auroc_contributions(clean, anom).tolist() == pytest.approx([0.5, 1.0, 0.25])


def test_paired_comparison_matches_scipy() -> None:
    clean, anom = _scores(1)
    noise = torch.randn(70, generator=torch.Generator().manual_seed(5)) * 0.8
    clean_b, anom_b = clean + noise[:40], anom + noise[40:]
    res = paired_comparison(clean, anom, clean_b, anom_b, n_boot=200, seed=0)
    ua = auroc_contributions(clean.numpy(), anom.numpy())
    ub = auroc_contributions(clean_b.numpy(), anom_b.numpy())
    ref = sps.ttest_rel(ua, ub)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert res["t_stat"] == pytest.approx(ref.statistic)
    y = np.r_[np.zeros(40), np.ones(30)]
    diff = roc_auc_score(y, torch.cat([clean, anom])) - roc_auc_score(
        y, torch.cat([clean_b, anom_b])
    )
    assert res["auroc_diff"] == pytest.approx(diff)
    assert res["ci_low"] <= res["auroc_diff"] <= res["ci_high"]


def test_paired_comparison_identical_methods_has_no_p_value() -> None:
    clean, anom = _scores(2)
    res = paired_comparison(clean, anom, clean, anom, n_boot=20)
    assert res["p_value"] is None and res["auroc_diff"] == 0.0


def _boxes() -> tuple[torch.Tensor, torch.Tensor]:
    gt = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    gt[:, :, 4:8, 4:8] = True
    maps = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5
    maps[0, :, 5:7, 5:7] = 1.0  # inside
    maps[1, :, 12, 12] = 1.0  # outside
    maps[2] = gt[2].float()
    return maps, gt


def test_pixel_metrics_match_references() -> None:
    maps, gt = _boxes()
    assert metrics.pointing_game(maps, gt) == pytest.approx(2 / 3)
    r = metrics.pixel_ranking(maps, gt)
    assert r["pixel_auroc"] == pytest.approx(
        roc_auc_score(gt.flatten().numpy(), maps.flatten().numpy())
    )
    assert r["pixel_auprc"] == pytest.approx(
        average_precision_score(gt.flatten().numpy(), maps.flatten().numpy())
    )
    ov = metrics.mask_overlap(gt.clone(), gt)
    assert ov == {"iou": 1.0, "dice": 1.0}
    half = gt.clone()
    half[:, :, 4:6] = False  # 8 of 16 GT pixels
    assert metrics.mask_overlap(half, gt) == pytest.approx({"iou": 0.5, "dice": 2 / 3})
    assert metrics.topk_intersection(maps[2:], gt[2:]) == 1.0


def test_insertion_deletion_rewards_the_true_region() -> None:
    clean = torch.zeros(4, 1, 16, 16)
    anom = clean.clone()
    anom[:, :, 4:8, 4:8] = 1.0
    gt = anom.bool()

    def score(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)

    good = metrics.insertion_deletion(score, clean, anom, gt.float(), gt)
    bad = metrics.insertion_deletion(score, clean, anom, 1 - gt.float(), gt)
    assert good["insertion_auc"] > 0.6 > bad["insertion_auc"]
    assert good["deletion_auc"] < 0.4 < bad["deletion_auc"]


def test_insertion_deletion_is_bounded_and_skips_unscored_images() -> None:
    clean = torch.zeros(3, 1, 16, 16)
    anom = clean.clone()
    anom[:2, :, 4:8, 4:8] = 1.0  # image 2 is left clean: it cannot qualify
    gt = anom.bool()

    def overshoot(x: torch.Tensor) -> torch.Tensor:  # half the artifact scores 10x the whole
        n = x.flatten(1).sum(1)
        return torch.where((n > 0) & (n < 16), 10 * n, n)

    r = metrics.insertion_deletion(overshoot, clean, anom, gt.float(), gt)
    assert r["n"] == 2 and 0.0 <= r["deletion_auc"] <= r["insertion_auc"] <= 1.0
    # the two PHANES-style values the quick suite once printed cannot occur any more
    assert r["insertion_auc"] < 4.857 and r["deletion_auc"] > -2.056


def test_cell_means_leave_out_images_without_ground_truth() -> None:
    maps, gt = _boxes()
    empty = torch.zeros_like(gt[:1])
    maps_e, gt_e = torch.cat([maps, maps[:1]]), torch.cat([gt, empty])
    assert metrics.pointing_game(maps_e, gt_e) == metrics.pointing_game(maps, gt)
    assert metrics.topk_intersection(maps_e, gt_e) == metrics.topk_intersection(maps, gt)
    pred = maps_e > 0.45
    assert metrics.mask_overlap(pred, gt_e) == metrics.mask_overlap(pred[:-1], gt)

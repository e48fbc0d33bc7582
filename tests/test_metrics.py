"""Metrics against scikit-learn references and hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from safegen_guard import metrics


@pytest.fixture()
def pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 1, 8, 8, generator=g)
    gt = torch.rand(3, 1, 8, 8, generator=g) > 0.7
    scores = (scores + 0.3 * gt).round(decimals=1)  # informative, with ties
    return scores, gt, scores > 0.6


def test_pixel_auroc_matches_sklearn(pair) -> None:
    scores, gt, _ = pair
    ref = roc_auc_score(gt.flatten().numpy(), scores.flatten().numpy())
    assert metrics.pixel_auroc(scores, gt) == pytest.approx(ref, abs=1e-12)
    region = torch.zeros_like(gt)
    region[:, :, 2:6] = True
    ref_r = roc_auc_score(gt[region].numpy(), scores[region].numpy())
    assert metrics.pixel_auroc(scores, gt, region) == pytest.approx(ref_r, abs=1e-12)


def test_iou_dice_match_sklearn(pair) -> None:
    _, gt, pred = pair
    for i in range(len(gt)):
        y, p = gt[i].flatten().numpy(), pred[i].flatten().numpy()
        assert float(metrics.iou(pred, gt)[i]) == pytest.approx(jaccard_score(y, p), abs=1e-6)
        assert float(metrics.dice(pred, gt)[i]) == pytest.approx(f1_score(y, p), abs=1e-6)


def test_empty_masks_score_one() -> None:
    empty = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    assert float(metrics.iou(empty, empty)) == 1.0
    assert float(metrics.dice(empty, empty)) == 1.0


def test_pointing_game_and_top_k_by_hand() -> None:
    maps = torch.zeros(2, 1, 5, 5)
    maps[0, 0, 1, 1], maps[1, 0, 4, 4] = 1.0, 1.0
    maps[0, 0, 3, 3] = 0.5
    gt = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    gt[:, 0, 1, 1] = True
    gt[:, 0, 0, 0] = True
    assert metrics.pointing_game(maps, gt).tolist() == [True, False]
    assert metrics.pointing_game(maps, gt, tolerance=3).tolist() == [True, True]
    # k = |gt| = 2: image 0 ranks (1,1) then (3,3) -> 1/2; image 1 ranks (4,4) then (0,0) -> 1/2
    assert metrics.top_k_intersection(maps, gt).tolist() == [0.5, 0.5]
    assert metrics.top_k_intersection(maps, gt, k=1).tolist() == [1.0, 0.0]


def test_insertion_deletion_ideal_map() -> None:
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 0, :2] = 1.0  # two anomalous pixels on a zero (healthy) substrate

    def score(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)

    good = img.clone()
    bad = 1.0 - img
    r_good = metrics.insertion_deletion(score, img, torch.zeros_like(img), good, steps=8)
    r_bad = metrics.insertion_deletion(score, img, torch.zeros_like(img), bad, steps=8)
    # ideal: after 2/16 of the pixels the score is fully restored/removed
    assert float(r_good["insertion"]) > 0.9 > float(r_bad["insertion"])
    assert float(r_good["deletion"]) < 0.1 < float(r_bad["deletion"])
    assert r_good["curves_del"][0, 0] == 2.0 and r_good["curves_del"][0, -1] == 0.0


def test_bad_arguments_raise() -> None:
    m = torch.zeros(1, 1, 4, 4)
    gt = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="must be a bool mask"):
        metrics.dice(m, gt)
    with pytest.raises(ValueError, match="one shape"):
        metrics.iou(gt, gt[..., :2])
    with pytest.raises(ValueError, match="`k` must be in"):
        metrics.top_k_intersection(m, gt, k=0)
    with pytest.raises(ValueError, match="`tolerance` must be >= 0"):
        metrics.pointing_game(m, gt, tolerance=-1)
    with pytest.raises(ValueError, match="max_fraction"):
        metrics.insertion_deletion(lambda x: x.sum((1, 2, 3)), m, m, m, max_fraction=0.0)

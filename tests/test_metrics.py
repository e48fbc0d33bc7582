"""Metrics against scikit-learn references and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, jaccard_score, roc_auc_score

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


def test_pixel_auprc_matches_sklearn_and_subsamples(pair) -> None:
    scores, gt, _ = pair
    ref = average_precision_score(gt.flatten().numpy(), scores.flatten().numpy())
    assert metrics.pixel_auprc(scores, gt) == pytest.approx(ref, abs=1e-12)
    sub = metrics.pixel_auroc(scores, gt, max_pixels=100, seed=1)
    assert (
        sub
        == metrics.pixel_auroc(scores, gt, max_pixels=100, seed=1)
        != pytest.approx(metrics.pixel_auroc(scores, gt), abs=1e-12)
    )
    assert np.isnan(metrics.pixel_auroc(scores, torch.zeros_like(gt)))


def test_dice_broadcasts_leading_dimensions(pair) -> None:
    scores, gt, _ = pair
    taus = torch.tensor([0.3, 0.6, 0.9])
    pred = scores[None] > taus[:, None, None, None, None]  # [T, B, 1, H, W]
    batched = metrics.dice(pred, gt[None])
    assert batched.shape == (3, 3)
    for t in range(3):
        assert torch.equal(batched[t], metrics.dice(pred[t], gt))


def test_insertion_deletion_lies_in_unit_interval_for_unbounded_scores() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 1, 8, 8, generator=g)
    sub = torch.zeros_like(img)

    def spiky(x: torch.Tensor) -> torch.Tensor:  # partial states score far beyond both ends
        frac = (x > 0).flatten(1).float().mean(1)
        return x.flatten(1).sum(1) + 1e3 * (frac * (1 - frac))

    r = metrics.insertion_deletion(spiky, img, sub, torch.rand(3, 1, 8, 8, generator=g))
    for key in ("insertion", "deletion"):
        assert bool(((r[key] >= 0) & (r[key] <= 1)).all()), r[key]
    assert bool((r["curves_ins"].max(1).values > r["s_image"]).all())  # unclipped, it would be > 1
    # an image no more anomalous than its substrate has no defined AUC
    flat = metrics.insertion_deletion(spiky, sub, sub, torch.rand(3, 1, 8, 8, generator=g))
    assert bool(flat["insertion"].isnan().all() and flat["deletion"].isnan().all())


def test_insertion_deletion_n_pixels_limits_the_curve() -> None:
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 0, :2] = 1.0
    score = lambda x: x.flatten(1).sum(1)  # noqa: E731
    two = torch.tensor([2])
    r = metrics.insertion_deletion(score, img, torch.zeros_like(img), img, n_pixels=two, steps=2)
    # t = 0, 1/2, 1 moves 0, 1, 2 of the two salient pixels
    assert r["curves_ins"].tolist() == [[0.0, 1.0, 2.0]]
    assert r["curves_del"].tolist() == [[2.0, 1.0, 0.0]]
    assert float(r["insertion"]) == pytest.approx(0.5)
    assert float(r["deletion"]) == pytest.approx(0.5)


def test_bad_arguments_raise() -> None:
    m = torch.zeros(1, 1, 4, 4)
    gt = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="must be a bool mask"):
        metrics.dice(m, gt)
    with pytest.raises(ValueError, match="one image shape"):
        metrics.iou(gt, gt[..., :2])
    with pytest.raises(ValueError, match="`k` must be in"):
        metrics.top_k_intersection(m, gt, k=0)
    with pytest.raises(ValueError, match="`tolerance` must be >= 0"):
        metrics.pointing_game(m, gt, tolerance=-1)
    with pytest.raises(ValueError, match="`steps` must be a positive int, got 0"):
        metrics.insertion_deletion(lambda x: x.sum((1, 2, 3)), m, m, m, steps=0)
    with pytest.raises(ValueError, match=r"`saliency` \[B, 1, H, W\] must agree"):
        metrics.insertion_deletion(lambda x: x.sum((1, 2, 3)), m, m, m[:, :, :2])

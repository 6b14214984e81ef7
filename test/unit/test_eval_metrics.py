"""Evaluation metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meta_tracker_ros.evaluation import metrics as M


def _gt(n: int = 5) -> np.ndarray:
    return np.tile([10.0, 20.0, 40.0, 20.0], (n, 1))


def test_perfect_tracker_scores_the_otb_ceiling() -> None:
    gt = _gt()
    m = M.sequence_metrics(gt.copy(), gt)
    # IoU > 1.0 never holds, so 20 of the 21 thresholds succeed (OTB / GOT-10k / pysot ceiling).
    assert m["auc"] == pytest.approx(20 / 21) == pytest.approx(M.PERFECT_AUC)
    assert m["precision20"] == 1.0
    assert m["norm_precision"] == 1.0
    assert m["norm_precision_at_0.2"] == 1.0
    assert m["scored_frames"] == 4  # first frame excluded


def test_shifted_box_known_iou() -> None:
    gt = _gt(3)
    pred = gt.copy()
    pred[:, 0] += 20.0  # half the 40 px width: overlap 20x20 = 400, union 1200 -> IoU 1/3
    iou = M.box_iou(pred, gt)
    np.testing.assert_allclose(iou, 1 / 3)
    m = M.sequence_metrics(pred, gt)
    # thresholds 0, 0.05, ..., 0.3 (7 of 21) are below 1/3
    assert m["auc"] == pytest.approx(7 / 21)
    assert m["precision20"] == 1.0  # centre error exactly 20 px counts (<=)
    # normalised error 20 / 40 = 0.5: all 51 thresholds are <= 0.5 only at t = 0.5
    assert m["norm_precision"] == pytest.approx(1 / 51)
    assert m["norm_precision_at_0.2"] == 0.0


def test_precision_threshold_is_inclusive_at_20_px() -> None:
    gt = _gt(4)
    pred = gt.copy()
    pred[1:, 1] += [3.0, 20.0, 20.5]  # errors 3, 20, 20.5 on the three scored frames
    m = M.sequence_metrics(pred, gt)
    assert m["precision20"] == pytest.approx(2 / 3)
    err = M.center_error(pred, gt)
    np.testing.assert_allclose(err, [0.0, 3.0, 20.0, 20.5])


def test_normalized_precision_uses_gt_size_per_axis() -> None:
    gt = np.array([[0.0, 0.0, 100.0, 10.0]] * 2)
    pred = gt.copy()
    pred[1] = [10.0, 1.0, 100.0, 10.0]  # dx/w = 0.1, dy/h = 0.1 -> d = 0.1414
    d = M.center_error(pred, gt, normalized=True)
    assert d[1] == pytest.approx(math.hypot(0.1, 0.1))
    m = M.sequence_metrics(pred, gt)
    # thresholds 0.15..0.5 succeed: 36 of 51
    assert m["norm_precision"] == pytest.approx(36 / 51)
    assert m["norm_precision_at_0.2"] == 1.0


def test_nan_gt_frames_are_excluded_and_bad_predictions_fail() -> None:
    gt = _gt(5)
    gt[2] = np.nan  # absent target
    gt[3, 2] = 0.0  # zero width also counts as absent
    pred = gt.copy()
    pred[2] = [500.0, 500.0, 1.0, 1.0]  # would be a failure if scored
    pred[3] = [500.0, 500.0, 1.0, 1.0]
    m = M.sequence_metrics(pred, gt)
    assert m["scored_frames"] == 2
    assert m["auc"] == pytest.approx(20 / 21)
    pred[4] = np.nan  # tracker produced nothing: a failure, not a skip
    m = M.sequence_metrics(pred, gt)
    assert m["scored_frames"] == 2
    assert m["auc"] == pytest.approx(10 / 21)
    assert m["precision20"] == 0.5


def test_no_scored_frame_gives_nan() -> None:
    m = M.sequence_metrics(_gt(1), _gt(1))
    assert m["scored_frames"] == 0 and math.isnan(m["auc"])


def test_disjoint_boxes_iou_zero_and_success_curve_shape() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[10.0, 0.0, 10.0, 10.0]])  # touching edges: no overlap
    assert M.box_iou(a, b)[0] == 0.0
    curve = M.success_curve(np.array([0.0, 0.5, 1.0]))
    assert curve.shape == (21,)
    assert curve[0] == pytest.approx(2 / 3)  # IoU > 0
    assert curve[-1] == 0.0  # IoU > 1


def test_equal_boxes_score_exactly_one() -> None:
    """(y + h) - y rounds: without the clip at 1 in core.geometry.iou_xywh, this pair scores
    1 + 4e-16 and would count as a success at the threshold IoU > 1."""
    box = [285.1927269456607, 383.4575986585364, 379.68522992093125, 371.7779363554234]
    assert (box[1] + box[3]) - box[1] != box[3]  # the height rounds
    assert M.box_iou(np.array([box]), np.array([box]))[0] == 1.0
    assert M.success_curve(M.box_iou(np.array([box]), np.array([box])))[-1] == 0.0


def test_mask_iou_cases() -> None:
    gt = np.zeros((4, 4), dtype=np.uint8)
    gt[:2, :2] = 255
    pred = np.zeros((4, 4), dtype=bool)
    pred[:2, :] = True  # 4 of 8 pixels overlap
    assert M.mask_iou(pred, gt) == pytest.approx(0.5)
    assert M.mask_iou(gt, gt) == 1.0
    empty = np.zeros((4, 4), dtype=bool)
    assert M.mask_iou(empty, empty) == 1.0  # both empty: correct "nothing there"
    assert M.mask_iou(empty, gt) == 0.0
    assert M.mask_iou(None, empty) == 1.0
    assert M.mask_iou(None, gt) == 0.0
    with pytest.raises(ValueError):
        M.mask_iou(np.zeros((3, 3)), gt)


def test_box_to_mask_pixel_centres() -> None:
    m = M.box_to_mask((1.0, 2.0, 3.0, 2.0), (6, 6))
    assert m.sum() == 6 and m[2:4, 1:4].all()
    assert M.box_to_mask((np.nan, 0, 1, 1), (4, 4)).sum() == 0
    assert M.box_to_mask((-5.0, -5.0, 6.0, 6.0), (4, 4)).sum() == 1  # clipped to the image


def test_nanmean() -> None:
    assert M.nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(M.nanmean([]))

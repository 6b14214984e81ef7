"""One-pass-evaluation metrics (pure numpy).

Conventions (chosen to match the OTB / GOT-10k / pysot toolkits so numbers are comparable with
published ones):

* Boxes are ``(x, y, w, h)`` in continuous 0-based pixels; IoU is the continuous-area IoU with no
  ``+1`` pixel terms (as OTB's ``calcRectInt``).
* **Scored frames**: every frame except the first (the tracker is given the first-frame GT, so
  scoring it only inflates numbers, as in GOT-10k) and except frames whose GT is absent (NaN, or
  a non-positive size). A missing or invalid *prediction* on a scored frame counts as a failure
  (IoU 0, infinite centre error) rather than being skipped, so a crashing tracker cannot look good.
* **Success AUC**: the success rate at threshold ``t`` is the fraction of scored frames with
  ``IoU > t`` (strictly greater), for the 21 thresholds ``0, 0.05, ..., 1.0``; the AUC is their
  mean. Because ``IoU > 1.0`` never holds, a perfect tracker scores ``20/21 ≈ 0.952`` exactly as in
  the OTB, GOT-10k and pysot toolkits; :data:`PERFECT_AUC` holds that ceiling.
* **Precision@20**: fraction of scored frames whose centre error (Euclidean distance between box
  centres, pixels) is ``<= 20``. The precision curve uses thresholds ``0..50`` px.
* **Normalized precision** (TrackingNet / LaSOT): the centre offset is divided per axis by the GT
  width and height, ``d = ||((cx_p - cx_g) / w_g, (cy_p - cy_g) / h_g)||``; the precision at ``t``
  is the fraction with ``d <= t``, for 51 thresholds ``0, 0.01, ..., 0.5``; the reported value is
  their mean (AUC). The value at ``t = 0.2`` is reported alongside.
* **Mask J** (DAVIS region similarity): per-frame IoU of binary masks, 1 when both are empty (the
  tracker correctly reports nothing); mean over the scored frames that have a GT mask.
* Means over sequences are unweighted (each sequence counts once, as in OTB's success plots).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from meta_tracker_ros.core.geometry import iou_xywh

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_PX = 20.0
NORM_PRECISION_AT = 0.2
PERFECT_AUC = float(np.mean(IOU_THRESHOLDS < 1.0))  # 20/21: see the module docstring


def valid_gt(gt: np.ndarray) -> np.ndarray:
    """Bool per frame: GT is present (finite, positive width and height)."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    return np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)


def scored_frames(gt: np.ndarray, skip_first: bool = True) -> np.ndarray:
    """Bool per frame: the frame is scored (GT present and not the first frame)."""
    mask = valid_gt(gt)
    if skip_first and mask.size:
        mask[0] = False
    return mask


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two ``(N, 4)`` xywh arrays; 0 where either box is invalid or empty.

    Each row is :func:`~meta_tracker_ros.core.geometry.iou_xywh`, the tracker's own IoU.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    ok = valid_gt(p) & valid_gt(g)
    rows = zip(p.tolist(), g.tolist(), ok.tolist(), strict=True)
    return np.array([iou_xywh(a, b) if v else 0.0 for a, b, v in rows], dtype=np.float64)


def center_error(pred: np.ndarray, gt: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Row-wise centre distance in pixels (or normalised by GT size); inf for bad predictions."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    dx = (p[:, 0] + p[:, 2] / 2.0) - (g[:, 0] + g[:, 2] / 2.0)
    dy = (p[:, 1] + p[:, 3] / 2.0) - (g[:, 1] + g[:, 3] / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalized:
            dx, dy = dx / g[:, 2], dy / g[:, 3]
        err = np.hypot(dx, dy)
    return np.where(valid_gt(p) & np.isfinite(err), err, np.inf)


def success_curve(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """Fraction of ``ious`` strictly above each threshold (zeros for an empty input)."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        return np.zeros(len(thresholds))
    return np.mean(ious[:, None] > thresholds[None, :], axis=0)


def precision_curve(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``errors`` at or below each threshold (zeros for an empty input)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return np.zeros(len(thresholds))
    return np.mean(errors[:, None] <= thresholds[None, :], axis=0)


def mask_iou(pred: np.ndarray | None, gt: np.ndarray) -> float:
    """IoU of two binary masks; 1.0 when both are empty, 0.0 for a missing prediction."""
    g = np.asarray(gt) > 0
    if pred is None:
        return 1.0 if not g.any() else 0.0
    p = np.asarray(pred) > 0
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: prediction {p.shape}, ground truth {g.shape}")
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & g) / union)


def box_to_mask(box: Iterable[float], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an xywh box into an HxW bool mask (pixels whose centre lies inside the box).

    Used to score box-only trackers on mask sequences ("J of the box"), the natural baseline for
    a segmentation output.
    """
    x, y, w, h = (float(v) for v in box)
    out = np.zeros(shape, dtype=bool)
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
        return out
    x0, y0 = int(np.ceil(x - 0.5)), int(np.ceil(y - 0.5))
    x1, y1 = int(np.ceil(x + w - 0.5)), int(np.ceil(y + h - 0.5))
    out[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return out


def sequence_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float | int]:
    """Box metrics of one sequence (see the module docstring).

    Returns ``auc``, ``precision20``, ``norm_precision``, ``norm_precision_at_0.2`` and
    ``scored_frames``; NaN metrics when no frame is scored (e.g. a one-frame sequence).
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    use = scored_frames(gt)
    curves = sequence_curves(pred[use], gt[use])
    n = int(use.sum())
    nan = float("nan")
    at = int(np.argmin(np.abs(NORM_PRECISION_THRESHOLDS - NORM_PRECISION_AT)))
    px = int(np.argmin(np.abs(PRECISION_THRESHOLDS - PRECISION_PX)))
    return {
        "auc": float(curves["success"].mean()) if n else nan,
        "precision20": float(curves["precision"][px]) if n else nan,
        "norm_precision": float(curves["norm_precision"].mean()) if n else nan,
        "norm_precision_at_0.2": float(curves["norm_precision"][at]) if n else nan,
        "scored_frames": n,
    }


def sequence_curves(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Success, precision and normalized-precision curves over already-selected frames."""
    return {
        "success": success_curve(box_iou(pred, gt)),
        "precision": precision_curve(center_error(pred, gt), PRECISION_THRESHOLDS),
        "norm_precision": precision_curve(
            center_error(pred, gt, normalized=True), NORM_PRECISION_THRESHOLDS
        ),
    }


def scored_curves(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`sequence_curves` over the scored frames of a whole sequence (for plots)."""
    use = scored_frames(np.asarray(gt, dtype=np.float64).reshape(-1, 4))
    return sequence_curves(np.asarray(pred).reshape(-1, 4)[use], np.asarray(gt)[use])


def nanmean(values: Iterable[float]) -> float:
    """Mean ignoring NaN; NaN (not a warning) when nothing is left."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")

"""Tests for the training-free mask head: synthetic segmentation, geometry, and a DAVIS J floor."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from meta_tracker_ros.core.config import MaskConfig
from meta_tracker_ros.core.geometry import Crop, iou_xywh
from meta_tracker_ros.core.heads.mask_head import MaskEstimate, MaskHead
from meta_tracker_ros.evaluation.metrics import mask_iou

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CPU = torch.device("cpu")


def _scene(seed: int, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A textured reddish plus-shaped blob on a textured greenish background.

    A plus fills only 5/9 of its bounding box, so filling the box scores IoU ~0.56 and a mask
    has to follow the shape to do much better.
    """
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    bg = np.empty((h, w, 3), np.float32)
    bg[..., 0] = 60 + 40 * rng.random((h, w))  # B
    bg[..., 1] = 120 + 60 * rng.random((h, w))  # G
    bg[..., 2] = 50 + 40 * rng.random((h, w))  # R
    fg = np.empty_like(bg)
    fg[..., 0] = 40 + 40 * rng.random((h, w))
    fg[..., 1] = 40 + 40 * rng.random((h, w))
    fg[..., 2] = 170 + 60 * rng.random((h, w))
    x0, y0, s = 110 + shift[0], 60 + shift[1], 120
    mask = np.zeros((h, w), np.uint8)
    t = s // 3
    mask[y0 + t : y0 + 2 * t, x0 : x0 + s] = 255
    mask[y0 : y0 + s, x0 + t : x0 + 2 * t] = 255
    img = np.where(mask[..., None] > 0, fg, bg)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8), mask, (float(x0), float(y0), float(s), float(s))


def _box_fill(box: tuple, shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    x, y, w, h = (round(float(v)) for v in box)
    m[y : y + h, x : x + w] = 255
    return m


def test_synthetic_blob_beats_box_fill() -> None:
    head = MaskHead(MaskConfig(), CPU)
    img0, _, box0 = _scene(0)
    head.initialize(img0, box0, {}, None)
    img1, gt1, box1 = _scene(1, shift=(12, -8))
    est = head.segment(img1, box1, {}, None)
    mask = est.full_mask((img1.shape[1], img1.shape[0]))
    j_mask = mask_iou(mask, gt1)
    j_box = mask_iou(_box_fill(box1, gt1.shape), gt1)
    assert j_box < 0.6
    assert j_mask > j_box + 0.25, (j_mask, j_box)
    assert 0.0 < est.confidence <= 1.0
    head.update(img1, est, box1)
    est2 = head.segment(img1, box1, {}, None)
    assert mask_iou(est2.full_mask((img1.shape[1], img1.shape[0])), gt1) > j_box + 0.25


def test_full_mask_pastes_roi_and_clips_to_image() -> None:
    prob = np.zeros((10, 20), np.float32)
    prob[2:5, 3:9] = 0.9
    est = MaskEstimate((-5, 4, 15, 14), prob, 0.8)
    full = est.full_mask((12, 30))  # width 12, height 30
    assert full.shape == (30, 12) and full.dtype == np.uint8
    ys, xs = np.nonzero(full)
    assert (ys.min(), ys.max()) == (6, 8)
    assert (xs.min(), xs.max()) == (0, 3)  # columns 3..8 of the roi start at x = -2
    assert set(np.unique(full)) == {0, 255}
    assert est.box() == (-2.0, 6.0, 6.0, 3.0)


def _upsampled(est: MaskEstimate) -> MaskEstimate:
    """The same estimate at image resolution over its roi (how the head stored it until now)."""
    x0, y0, x1, y1 = est.roi
    s, (ox, oy) = est.scale, est.origin
    m = np.array([[s, 0.0, (x0 + 0.5 - ox) * s - 0.5], [0.0, s, (y0 + 0.5 - oy) * s - 0.5]])
    full = cv2.warpAffine(
        est.prob, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    return MaskEstimate(est.roi, full, est.confidence)


@pytest.mark.parametrize(
    ("origin", "s", "size", "tol"),
    [
        ((103.3, 57.8), 0.2, (320, 240), 1.0),
        ((-41.6, -12.2), 0.2, (320, 240), 1.0),
        ((-141.6, 52.2), 0.05, (1280, 720), 2.0),  # roi 1000 px: box on a 512 px grid
    ],
    ids=["inside", "at-border", "large"],
)
def test_working_resolution_estimate_matches_its_upsampled_form(origin, s, size, tol) -> None:
    """Mask and box of a coarse soft mask equal those of the mask upsampled to image pixels."""
    v, u = np.mgrid[0:40, 0:50].astype(np.float32)
    blob = np.exp(-(((u - 22.3) / 9.0) ** 2 + ((v - 17.6) / 6.5) ** 2))
    blob += 0.8 * np.exp(-(((u - 36.0) / 3.0) ** 2 + ((v - 30.0) / 3.0) ** 2))  # joined lobe
    ox, oy = origin
    roi = (
        int(np.floor(ox)),
        int(np.floor(oy)),
        int(np.ceil(ox + 50 / s)),
        int(np.ceil(oy + 40 / s)),
    )
    est = MaskEstimate(roi, blob.astype(np.float32), 0.9, origin=origin, scale=s)
    ref = _upsampled(est)
    new, old = est.full_mask(size), ref.full_mask(size)
    assert new.any()
    assert np.count_nonzero(new != old) <= 0.001 * np.count_nonzero(old)
    box, ref_box = est.box(), ref.box()
    assert box is not None and ref_box is not None
    assert np.abs(np.subtract(box, ref_box)).max() <= tol, (box, ref_box)


def test_estimate_stays_at_working_resolution_for_a_large_target() -> None:
    """A 900 px target in a 1080p frame: the head's estimate is its working window, not 3 Mpx."""
    img, _, _ = _scene(4)
    big = cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    box = (110 * 6.0, 60 * 4.5, 120 * 6.0, 120 * 4.5)  # the plus, scaled with the frame
    head = MaskHead(MaskConfig(), CPU)
    head.initialize(big, box, {}, None)
    est = head.segment(big, box, {}, None)
    work = MaskConfig().work_size
    assert max(est.prob.shape) <= work < min(est.roi[2] - est.roi[0], est.roi[3] - est.roi[1])
    mbox = est.box()
    assert mbox is not None and iou_xywh(mbox, box) > 0.7, mbox
    full = est.full_mask((1920, 1080))
    assert full.shape == (1080, 1920) and iou_xywh(_mask_box(full), mbox) > 0.95
    head.update(big, est, box)  # the update reads the estimate on its own window


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() + 1 - xs.min()),
        float(ys.max() + 1 - ys.min()),
    )


def test_box_is_none_for_empty_or_tiny_mask() -> None:
    assert MaskEstimate((0, 0, 10, 10), np.zeros((10, 10), np.float32), 0.0).box() is None
    tiny = np.zeros((10, 10), np.float32)
    tiny[4, 4] = 1.0
    assert MaskEstimate((0, 0, 10, 10), tiny, 0.5).box() is None


def test_box_keeps_largest_component() -> None:
    prob = np.zeros((50, 50), np.float32)
    prob[10:30, 10:30] = 1.0
    prob[45:47, 45:47] = 1.0  # stray blob, much smaller than a fifth of the target
    assert MaskEstimate((100, 200, 150, 250), prob, 1.0).box() == (110.0, 210.0, 20.0, 20.0)


def test_init_mask_is_used_as_label() -> None:
    img0, gt0, box0 = _scene(2)
    img1, gt1, box1 = _scene(3, shift=(-10, 6))
    head = MaskHead(MaskConfig(), CPU)
    head.initialize(img0, box0, {}, None, init_mask=gt0)
    est = head.segment(img1, box1, {}, None)
    assert mask_iou(est.full_mask((img1.shape[1], img1.shape[0])), gt1) > 0.8
    # Box much too large (half background) and shape memory off (it is relative to the initial
    # box): the target colours can only come from the user mask.
    big = (box0[0] - 40, box0[1] - 30, box0[2] + 80, box0[3] + 60)
    head = MaskHead(MaskConfig(shape_weight=0.0), CPU)
    head.initialize(img0, big, {}, None, init_mask=gt0)
    est = head.segment(img1, box1, {}, None)
    assert mask_iou(est.full_mask((img1.shape[1], img1.shape[0])), gt1) > 0.8


def test_segment_before_initialize_raises() -> None:
    img, _, box = _scene(4)
    with pytest.raises(RuntimeError):
        MaskHead(MaskConfig(), CPU).segment(img, box, {}, None)


def test_target_at_image_border() -> None:
    """Windows leaving the frame must not crash and must not paint outside the image."""
    img, _, _ = _scene(5)
    head = MaskHead(MaskConfig(), CPU)
    box = (-30.0, -20.0, 80.0, 70.0)
    head.initialize(img, box, {}, None)
    est = head.segment(img, box, {}, None)
    full = est.full_mask((img.shape[1], img.shape[0]))
    assert full.shape == img.shape[:2]
    assert est.prob.dtype == np.float32
    h, w = est.prob.shape  # working resolution; the roi is its extent in image pixels
    assert abs((est.roi[2] - est.roi[0]) - w / est.scale) <= 1.0
    assert abs((est.roi[3] - est.roi[1]) - h / est.scale) <= 1.0


@pytest.mark.data
def test_davis_frames_j_floor() -> None:
    seq = DATA / "masks" / "davis16_dog"
    if not seq.is_dir():
        pytest.skip(f"DAVIS data not found at {seq} (needs ../shared/data next to the repo)")
    boxes = np.loadtxt(seq / "groundtruth_from_mask.txt", delimiter=",")
    head = MaskHead(MaskConfig(), CPU)
    head.initialize(cv2.imread(str(seq / "img" / "00000.jpg")), tuple(boxes[0]), {}, None)
    js, jb = [], []
    for i in (1, 5, 10):
        frame = cv2.imread(str(seq / "img" / f"{i:05d}.jpg"))
        gt = cv2.imread(str(seq / "ann" / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
        est = head.segment(frame, tuple(boxes[i]), {}, None)
        js.append(mask_iou(est.full_mask((frame.shape[1], frame.shape[0])), gt))
        jb.append(mask_iou(_box_fill(tuple(boxes[i]), gt.shape), gt))
        head.update(frame, est, tuple(boxes[i]))
    assert np.mean(js) > 0.65, js
    assert np.mean(js) > np.mean(jb) + 0.15, (js, jb)


# ---------------------------------------------------------------------------- feature matching
def _region_features(crop: Crop, box: tuple, split: float) -> dict[str, torch.Tensor]:
    """Stride-4 features for ``crop``: code A outside the box and left of ``split``, B right.

    The in-box part left of ``split`` looks exactly like the background (as the water or wall
    that a box around a real target always holds), the rest of the box is the target.
    """
    n = crop.out_size // 4
    cells = (np.arange(n) + 0.5) * 4 - 0.5  # cell centres in crop pixels
    xs = crop.to_image_point(cells, cells)[0]
    ys = crop.to_image_point(cells, cells)[1]
    x, y, w, h = box
    in_y = (ys >= y) & (ys < y + h)
    in_x = (xs >= x + split * w) & (xs < x + w)
    target = in_y[:, None] & in_x[None, :]
    feat = np.zeros((1, 8, n, n), np.float32)
    feat[0, 0][~target] = 1.0  # code A
    feat[0, 1][target] = 1.0  # code B
    return {"s4": torch.from_numpy(feat)}


def test_feature_init_drops_in_box_cells_that_match_outside() -> None:
    cfg = MaskConfig(feature_weight=15.0, feature_levels=["s4"], feature_fg_quantile=0.5)
    head = MaskHead(cfg, CPU)
    img, _, box = _scene(0)
    crop = Crop(box[0] + box[2] / 2, box[1] + box[3] / 2, 4.5 * box[2], 256)
    feats = _region_features(crop, box, split=0.4)
    head.initialize(img, box, feats, crop)
    assert head._feat_fg is not None and head._feat_bg is not None
    # Every stored target hypercolumn is (almost purely, bilinear sampling blends the cells on a
    # region edge) code B: the background-like left of the box is gone.
    assert float(head._feat_fg[:, 1].min()) > 0.9
    assert float(head._feat_bg[:, 0].min()) > 0.9
    win = head._window(img, box)
    logit = head._feature_logit(*head._hypercolumns(feats, crop, win), win)
    bx, by, bw, bh = win.box
    row = int(by + bh / 2)
    assert logit[row, int(bx + 0.8 * bw)] > 10.0  # target part: full weight towards fg
    assert logit[row, int(bx + 0.15 * bw)] < -10.0  # background part inside the box
    assert logit[row, int(bx - 0.3 * bw)] < -10.0  # outside the box


def test_features_off_by_weight_or_without_crop() -> None:
    img, _, box = _scene(0)
    crop = Crop(box[0] + box[2] / 2, box[1] + box[3] / 2, 4.5 * box[2], 256)
    feats = _region_features(crop, box, split=0.4)
    off = MaskHead(MaskConfig(feature_weight=0.0), CPU)
    off.initialize(img, box, feats, crop)
    assert off._feat_fg is None
    no_crop = MaskHead(MaskConfig(feature_weight=15.0, feature_levels=["s4"]), CPU)
    no_crop.initialize(img, box, feats, None)
    assert no_crop._feat_fg is None
    est = no_crop.segment(img, box, feats, None)  # colour-only path still segments
    assert est.prob.max() > 0.5

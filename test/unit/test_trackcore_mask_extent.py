"""The mask head's own extent (mask_fusion.extent_*): follows a confident mask, within bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from meta_tracker_ros.core import TrackerConfig, create_tracker
from meta_tracker_ros.core.target import BoxConvention, TargetTrack
from meta_tracker_ros.evaluation.datasets import load_sequences
from meta_tracker_ros.evaluation.metrics import mask_iou

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _track(size=(40.0, 20.0), **overrides) -> TargetTrack:
    cfg = TrackerConfig().with_overrides(overrides)
    t = TargetTrack(cfg, torch.device("cpu"))
    t.center, t.size = (100.0, 100.0), size
    t._mask_size, t._mask_offset = size, (0.0, 0.0)
    t.image_size = (640, 480)
    return t


def test_extent_grows_by_the_clipped_damped_factor() -> None:
    t = _track(**{"mask_fusion.extent_weight": 0.5, "mask_fusion.max_scale_change": 1.2})
    t._follow_mask_extent((40.0, 80.0, 120.0, 40.0))  # 3x wider, 2x taller, same centre
    step = 1.2**0.5  # the ratio is clipped to 1.2 per frame, then damped by the weight
    assert t._mask_size == pytest.approx((40.0 * step, 20.0 * step))
    assert t._mask_offset == pytest.approx((0.0, 0.0))


def test_extent_stays_within_ratio_of_the_classifier_box() -> None:
    t = _track(**{"mask_fusion.extent_weight": 1.0, "mask_fusion.extent_max_ratio": 2.0})
    for _ in range(30):
        t._follow_mask_extent((0.0, 0.0, 400.0, 300.0))  # a mask far larger than the target
    x, y, w, h = t._mask_extent_box()
    assert (w, h) == pytest.approx((80.0, 40.0))
    # The centre follows the mask's centre only up to half a box side from the classifier's.
    assert (x + w / 2, y + h / 2) == pytest.approx((100.0 + 0.5 * 40.0, 100.0 + 0.5 * 20.0))
    for _ in range(30):
        t._follow_mask_extent((99.0, 99.5, 2.0, 1.0))  # ... and a far smaller one
    assert t._mask_extent_box()[2:] == pytest.approx((20.0, 10.0))


@pytest.mark.data
def test_feature_term_and_extent_improve_davis_masks() -> None:
    """Training-free head: features + extent vs. colour only on the classifier box.

    Tracker boxes, not GT boxes. The learned decoder is off in both: it reads the ridge map,
    which does the feature term's job as well, so with it on this would not test the term.
    """
    if not (DATA / "masks" / "davis16_blackswan").is_dir():
        pytest.skip(f"DAVIS data not found under {DATA} (needs ../shared/data next to the repo)")
    seq = load_sequences(DATA, names=["davis16_blackswan"])[1][0]

    def mean_j(overrides: dict) -> float:
        # The box refiner off in both: this compares mask paths on the classifier's own boxes.
        base = {"box_refine.enabled": False, "mask.learned": False}
        cfg = TrackerConfig().with_overrides({**base, **overrides})
        tracker = create_tracker(cfg)
        tracker.initialize(seq.frame(0), tuple(float(v) for v in seq.boxes[0]))
        js = [mask_iou(tracker.track(seq.frame(i)).mask > 0, seq.mask(i)) for i in range(1, 20)]
        return float(np.mean(js))

    full = mean_j({})
    colour_only = mean_j({"mask.feature_weight": 0.0, "mask_fusion.extent_weight": 0.0})
    assert full > 0.65, full  # 0.709 on 2026-12-03
    assert full > colour_only + 0.1, (full, colour_only)


@pytest.mark.data
def test_center_weight_alone_moves_the_box_centre_to_the_mask() -> None:
    """``mask_fusion.center_weight`` acts without ``box_weight``: the centre moves, the size not."""
    if not (DATA / "masks" / "davis16_blackswan").is_dir():
        pytest.skip(f"DAVIS data not found under {DATA} (needs ../shared/data next to the repo)")
    seq = load_sequences(DATA, names=["davis16_blackswan"])[1][0]
    gates = {"mask_fusion.box_min_confidence": 0.0, "mask_fusion.box_min_iou": 0.0}

    def first_result(center_weight: float):
        weights = {"mask_fusion.center_weight": center_weight, "mask_fusion.box_weight": 0.0}
        cfg = TrackerConfig().with_overrides({**weights, **gates})
        assert cfg.mask_fusion.moves_box == (center_weight > 0)
        tracker = create_tracker(cfg)
        tracker.initialize(seq.frame(0), tuple(float(v) for v in seq.boxes[0]))
        return tracker.track(seq.frame(1))

    still, half, moved = first_result(0.0), first_result(0.5), first_result(1.0)

    def centre(box):
        return np.array([box[0] + box[2] / 2.0, box[1] + box[3] / 2.0])

    # Up to the mask step the three runs are identical, so the mask alone makes the difference.
    assert moved.box[2:] == pytest.approx(still.box[2:])  # box_weight 0: the size is the filter's
    assert np.hypot(*(centre(moved.box) - centre(still.box))) > 1.0
    expected = (centre(still.box) + centre(moved.box)) / 2.0  # centres blend linearly
    assert centre(half.box) == pytest.approx(expected, abs=1e-3)


def test_box_convention_maps_the_first_mask_box_onto_the_users_box() -> None:
    """The first frame's relation, applied to the first mask box, gives the user's box back."""
    user, first_mask = (100.0, 50.0, 40.0, 80.0), (90.0, 60.0, 50.0, 60.0)  # 5 px left of it
    conv = BoxConvention.fit(user, first_mask)
    assert conv.apply(first_mask) == pytest.approx(user)
    # Later masks keep the relation: a mask twice the size gives twice the user's box, offset by
    # the same share of the mask's width (0.1: 5 of 50 px, now 10 of 100 px).
    x, y, w, h = conv.apply((195.0, 160.0, 100.0, 120.0))  # centre (245, 220)
    assert (w, h) == pytest.approx((80.0, 160.0))
    assert (x + w / 2, y + h / 2) == pytest.approx((255.0, 220.0))
    # A first mask far off the box (failed segmentation) cannot make later boxes run away.
    wild = BoxConvention.fit(user, (0.0, 0.0, 400.0, 10.0))
    assert (wild.rw, wild.rh) == pytest.approx((1 / 1.5, 1.5))
    assert BoxConvention().apply(first_mask) == first_mask  # identity until fitted


@pytest.mark.data
def test_box_from_mask_needs_the_learned_decoder_and_a_large_enough_target() -> None:
    """With the weights set, the decoder's mask moves the box; the training-free head or a target
    under ``box_min_side`` leaves the classifier's box exactly as with the weights at 0."""
    if not (DATA / "masks" / "davis16_dog").is_dir():
        pytest.skip(f"DAVIS data not found under {DATA} (needs ../shared/data next to the repo)")
    seq = load_sequences(DATA, names=["davis16_dog"])[1][0]
    off = {"mask_fusion.box_weight": 0.0, "mask_fusion.center_weight": 0.0}
    on = {"mask_fusion.box_weight": 0.5, "mask_fusion.center_weight": 0.5}

    def boxes(overrides: dict) -> np.ndarray:
        tracker = create_tracker(TrackerConfig().with_overrides(overrides))
        tracker.initialize(seq.frame(0), tuple(float(v) for v in seq.boxes[0]))
        return np.array([tracker.track(seq.frame(i)).box for i in range(1, 12)])

    assert not TrackerConfig().mask_fusion.moves_box  # off by default
    classifier_only = boxes(off)
    assert np.abs(boxes(on) - classifier_only).max() > 1.0  # the decoder's masks move it
    huge = {**on, "mask_fusion.box_min_side": 1e4}
    np.testing.assert_allclose(boxes(huge), classifier_only, atol=1e-6)
    free = {"mask.learned": False}
    np.testing.assert_allclose(boxes({**free, **on}), boxes({**free, **off}), atol=1e-6)


def test_moved_estimate_follows_the_box_shift_and_scale() -> None:
    """Between segmentations (mask.interval) the last mask moves and scales with the box."""
    from meta_tracker_ros.core.heads.mask_head import MaskEstimate
    from meta_tracker_ros.core.target import moved_estimate

    prob = np.zeros((40, 40), np.float32)
    prob[10:30, 15:25] = 1.0  # a 10x20 working-pixel target in the middle of the window
    est = MaskEstimate((80, 80, 120, 120), prob, 0.9, origin=(80.0, 80.0), scale=1.0)
    old = (90.0, 90.0, 20.0, 20.0)
    assert est.box() == (95.0, 90.0, 10.0, 20.0)
    shifted = moved_estimate(est, old, (97.0, 85.0, 20.0, 20.0))
    full, full_shifted = est.full_mask((320, 240)), shifted.full_mask((320, 240))
    assert np.array_equal(np.roll(full, (-5, 7), axis=(0, 1)), full_shifted)
    grown = moved_estimate(est, old, (80.0, 80.0, 40.0, 40.0))  # same centre, twice the size
    assert grown.box() == pytest.approx((90.0, 80.0, 20.0, 40.0), abs=0.5)


@pytest.mark.data
def test_mask_interval_segments_every_other_frame_and_moves_the_mask_between() -> None:
    if not (DATA / "masks" / "davis16_blackswan").is_dir():
        pytest.skip(f"DAVIS data not found under {DATA} (needs ../shared/data next to the repo)")
    seq = load_sequences(DATA, names=["davis16_blackswan"])[1][0]

    def run(interval: int) -> tuple[int, list[float]]:
        tracker = create_tracker(TrackerConfig().with_overrides({"mask.interval": interval}))
        tracker.initialize(seq.frame(0), tuple(float(v) for v in seq.boxes[0]))
        target = next(iter(tracker._multi._targets.values()))  # the one target
        calls = []
        segment = target.mask_head.segment
        target.mask_head.segment = lambda *a, **k: calls.append(1) or segment(*a, **k)
        js = [mask_iou(tracker.track(seq.frame(i)).mask > 0, seq.mask(i)) for i in range(1, 13)]
        return len(calls), js

    every_calls, every = run(1)
    half_calls, half = run(2)
    # Frames 2, 4, ..., 12 (frame + slot even), and frame 1: there is no mask to move yet.
    assert every_calls == 12 and half_calls == 1 + 6
    assert min(half) > 0.5, half  # moved masks still cover the swan
    assert np.mean(half) > np.mean(every) - 0.1, (np.mean(half), np.mean(every))

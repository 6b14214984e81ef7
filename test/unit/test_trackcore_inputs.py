"""Bad inputs to the tracker raise clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from meta_tracker_ros.core import TrackerConfig, create_tracker


@pytest.fixture(scope="module")
def tracker():
    cfg = TrackerConfig().with_overrides({"mask.enabled": False, "classifier.augment": False})
    return create_tracker(cfg)


def _frame(h=120, w=160):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_track_before_initialize_raises():
    cfg = TrackerConfig().with_overrides({"mask.enabled": False})
    with pytest.raises(RuntimeError, match="before initialize"):
        create_tracker(cfg).track(_frame())


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10, 10, 0, 20), "positive width and height"),
        ((10, 10, -5, 20), "positive width and height"),
        ((10, 10, 0.5, 20), "degenerate"),
        ((float("nan"), 10, 20, 20), "non-finite"),
        ((10, 10, float("inf"), 20), "non-finite"),
        ((500, 10, 20, 20), "does not overlap"),
        ((-50, -50, 20, 20), "does not overlap"),
        ((1, 2, 3), "four values"),
        ("abcd", "four numbers"),
    ],
)
def test_bad_boxes(tracker, box, message):
    with pytest.raises(ValueError, match=message):
        tracker.initialize(_frame(), box)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((120, 160, 3), np.float32), "uint8"),
        (np.zeros((120, 160), np.uint8), "HxWx3"),
        (np.zeros((120, 160, 4), np.uint8), "HxWx3"),
        ([[0, 0, 0]], "numpy array"),
        (np.zeros((1, 1, 3), np.uint8), "too small"),
    ],
)
def test_bad_frames(tracker, frame, message):
    with pytest.raises(ValueError, match=message):
        tracker.initialize(frame, (10, 10, 20, 20))
    tracker.initialize(_frame(), (10, 10, 20, 20))
    with pytest.raises(ValueError, match=message):
        tracker.track(frame)


def test_box_partly_outside_is_accepted(tracker):
    tracker.initialize(_frame(), (-5, -5, 30, 30))
    result = tracker.track(_frame())
    assert 0.0 <= result.score <= 1.0
    assert len(result.box) == 4

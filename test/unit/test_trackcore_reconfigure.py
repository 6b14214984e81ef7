"""MultiTracker.reconfigure: which config fields rebuild the tracker; what happens to targets."""

from __future__ import annotations

import numpy as np
import pytest

from meta_tracker_ros.core import TrackerConfig
from meta_tracker_ros.core.multi import (
    STRUCTURAL_FIELDS,
    MultiTracker,
    is_structural,
    structural_changes,
)
from meta_tracker_ros.core.types import TrackState


def _config(**overrides) -> TrackerConfig:
    return TrackerConfig().with_overrides({"mask.enabled": False, **overrides})


def _frame(seed: int = 0, width: int = 160, height: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = (rng.random((height, width, 3)) * 120 + 60).astype(np.uint8)
    frame[40:80, 50:90] = (30, 40, 220)  # a red square target
    return frame


@pytest.fixture(scope="module")
def base() -> TrackerConfig:
    return _config()


def test_structural_fields_are_the_build_time_ones():
    # Every entry the node's list held before the move, plus any feature_levels.
    for name in (
        "mask.enabled",
        "mask.feature_weight",
        "scale.enabled",
        "search.crop_size",
        "classifier.learned",
        "classifier.weights_path",
        "classifier.proj_dim",
        "classifier.feature_levels",
        "mask.feature_levels",
        "scale.feature_levels",
    ):
        assert is_structural(name), name
    assert set(TrackerConfig().flat()) >= STRUCTURAL_FIELDS, "a structural field does not exist"
    for name in ("memory.size", "localization.lost_after", "search.search_area"):
        assert not is_structural(name), name


def test_structural_changes_lists_only_changed_structural_fields(base):
    assert structural_changes(base, base) == []
    new = base.with_overrides({"search.crop_size": 224, "memory.size": 10})
    assert structural_changes(base, new) == ["search.crop_size"]


def test_parameters_that_change_backbone_levels_are_structural():
    """A live change that alters which backbone levels are computed must rebuild the tracker."""
    # The learned mask decoder reads s4 whatever feature_weight says: test without it.
    cfg = TrackerConfig().with_overrides({"scale.enabled": False, "mask.learned": False})
    levels = MultiTracker(cfg).levels
    for name, value in (("mask.feature_weight", 0.0), ("mask.enabled", False)):
        changed = MultiTracker(cfg.with_overrides({name: value})).levels
        assert changed != levels, f"{name}={value} was expected to change the levels"
        assert is_structural(name), f"{name} changes backbone levels but is not structural"


def test_non_structural_change_keeps_the_tracker_and_targets(base):
    tracker = MultiTracker(base)
    frame = _frame()
    tracker.add("a", frame, (50, 40, 40, 40))
    backbone = tracker.backbone
    new = base.with_overrides({"localization.lost_after": 7})
    assert tracker.reconfigure(new, frame) == {}
    assert tracker.backbone is backbone and tracker.ids == ["a"]
    assert tracker.config.localization.lost_after == 7


def test_structural_change_rebuilds_and_reinitialises_targets(base):
    tracker = MultiTracker(base)
    frame = _frame()
    tracker.add("a", frame, (50, 40, 40, 40))
    tracker.add("b", frame, (10, 10, 30, 30))
    for i in range(2):
        tracker.track(_frame(i + 1))
    old_box = tracker._targets["a"].box()
    new = base.with_overrides({"search.crop_size": 224})
    dropped = tracker.reconfigure(new, frame)
    assert dropped == {}
    assert tracker.ids == ["a", "b"]
    assert tracker.config.search.crop_size == 224
    assert tracker._targets["a"].cfg.search.crop_size == 224
    assert tracker._targets["a"].box() == pytest.approx(old_box)
    results = tracker.track(_frame(5))  # the rebuilt tracker tracks
    assert set(results) == {"a", "b"}
    assert results["a"].state != TrackState.LOST


def test_structural_change_drops_lost_targets_and_all_without_a_frame(base):
    tracker = MultiTracker(base)
    frame = _frame()
    tracker.add("a", frame, (50, 40, 40, 40))
    tracker.add("b", frame, (10, 10, 30, 30))
    tracker._targets["b"].states.state = TrackState.LOST
    dropped = tracker.reconfigure(base.with_overrides({"scale.enabled": False}), frame)
    assert set(dropped) == {"b"} and tracker.ids == ["a"]
    assert tracker.config.scale.enabled is False
    dropped = tracker.reconfigure(base, None)
    assert set(dropped) == {"a"} and tracker.ids == []


def test_failed_rebuild_leaves_the_tracker_unchanged(base):
    tracker = MultiTracker(base)
    frame = _frame()
    tracker.add("a", frame, (50, 40, 40, 40))
    bad = base.with_overrides({"classifier.feature_levels": ["nope"]})
    with pytest.raises(ValueError, match="unknown feature level"):
        tracker.reconfigure(bad, frame)
    assert tracker.ids == ["a"] and tracker.config == base

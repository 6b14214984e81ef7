"""Tracking core (no ROS): online-adapted classifier on a frozen EfficientNet-Lite0."""

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.multi import MultiTracker, create_multi_tracker
from meta_tracker_ros.core.tracker import Tracker, create_tracker
from meta_tracker_ros.core.types import TrackResult, TrackState

__all__ = [
    "MultiTracker",
    "TrackResult",
    "TrackState",
    "Tracker",
    "TrackerConfig",
    "create_multi_tracker",
    "create_tracker",
]

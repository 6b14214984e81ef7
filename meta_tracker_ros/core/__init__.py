"""Tracking core (no ROS): online-adapted classifier on a frozen EfficientNet-Lite0.

The trackers are imported on first use (PEP 562): a process that only needs the configuration
and result types (the ROS node, whose tracker runs in a child process) does not load torch,
which is most of a Python tracker's memory (about 300 MB resident here) and a second of start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.types import TrackResult, TrackState

_LAZY = {
    "MultiTracker": "multi",
    "create_multi_tracker": "multi",
    "Tracker": "tracker",
    "create_tracker": "tracker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "MultiTracker",
    "TrackResult",
    "TrackState",
    "Tracker",
    "TrackerConfig",
    "create_multi_tracker",
    "create_tracker",
]

"""Single-target tracker: the multi-target machinery with one target (one code path).

``create_tracker(config)`` -> ``initialize(frame, box, mask=None)`` -> ``track(frame)`` returning
a :class:`~meta_tracker_ros.core.types.TrackResult`.
"""

from __future__ import annotations

import numpy as np

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.multi import MultiTracker
from meta_tracker_ros.core.types import Box, TrackResult

_ID = 0


class Tracker:
    """Track one target. Frames are HxWx3 uint8 BGR; boxes (x, y, w, h), 0-based pixels."""

    def __init__(self, config: TrackerConfig | str | None = None) -> None:
        self._multi = MultiTracker(config)
        self.config = self._multi.config

    @property
    def initialized(self) -> bool:
        return _ID in self._multi.ids

    def initialize(self, frame: np.ndarray, box: Box, mask: np.ndarray | None = None) -> None:
        """Start (or restart) tracking ``box``; ValueError for a bad frame, box or mask."""
        self._multi.add(_ID, frame, box, mask)

    def track(self, frame: np.ndarray) -> TrackResult:
        """Locate the target in the next frame; RuntimeError before :meth:`initialize`."""
        if not self.initialized:
            raise RuntimeError("track() called before initialize(frame, box)")
        return self._multi.track(frame)[_ID]


def create_tracker(config: TrackerConfig | str | None = None) -> Tracker:
    """A single-target tracker from a TrackerConfig, a YAML path, or None (shipped defaults)."""
    return Tracker(config)

"""OpenCV CSRT and KCF behind the project's tracker interface.

They implement the same ``initialize(frame, box)`` / ``track(frame) -> TrackResult`` calls as the
meta tracker, so the runner has a single code path and the comparison is apples to apples: same
frame decoding, same timing window, same metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np

from meta_tracker_ros.core.types import Box, TrackResult, TrackState


def _factory(kind: str) -> Callable[[], Any]:
    """OpenCV constructor for ``kind`` (the main namespace in OpenCV >= 4.5.1, else ``legacy``)."""
    name = {"csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create"}[kind]
    if hasattr(cv2, name):
        return getattr(cv2, name)
    legacy = getattr(cv2, "legacy", None)
    if legacy is not None and hasattr(legacy, name):
        return getattr(legacy, name)
    raise RuntimeError(f"this OpenCV build has no {name}; install opencv-contrib-python(-headless)")


@contextmanager
def _opencv_threads(n: int) -> Iterator[None]:
    """OpenCV at ``n`` threads inside the block, the previous count after (0.5 us a pair)."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


class OpenCVTracker:
    """An OpenCV single-object tracker as a project tracker.

    OpenCV's trackers take an integer ``Rect``, so the initial box is rounded; their output is
    returned as floats. When ``update`` reports failure the result is ``LOST`` with the last good
    box (the convention of ``TrackState.LOST``) and score 0; otherwise ``TRACKING`` with score 1
    (OpenCV exposes no confidence).
    """

    def __init__(self, kind: str, threads: int | None = None) -> None:
        kind = kind.lower()
        self.kind = kind
        # OpenCV's thread count is process-wide and the tracker sets it to its own budget
        # (runtime.num_threads); a baseline runs on its own count, by default OpenCV's (every
        # core), what a user wrapping CSRT in a node would get.
        self.threads = int(threads) if threads else cv2.getNumberOfCPUs()
        self._create = _factory(kind)
        self._tracker: Any = None
        self._last: Box = (0.0, 0.0, 0.0, 0.0)
        self._since_seen = 0

    def initialize(self, frame: np.ndarray, box: Box) -> None:
        """Start tracking ``box`` (0-based xywh) in ``frame`` (HxWx3 BGR uint8)."""
        x, y, w, h = (float(v) for v in box)
        rect = (round(x), round(y), max(1, round(w)), max(1, round(h)))
        self._tracker = self._create()
        with _opencv_threads(self.threads):
            self._tracker.init(frame, rect)
        self._last = (x, y, w, h)
        self._since_seen = 0

    def track(self, frame: np.ndarray) -> TrackResult:
        """Advance one frame."""
        if self._tracker is None:
            raise RuntimeError("track() called before initialize()")
        with _opencv_threads(self.threads):
            ok, rect = self._tracker.update(frame)
        if ok:
            self._last = tuple(float(v) for v in rect)  # type: ignore[assignment]
            self._since_seen = 0
            return TrackResult(self._last, 1.0, TrackState.TRACKING)
        self._since_seen += 1
        return TrackResult(self._last, 0.0, TrackState.LOST, frames_since_seen=self._since_seen)


BASELINES = ("csrt", "kcf")


def create_baseline(kind: str, threads: int | None = None) -> OpenCVTracker:
    """``OpenCVTracker`` for ``"csrt"`` or ``"kcf"`` (``threads``: OpenCV threads, default all)."""
    if kind.lower() not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
    return OpenCVTracker(kind, threads)

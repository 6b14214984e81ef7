"""Per-stage wall-clock times of the tracker (crop, to-tensor, backbone, heads, ...).

Why: speed work must start from where the time goes, on the machine that runs the tracker.
The multi-target tracker records each stage of every ``track`` call here; the stage benchmark
(``meta_tracker_ros.tools.stage_bench``) prints the means and the node publishes them in
``/diagnostics``. A record costs two ``perf_counter`` calls, negligible against milliseconds
of convolutions, so it is always on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

# Stages of MultiTracker.track in the order they run. "other" is the rest of a call (Python
# bookkeeping, slicing, the state machine), computed as total minus the named stages.
CORE_STAGES = (
    "crop",
    "to_tensor",
    "backbone",
    "classifier",
    "scale",
    "refine",
    "mask",
    "update",
    "other",
)


class StageTimes:
    """Recent per-frame seconds per stage (a bounded window, so means follow the present).

    One "frame" is one ``track`` call: stage times of all targets in that call add up. With
    ``runtime.head_threads`` > 1 the update and mask stages overlap, so named stages can add up
    to more than the total (then "other" is 0).
    """

    def __init__(self, window: int = 100) -> None:
        self._window = window
        self._frames: deque[dict[str, float]] = deque(maxlen=window)
        self._current: dict[str, float] | None = None
        self._start = 0.0
        self._lock = threading.Lock()  # stages may be added from the heads' helper thread

    def begin(self) -> None:
        """Start a frame (call at the top of ``track``)."""
        self._current = dict.fromkeys(CORE_STAGES, 0.0)
        self._start = time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` to ``stage`` of the current frame (ignored outside a frame)."""
        with self._lock:
            if self._current is not None:
                self._current[stage] = self._current.get(stage, 0.0) + seconds

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def end(self) -> None:
        """Close the frame: "other" gets what the named stages did not account for."""
        cur = self._current
        if cur is None:
            return
        total = time.perf_counter() - self._start
        named = sum(v for k, v in cur.items() if k != "other")
        cur["other"] = max(0.0, total - named)
        cur["total"] = total
        self._frames.append(cur)
        self._current = None

    def clear(self) -> None:
        self._frames.clear()

    def latest(self) -> dict[str, float] | None:
        """The last finished frame's stage seconds (a copy), or None before the first."""
        frames = self._frames
        return dict(frames[-1]) if frames else None

    def append(self, frame: dict[str, float]) -> None:
        """Add a finished frame's stage seconds recorded elsewhere (another process's tracker)."""
        self._frames.append(dict(frame))

    def __len__(self) -> int:
        return len(self._frames)

    def quantile_ms(self, stage: str = "total", q: float = 0.95) -> float:
        """The ``q`` quantile of one stage's per-frame ms over the window (0 when empty).

        Means hide the periodic filter refinement (``update`` every memory.update_interval
        frames), which is what a latency p95 sees.
        """
        values = sorted(f.get(stage, 0.0) for f in list(self._frames))
        if not values:
            return 0.0
        return 1000.0 * values[min(len(values) - 1, int(q * len(values)))]

    def means_ms(self) -> dict[str, float]:
        """Mean milliseconds per frame for each stage and "total" over the window ({} if none)."""
        frames = list(self._frames)
        if not frames:
            return {}
        keys = [*CORE_STAGES, "total"]
        keys += sorted({k for f in frames for k in f} - set(keys))
        return {k: 1000.0 * sum(f.get(k, 0.0) for f in frames) / len(frames) for k in keys}

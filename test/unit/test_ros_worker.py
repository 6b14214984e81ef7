"""TrackerWorker without ROS: plain frames, a fake tracker and a fake clock, driven by step()."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.types import TrackResult, TrackState
from meta_tracker_ros.ros.params import NodeConfig
from meta_tracker_ros.ros.worker import (
    SkipFrameError,
    TrackerWorker,
    check_request_box,
    configured_files,
    valid_target_id,
)

W, H = 64, 48


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeTracker:
    """ids/add/remove/track/reconfigure like MultiTracker; results are the boxes it was given."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.boxes: dict[str, tuple] = {}
        self.tracked = 0
        self.reconfigured: list[tuple] = []
        self.state = TrackState.TRACKING

    @property
    def ids(self) -> list[str]:
        return list(self.boxes)

    def add(self, tid, frame, box, mask=None) -> None:
        self.boxes[tid] = box

    def remove(self, tid) -> None:
        del self.boxes[tid]

    def track(self, frame) -> dict:
        self.tracked += 1
        return {t: TrackResult(b, 0.9, self.state) for t, b in self.boxes.items()}

    def reconfigure(self, config, frame=None) -> dict:
        self.reconfigured.append((config, frame is not None))
        self.config = config
        return {}


def image(value: int = 0, w: int = W, h: int = H) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


class Rig:
    """A worker on fake parts plus everything its callbacks received."""

    def __init__(self, **settings) -> None:
        self.clock = Clock()
        self.settings = NodeConfig(**{"lost_timeout": 1.0, "frame_ring_length": 3, **settings})
        self.published: list[tuple] = []
        self.lost: list[tuple] = []
        self.logs: list[tuple[str, str]] = []
        self.want_image = False
        self.worker = TrackerWorker(
            FakeTracker,
            TrackerConfig(),
            self.settings,
            decode=self.decode,
            on_results=lambda f, im, r: self.published.append((f.stamp, dict(r))),
            on_lost=lambda f, r: self.lost.append((f.stamp, dict(r))),
            want_image=lambda: self.want_image,
            log=lambda level, text: self.logs.append((level, text)),
            clock=self.clock,
        )
        self.worker.build()

    @staticmethod
    def decode(msg):
        if isinstance(msg, str):
            raise SkipFrameError(msg)
        return msg

    def push(self, stamp: int, frame: np.ndarray | None = None) -> None:
        self.worker.push_frame(stamp, image() if frame is None else frame)

    def add(self, tid: str, box=(10, 10, 20, 20), stamp: int = 0) -> Future:
        """Queue an add on the frame with ``stamp`` and run the command (a step)."""
        entry = self.worker.frame_for(stamp)
        future = self.worker.add(tid, self.worker.image(entry), box, None, entry)
        self.worker._run_commands()
        return future


# ---------------------------------------------------------------------------- ring and frames
def test_newest_frame_only_and_drop_count():
    rig = Rig()
    for stamp in (1, 2, 3):
        rig.push(stamp)
    rig.add("a")
    rig.worker.step()
    assert [s for s, _ in rig.published] == [3], "frames 1 and 2 were replaced by 3"
    rig.push(4)
    rig.push(5)
    rig.worker.step()
    assert [s for s, _ in rig.published] == [3, 5], "only the newest pending frame is tracked"
    snap = rig.worker.snapshot()
    assert snap.received == 5 and snap.dropped == 3


def test_nothing_decoded_or_published_without_targets_unless_an_image_is_wanted():
    rig = Rig()
    rig.push(1, "undecodable")  # decode would raise if it were called
    rig.worker.step()
    assert rig.published == [] and rig.worker.tracker.tracked == 0
    rig.want_image = True
    rig.push(2)
    rig.worker.step()
    assert rig.published == [(2, {})]


def test_frame_for_by_stamp_and_clear_errors():
    rig = Rig(stamp_tolerance=0.002)
    with pytest.raises(ValueError, match="no image received yet on 'cam'"):
        rig.worker.frame_for(0, "cam")
    for stamp in (1_000_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000):
        rig.push(stamp)
    assert rig.worker.frame_for(0).stamp == 4_000_000_000
    assert rig.worker.frame_for(3_001_000_000).stamp == 3_000_000_000  # within 2 ms
    with pytest.raises(ValueError, match=r"too old.*frame_ring_length=3"):
        rig.worker.frame_for(1_000_000_000)
    with pytest.raises(ValueError, match="yet"):
        rig.worker.frame_for(9_000_000_000)
    with pytest.raises(ValueError, match="nearest differs"):
        rig.worker.frame_for(3_500_000_000)
    rig.worker.set_ring_length(1)
    assert [f.stamp for f in rig.worker._ring] == [4_000_000_000]


def test_skipped_and_failing_frames_do_not_stop_the_worker():
    rig = Rig()
    rig.push(1)
    rig.add("a")
    rig.push(2, "unsupported")
    rig.worker.step()  # SkipFrameError: silent
    rig.push(3, np.zeros((1, 1, 3), np.uint8))  # too small: warned
    rig.worker.step()
    assert any("image too small" in text for _, text in rig.logs)
    rig.push(4, image(w=W * 2))  # another resolution than the targets': skipped, warned
    rig.worker.step()
    assert any("targets were set on 64x48" in text for _, text in rig.logs)
    rig.push(5)
    rig.worker.step()
    assert [s for s, _ in rig.published] == [5]


def test_a_tracker_that_loses_its_targets_in_a_failing_step_is_re_read():
    """A tracker process that died and restarted raises once and has no targets left."""
    rig = Rig()
    rig.push(1)
    rig.add("a")
    tracker = rig.worker.tracker

    def died(frame):
        tracker.boxes.clear()
        raise RuntimeError("tracker process ended during track (exit code -9)")

    tracker.track = died
    rig.push(2)
    rig.worker.step()
    assert any("exit code -9" in text for _, text in rig.logs)
    assert rig.worker.ids() == [] and rig.worker.snapshot().results == {}


def _arrivals(rig: Rig, period: float, count: int = 6) -> None:
    """``count`` frames (stamps 1..count) arriving ``period`` s apart on the fake clock."""
    for stamp in range(1, count + 1):
        rig.push(stamp)
        rig.clock.t += period
    rig.clock.t -= period


def test_next_frame_wait_only_when_the_next_frame_is_due_soon():
    rig = Rig(next_frame_wait=0.01)
    _arrivals(rig, 0.033)
    assert rig.worker.next_frame_wait() == 0.0, "no target tracked: nothing to gain"
    rig.add("a")
    rig.clock.t += 0.005  # the pending frame is 5 ms old: the next is 28 ms away
    assert rig.worker.next_frame_wait() == 0.0
    rig.clock.t += 0.022  # 27 ms old: the next is due in 6 ms
    assert rig.worker.next_frame_wait() == pytest.approx(0.006 + 0.0025)
    rig.clock.t += 0.010  # overdue: the camera may have stopped, do not wait
    assert rig.worker.next_frame_wait() == 0.0
    fast = Rig(next_frame_wait=0.01)
    _arrivals(fast, 0.015)  # 66 Hz: at most a third of the 15 ms period, 5 ms
    fast.add("a")
    fast.clock.t += 0.008  # the next is due in 7 ms: more than a third of the period
    assert fast.worker.next_frame_wait() == 0.0
    fast.clock.t += 0.003  # due in 4 ms
    assert fast.worker.next_frame_wait() == pytest.approx(0.004 + 0.0025)
    assert Rig().worker.next_frame_wait() == 0.0  # default 0: never waits


def test_step_waits_for_the_due_frame_and_tracks_it():
    """A long period on the fake clock so the real wait (up to 6 s) never decides the test."""
    rig = Rig(next_frame_wait=0.1)
    rig.settings.next_frame_wait = 5.0  # beyond the parameter's range, for a robust test
    _arrivals(rig, 6.0)
    rig.add("a")
    rig.worker.step()  # tracks frame 6 and publishes it
    rig.push(7)
    rig.clock.t += 4.5  # frame 7 waits 4.5 s; frame 8 is due in 1.5 s (within a third of 6 s)
    timer = threading.Timer(0.05, rig.push, args=(8,))
    timer.start()
    t0 = time.monotonic()
    rig.worker.step()
    timer.join()
    assert [s for s, _ in rig.published] == [6, 8], "frame 8, not the older pending 7"
    assert time.monotonic() - t0 < 2.75


# ---------------------------------------------------------------------------- commands
def test_add_remove_and_ids():
    rig = Rig()
    rig.push(1)
    assert rig.add("a").result(0) is True
    assert rig.add("b").result(0) is True
    assert rig.worker.ids() == ["a", "b"]
    assert rig.worker.snapshot().results["a"].state == TrackState.INITIALIZING
    rig.worker.remove("a")
    rig.worker._run_commands()
    assert rig.worker.ids() == ["b"] and set(rig.worker.snapshot().results) == {"b"}
    rig.worker.remove("")
    rig.worker._run_commands()
    assert rig.worker.ids() == [] and rig.worker.snapshot().results == {}


def test_new_target_ids_skip_taken_ones():
    rig = Rig()
    rig.push(1)
    rig.add("target_1")
    assert rig.worker.new_target_id() == "target_2"
    assert valid_target_id("  x ") == "x"
    for bad in ("a\nb", "x" * 65):
        with pytest.raises(ValueError, match="printable"):
            valid_target_id(bad)


def test_request_add_checks_and_answers():
    rig = Rig(max_targets=1)
    rig.push(5)
    rig.worker.start()
    try:
        tid, message = rig.worker.request_add("", 0, (10, 10, 20, 20), None, timeout=5.0)
    finally:
        rig.worker.stop()
    assert tid == "target_1" and "tracking 'target_1'" in message
    with pytest.raises(ValueError, match="max_targets=1"):
        rig.worker.request_add("b", 0, (10, 10, 20, 20), None, timeout=0.1)
    with pytest.raises(ValueError, match="mask is 3x3"):
        rig.worker.request_add("a", 0, (10, 10, 20, 20), np.zeros((3, 3), np.uint8), 0.1)
    with pytest.raises(ValueError, match="mostly outside"):
        rig.worker.request_add("a", 0, (10, 10, 1e9, 1e9), None, 0.1)
    # Accepted but not initialised within the timeout (no worker running): says so.
    tid, message = rig.worker.request_add("target_1", 0, (5, 5, 10, 10), None, timeout=0.01)
    assert "still running" in message
    with pytest.raises(ValueError, match="no target 'zz'"):
        rig.worker.request_remove("zz", 0.1)
    assert rig.worker.request_remove("", 0.01) == "removal queued"


def test_failing_command_answers_with_its_exception():
    rig = Rig()
    rig.push(1)
    rig.worker.tracker.add = lambda *a: (_ for _ in ()).throw(ValueError("no good"))
    future = rig.add("a")
    with pytest.raises(ValueError, match="no good"):
        future.result(0)
    assert rig.worker.ids() == [] and any("add failed" in t for _, t in rig.logs)


def test_tracker_that_cannot_be_built_is_reported():
    def broken(config):
        raise RuntimeError("weights missing")

    worker = TrackerWorker(broken, TrackerConfig(), NodeConfig(), decode=lambda m: m)
    worker.build()
    assert worker.ready.is_set() and worker.tracker is None
    snap = worker.snapshot()
    assert snap.level == "error" and "weights missing" in snap.message
    worker.push_frame(1, image())
    with pytest.raises(ValueError, match="tracker unavailable: RuntimeError: weights missing"):
        worker.request_add("a", 0, (1, 1, 10, 10), None, 0.1)


def test_reconfigure_hands_the_config_and_newest_frame_to_the_core():
    rig = Rig()
    new = TrackerConfig().with_overrides({"search.crop_size": 224})
    rig.worker.reconfigure(new)
    rig.worker._run_commands()
    assert rig.worker.tracker.reconfigured == [(new, False)]  # no targets: no frame decoded
    rig.push(1)
    rig.add("a")
    rig.worker.reconfigure(TrackerConfig())
    rig.worker._run_commands()
    assert rig.worker.tracker.reconfigured[-1] == (TrackerConfig(), True)
    assert rig.worker.config == TrackerConfig()


def test_a_failed_rebuild_keeps_the_old_config_and_answers_the_exception():
    rig = Rig()
    old = rig.worker.config

    def fail(config, frame=None):
        raise FileNotFoundError("no mask_decoder.pt")

    rig.worker.tracker.reconfigure = fail
    future = rig.worker.reconfigure(TrackerConfig().with_overrides({"mask.enabled": False}))
    rig.worker._run_commands()
    with pytest.raises(FileNotFoundError, match="mask_decoder"):
        future.result(0)
    assert rig.worker.config is old


def test_a_corrected_parameter_builds_a_tracker_that_failed_to_build():
    def factory(config):
        if config.backbone.weights:
            raise RuntimeError("corrupt")
        return FakeTracker(config)

    bad = TrackerConfig().with_overrides({"backbone.weights": "/robot/w.pth"})
    worker = TrackerWorker(factory, bad, NodeConfig(), decode=lambda m: m)
    worker.build()
    assert worker.tracker is None and worker.snapshot().level == "error"
    future = worker.reconfigure(TrackerConfig())
    worker._run_commands()
    assert future.result(0) and worker.tracker is not None and worker.config == TrackerConfig()
    assert worker.snapshot().level == "ok"


def test_build_error_names_the_configured_files():
    """A corrupt weights file raises an error that rarely names it; the worker's error does."""

    def broken(config):
        raise RuntimeError("invalid load key, 'n'")

    config = TrackerConfig().with_overrides({"backbone.weights": "/robot/w.pth"})
    worker = TrackerWorker(broken, config, NodeConfig(), decode=lambda m: m)
    worker.build()
    assert "invalid load key" in worker.tracker_error
    assert "backbone.weights=/robot/w.pth" in worker.tracker_error
    assert "backbone.weights" not in configured_files(TrackerConfig())  # "" = shipped: unnamed


# ---------------------------------------------------------------------------- images stopping
def test_lost_reported_once_after_images_stop_and_rearmed_by_the_next_image():
    rig = Rig()
    rig.push(1)
    rig.add("a")
    rig.push(2)
    rig.worker.step()
    rig.clock.t += 0.9
    rig.worker.step()
    assert rig.lost == []
    rig.clock.t += 0.2
    rig.worker.step()
    assert len(rig.lost) == 1
    stamp, lost = rig.lost[0]
    assert stamp == 2, "the report carries the last processed frame (its frame_id)"
    assert lost["a"].state == TrackState.LOST and lost["a"].score == 0.0 and lost["a"].mask is None
    assert lost["a"].box == (10, 10, 20, 20)
    assert rig.worker.snapshot().level == "warn"
    rig.clock.t += 5.0
    rig.worker.step()
    assert len(rig.lost) == 1, "one report per stop"
    rig.push(3)
    rig.worker.step()
    assert rig.worker.snapshot().results["a"].state == TrackState.TRACKING
    rig.clock.t += 1.5
    rig.worker.step()
    assert len(rig.lost) == 2, "a new stop after images resumed is reported again"


def test_initializing_targets_are_never_reported_lost():
    rig = Rig()
    rig.push(1)
    rig.worker.step()  # no target yet: the frame is consumed untracked
    rig.clock.t += 5.0  # images stopped long before the add
    rig.add("i")
    rig.clock.t += 3.0
    rig.worker.step()
    assert rig.lost == [], "a target never tracked has no result to go stale"
    assert rig.worker.snapshot().level == "ok"


def test_adding_a_target_restarts_the_images_stopped_clock():
    rig = Rig(lost_timeout=5.0)
    rig.push(1)
    rig.add("a")
    rig.push(2)
    rig.worker.step()  # "a" tracked
    rig.clock.t += 1.5  # images stopped 1.5 s ago
    rig.add("b", stamp=0)  # initialisation ends now
    rig.clock.t += 4.0  # 5.5 s after the last image, 4 s after the add
    rig.worker.step()
    assert rig.lost == [], "LOST less than lost_timeout after a target was added"
    rig.clock.t += 1.0
    rig.worker.step()
    assert len(rig.lost) == 1 and list(rig.lost[0][1]) == ["a"], "only the tracked target"


def test_no_lost_report_before_any_image_or_target():
    rig = Rig()
    rig.clock.t += 100.0
    rig.worker.step()
    assert rig.lost == [] and not rig.worker.images_stale()


# ---------------------------------------------------------------------------- threads
def test_snapshot_while_the_worker_adds_and_removes_targets():
    """Diagnostics read a copy: a storm of adds/removes on the worker never breaks them."""
    rig = Rig()
    rig.push(1)
    rig.worker.start()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                snap = rig.worker.snapshot()
                for _tid, r in snap.results.items():
                    assert r.state in TrackState
            except BaseException as exc:  # reported below
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            entry = rig.worker.frame_for(0)
            rig.worker.add(f"t{i % 7}", entry.msg, (1, 1, 10, 10), None, entry).result(5)
            rig.worker.push_frame(i + 2, image())
            if i % 3 == 0:
                rig.worker.remove("").result(5)
    finally:
        stop.set()
        thread.join()
        rig.worker.stop()
    assert not errors, errors[0]
    assert not rig.worker._thread.is_alive()


def test_a_failing_callback_does_not_end_the_worker_thread():
    rig = Rig(lost_timeout=0.05)
    rig.worker._on_lost = lambda *a: 1 / 0
    rig.worker._clock = time.monotonic
    rig.push(1)
    rig.worker.start()
    try:
        entry = rig.worker.frame_for(0)
        rig.worker.add("a", entry.msg, (1, 1, 10, 10), None, entry).result(5)
        rig.worker.push_frame(2, image())
        assert rig.worker.remove("").result(5)  # still serving commands
    finally:
        rig.worker.stop()


# ---------------------------------------------------------------------------- request boxes
@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((204, 150, 1e9, 1e9), "mostly outside"),
        ((300, 200, 100, 100), "mostly outside"),  # 60x40 of 100x100 inside
        ((-30, 10, 40, 20), "mostly outside"),  # a quarter inside
        ((float("nan"), 1, 10, 10), "non-finite"),
        ((1, 1, float("inf"), 10), "non-finite"),
        ((400, 10, 10, 10), "does not overlap"),
        ((10, 10, 0, 10), "positive width"),
    ],
)
def test_request_boxes_mostly_outside_or_invalid_are_refused(box, expected):
    with pytest.raises(ValueError, match=expected):
        check_request_box(box, (360, 240))


def test_request_boxes_at_least_half_inside_are_accepted_unchanged():
    assert check_request_box((10, 10, 40, 30), (360, 240)) == (10, 10, 40, 30)
    assert check_request_box((-20, 10, 40, 30), (360, 240)) == (-20, 10, 40, 30)  # half inside

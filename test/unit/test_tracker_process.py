"""The tracker in a child process (core/tracker_process.py): same results, errors, a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from meta_tracker_ros.core import create_multi_tracker
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.tracker_process import (
    TrackerProcess,
    TrackerProcessError,
    pack_mask,
    unpack_mask,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _config() -> TrackerConfig:
    return TrackerConfig().with_overrides({"runtime.num_threads": 1, "runtime.head_threads": 1})


def _car4(n: int) -> tuple[list[np.ndarray], tuple[float, ...]]:
    seq = DATA / "boxes" / "Car4_first400"
    if not seq.is_dir():
        pytest.skip(f"shared data not found at {DATA} (needs ../shared/data)")
    gt = np.loadtxt(seq / "groundtruth.txt", delimiter=",")
    images = sorted((seq / "img").glob("*.jpg"))[:n]
    box = (gt[0, 0] - 1, gt[0, 1] - 1, gt[0, 2], gt[0, 3])  # OTB boxes are 1-based
    return [cv2.imread(str(p)) for p in images], box


def test_mask_round_trip():
    mask = np.zeros((40, 60), np.uint8)
    assert (unpack_mask(pack_mask(mask)) == mask).all()
    mask[5:9, 20:31] = 255
    mask[30, 2] = 255
    packed = pack_mask(mask)
    assert packed[3].shape == (26, 29)  # only the non-zero rectangle travels
    assert (unpack_mask(packed) == mask).all()
    assert pack_mask(None) is None and unpack_mask(None) is None


@pytest.mark.data
def test_same_results_as_in_process_and_errors_come_back():
    """Two targets on Car4: boxes, scores, states and masks equal to a MultiTracker's."""
    frames, box = _car4(8)
    here = create_multi_tracker(_config())
    there = TrackerProcess(_config())
    try:
        assert there.device == str(here.device)
        other = (20.0, 20.0, 60.0, 40.0)
        for tracker in (here, there):
            tracker.add("car", frames[0], box)
            tracker.add("other", frames[0], other)
        assert there.ids == ["car", "other"]
        # The child unlinked the frame file once it had mapped it: a killed node leaks none.
        assert not os.path.exists(there._frames.path)
        for frame in frames[1:]:
            a, b = here.track(frame), there.track(frame)
            assert list(a) == list(b)
            for tid in a:
                assert a[tid].box == b[tid].box
                assert a[tid].score == b[tid].score and a[tid].state == b[tid].state
                assert (a[tid].mask == b[tid].mask).all()
        assert there.times.means_ms()["total"] > 0.0  # the child's stage record came back
        # The child's exceptions are raised here, with their type, and it keeps serving.
        with pytest.raises(KeyError):
            there.remove("nobody")
        with pytest.raises(ValueError, match="overlap"):
            there.add("far", frames[0], (1e9, 0.0, 5.0, 5.0))
        with pytest.raises(ValueError, match="uint8"):
            there.track(np.zeros((4, 4), np.float32))
        there.remove("other")
        assert there.ids == ["car"] and list(there.track(frames[-1])) == ["car"]
    finally:
        there.close()


@pytest.mark.data
def test_a_killed_child_is_replaced_and_the_call_says_so():
    frames, box = _car4(3)
    tracker = TrackerProcess(_config())
    try:
        tracker.add("car", frames[0], box)
        first = tracker.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(TrackerProcessError, match=r"exit code -9.*targets dropped: \['car'\]"):
            tracker.track(frames[1])
        assert tracker.ids == [] and tracker.pid != first
        assert tracker.track(frames[1]) == {}
        tracker.add("car", frames[1], box)  # the new child works
        assert list(tracker.track(frames[2])) == ["car"]
    finally:
        path = tracker._frames.path
        tracker.close()
    assert path is None or not os.path.exists(path)  # the shared frame file is removed
    with pytest.raises(TrackerProcessError, match="closed"):
        tracker.track(frames[2])  # a closed tracker does not start a new child ...
    assert tracker._frames.path is None  # ... nor write a frame file


def test_a_failing_build_raises_the_childs_error():
    bad = TrackerConfig().with_overrides({"classifier.weights_path": "/nonexistent/weights.pt"})
    with pytest.raises(Exception, match="nonexistent"):
        TrackerProcess(bad)

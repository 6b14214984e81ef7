"""TrackerNode in this process with a fake tracker: guarded callbacks, diagnostics under a storm.

No backbone is loaded (the tracker factory is a stub) and no message crosses DDS: these tests
call the node's callbacks directly, so they are fast and need no waiting.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")
pytest.importorskip("meta_tracker_ros.srv", reason="generated interfaces missing: `make build`")

from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from meta_tracker_ros.core.tracker_process import TrackerProcess  # noqa: E402
from meta_tracker_ros.core.types import TrackResult, TrackState  # noqa: E402
from meta_tracker_ros.ros import conversions as conv  # noqa: E402
from meta_tracker_ros.ros.params import ConfigurationError  # noqa: E402
from meta_tracker_ros.ros.tracker_node import TrackerNode, make_executor  # noqa: E402
from meta_tracker_ros.tools import graph  # noqa: E402

pytestmark = [pytest.mark.ros]


class StubTracker:
    def __init__(self, config) -> None:
        self.boxes: dict = {}
        self.device = "stub"

    @property
    def ids(self) -> list:
        return list(self.boxes)

    def add(self, tid, frame, box, mask=None) -> None:
        self.boxes[tid] = box

    def remove(self, tid) -> None:
        del self.boxes[tid]

    def track(self, frame) -> dict:
        return {t: TrackResult(b, 0.8, TrackState.TRACKING) for t, b in self.boxes.items()}

    def reconfigure(self, config, frame=None) -> dict:
        return {}


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=graph.random_domain_id())
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(context, overrides=()) -> TrackerNode:
    return TrackerNode(
        tracker_factory=StubTracker, context=context, parameter_overrides=list(overrides)
    )


def test_bad_override_raises_configuration_error_naming_the_parameter(context):
    with pytest.raises(ConfigurationError, match="lost_timeout"):
        _node(context, [Parameter("lost_timeout", value=99999.0)])
    with pytest.raises(ConfigurationError, match="lost_timout"):
        _node(context, [Parameter("lost_timout", value=2.0)])


def test_switch_interval_follows_the_parameter_and_is_restored(context):
    before = sys.getswitchinterval()
    node = _node(context, [Parameter("gil_switch_interval", value=0.002)])
    try:
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        node.shutdown()
        node.destroy_node()
    assert sys.getswitchinterval() == before


def test_log_takes_every_severity_from_one_node(context):
    """rclpy refuses a second severity from one call site; ``_log`` must not (the worker logs
    info and warnings through it, and an exception there ended the worker thread)."""
    node = _node(context)
    try:
        for level in ("info", "warning", "error", "info", "warning"):
            node._log(level, f"severity check {level}")
    finally:
        node.shutdown()
        node.destroy_node()


def test_guarded_callbacks_log_once_and_never_raise(context):
    node = _node(context)
    try:
        calls = []

        def boom(*_):
            calls.append(1)
            raise RuntimeError("broken")

        guarded = node._guard(boom)
        guarded()
        guarded("msg")
        assert len(calls) == 2 and "boom:RuntimeError" in node._warned
        node._guard(node._on_image)(object())  # not an image: as subscribed, it cannot raise
        assert "_on_image:AttributeError" in node._warned
    finally:
        node.shutdown()
        node.destroy_node()


def test_diagnostics_while_targets_are_added_and_removed(context):
    """The diagnostics callback copies shared state: a set/remove storm never breaks it."""
    node = _node(context)
    stop = threading.Event()
    errors: list[BaseException] = []

    def diagnostics() -> None:
        while not stop.is_set():
            try:
                node._publish_diagnostics()
            except BaseException as exc:  # reported below
                errors.append(exc)

    try:
        assert node.worker.ready.wait(30)
        msg = conv.bgr_to_image(np.zeros((48, 64, 3), np.uint8), "bgr8")
        node._on_image(msg)
        thread = threading.Thread(target=diagnostics)
        thread.start()
        for i in range(300):
            node.worker.request_add(f"t{i % 5}", 0, (1, 1, 20, 20), None, 10.0)
            node._on_image(msg)
            if i % 4 == 0:
                node.worker.request_remove("", 10.0)
        stop.set()
        thread.join()
        assert not errors, errors[0]
    finally:
        stop.set()
        node.shutdown()
        node.destroy_node()


def test_default_tracker_runs_in_a_child_process_that_ends_with_the_node(context):
    """tracker_process (default true): the core lives in a child; shutdown ends it."""
    node = TrackerNode(context=context)
    try:
        assert node.worker.ready.wait(120) and node.worker.tracker_error == ""
        tracker = node.worker.tracker
        assert isinstance(tracker, TrackerProcess)
        proc = tracker._proc
        assert proc.poll() is None and proc.pid != os.getpid()
    finally:
        node.shutdown()
        node.destroy_node()
    assert proc.wait(timeout=30) == 0  # asked to close, exited cleanly


def test_the_node_spins_single_threaded_unless_asked(context):
    node = _node(context)
    try:
        assert node.node_cfg.executor == "single_threaded"
    finally:
        node.shutdown()
        node.destroy_node()
    for kind, expected in [
        ("single_threaded", SingleThreadedExecutor),
        ("multi_threaded", MultiThreadedExecutor),
    ]:
        executor = make_executor(kind, context)
        try:
            assert type(executor) is expected
        finally:
            executor.shutdown()


class FailingRebuild(StubTracker):
    """A tracker whose rebuild fails for a missing learned file (as MultiTracker's would)."""

    def reconfigure(self, config, frame=None) -> dict:
        if config.classifier.weights_path.endswith("missing.pt"):
            raise FileNotFoundError(f"{config.classifier.weights_path} does not exist")
        return {}


def test_a_failed_tracker_rebuild_refuses_the_parameter_and_keeps_the_old_value(context):
    node = TrackerNode(tracker_factory=FailingRebuild, context=context)
    try:
        assert node.worker.ready.wait(30)
        old = node.get_parameter("classifier.weights_path").value
        [res] = node.set_parameters([Parameter("classifier.weights_path", value="/x/missing.pt")])
        assert not res.successful and "missing.pt does not exist" in res.reason
        assert "old values kept" in res.reason
        assert node.get_parameter("classifier.weights_path").value == old
        assert (
            node.config.classifier.weights_path == old == node.worker.config.classifier.weights_path
        )
        [res] = node.set_parameters([Parameter("classifier.weights_path", value="/x/ok.pt")])
        assert res.successful and node.worker.config.classifier.weights_path == "/x/ok.pt"
    finally:
        node.shutdown()
        node.destroy_node()


def test_shared_wildcard_parameters_are_ignored_own_typos_stay_fatal(context, tmp_path):
    shared = tmp_path / "robot.yaml"
    shared.write_text(
        "/**:\n  ros__parameters:\n    wheel_radius: 0.1\n"
        "tracker_node:\n  ros__parameters:\n    lost_timeout: 2.0\n"
    )
    args = ["--ros-args", "--params-file", str(shared)]
    node = TrackerNode(tracker_factory=StubTracker, context=context, cli_args=args)
    try:
        assert "wheel_radius" in node._parameter_overrides  # rclpy handed it to this node
        assert node.node_cfg.lost_timeout == 2.0
    finally:
        node.shutdown()
        node.destroy_node()
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    lost_timout: 2.0\n")  # a wildcard typo...
    args = ["--ros-args", "--params-file", str(typo), "-p", "lost_timout:=2.0"]  # ...given by -p
    with pytest.raises(ConfigurationError, match="lost_timout"):
        TrackerNode(tracker_factory=StubTracker, context=context, cli_args=args)


def test_garbage_encodings_neither_grow_the_warned_set_nor_flood_the_log(context):
    """Found by the fuzz suite: each new encoding string was remembered (and logged) forever."""
    node = _node(context)
    try:
        msg = conv.bgr_to_image(np.zeros((4, 4, 3), np.uint8), "bgr8")
        for i in range(500):
            msg.encoding = f"garbage_{i}_" + "x" * 1000
            node._on_image(msg)
        assert len(node._warned) <= 65
    finally:
        node.shutdown()
        node.destroy_node()

"""The package's own interfaces over the real middleware (rclpy + Fast DDS), between two nodes.

These tests need the colcon build (generated ``meta_tracker_ros.msg`` / ``.srv``); ``make test``
builds first. They are skipped, saying why, when rclpy or the generated modules are missing.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")
msgs = pytest.importorskip(
    "meta_tracker_ros.msg", reason="generated interfaces missing: run `make build` first"
)
srvs = pytest.importorskip("meta_tracker_ros.srv")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def ros_context():
    """A private rclpy context, so tests do not share global state."""
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def spin(ros_context):
    """An executor spinning on a background thread; nodes are added by the test."""
    executor = SingleThreadedExecutor(context=ros_context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield executor
    executor.shutdown(timeout_sec=2.0)
    thread.join(timeout=2.0)


def _stop(executor: SingleThreadedExecutor, *nodes) -> None:
    """Stop spinning, then destroy the nodes.

    Why this order: a node destroyed while the spin thread waits on it leaves that thread a
    wait set without entities, and rclpy raises RCLError in the thread ("wait set is empty"),
    which pytest reports as an unhandled thread exception.
    """
    executor.shutdown(timeout_sec=2.0)
    for node in nodes:
        node.destroy_node()


def _tracked_array(mask: np.ndarray):
    obj = msgs.TrackedObject()
    obj.id = "person-1"
    obj.state = msgs.TrackedObject.STATE_UNCERTAIN
    obj.score = 0.625
    obj.center_x, obj.center_y, obj.size_x, obj.size_y = 320.5, 180.25, 64.0, 128.0
    obj.mask_roi.x_offset, obj.mask_roi.y_offset = 288, 116
    obj.mask_roi.width, obj.mask_roi.height = mask.shape[1], mask.shape[0]
    obj.mask.height, obj.mask.width = mask.shape
    obj.mask.encoding = "mono8"
    obj.mask.step = mask.shape[1]
    obj.mask.data = mask.tobytes()
    obj.has_position = True
    obj.position.x, obj.position.y, obj.position.z = 0.1, -0.2, 2.5
    obj.frames_since_seen = 3
    array = msgs.TrackedObjectArray()
    array.header.frame_id = "camera_optical_frame"
    array.header.stamp.sec, array.header.stamp.nanosec = 1700000000, 123456789
    array.objects = [obj]
    return array


def test_tracked_object_array_with_mask_arrives_intact(ros_context, spin):
    rng = np.random.default_rng(0)
    mask = (rng.random((128, 64)) > 0.5).astype(np.uint8) * 255
    sent = _tracked_array(mask)

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pub_node = rclpy.create_node("tracks_publisher", context=ros_context)
    sub_node = rclpy.create_node("tracks_subscriber", context=ros_context)
    received: list = []
    got = threading.Event()

    def on_tracks(msg) -> None:
        received.append(msg)
        got.set()

    sub_node.create_subscription(msgs.TrackedObjectArray, "tracks", on_tracks, qos)
    publisher = pub_node.create_publisher(msgs.TrackedObjectArray, "tracks", qos)
    spin.add_node(pub_node)
    spin.add_node(sub_node)
    try:
        # Discovery takes a moment; publish until the first message arrives (bounded).
        for _ in range(100):
            publisher.publish(sent)
            if got.wait(timeout=0.1):
                break
        assert got.is_set(), "no TrackedObjectArray arrived within 10 s"
        msg = received[0]
        assert msg.header.frame_id == "camera_optical_frame"
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000000, 123456789)
        assert len(msg.objects) == 1
        obj = msg.objects[0]
        assert obj.id == "person-1"
        assert obj.state == msgs.TrackedObject.STATE_UNCERTAIN == 2
        assert obj.score == pytest.approx(0.625)
        assert (obj.center_x, obj.center_y, obj.size_x, obj.size_y) == (320.5, 180.25, 64.0, 128.0)
        assert (obj.mask_roi.x_offset, obj.mask_roi.y_offset) == (288, 116)
        assert (obj.mask_roi.width, obj.mask_roi.height) == (64, 128)
        assert (obj.mask.width, obj.mask.height, obj.mask.encoding) == (64, 128, "mono8")
        got_mask = np.frombuffer(bytes(obj.mask.data), dtype=np.uint8).reshape(128, 64)
        np.testing.assert_array_equal(got_mask, mask)
        assert obj.has_position
        assert (obj.position.x, obj.position.y, obj.position.z) == (0.1, -0.2, 2.5)
        assert obj.frames_since_seen == 3
    finally:
        _stop(spin, pub_node, sub_node)


def test_state_constants_match_the_core():
    from meta_tracker_ros.core.types import TrackState

    t = msgs.TrackedObject
    assert [
        int(TrackState.INITIALIZING),
        int(TrackState.TRACKING),
        int(TrackState.UNCERTAIN),
        int(TrackState.LOST),
    ] == [t.STATE_INITIALIZING, t.STATE_TRACKING, t.STATE_UNCERTAIN, t.STATE_LOST]


def test_set_target_and_remove_target_services_between_nodes(ros_context, spin):
    server = rclpy.create_node("target_server", context=ros_context)
    client_node = rclpy.create_node("target_client", context=ros_context)
    seen: list = []

    def on_set(request, response):
        seen.append(request)
        ok = request.width > 0 and request.height > 0
        response.success = ok
        response.message = "accepted" if ok else "width and height must be positive"
        response.id = request.id or "auto-7"
        return response

    def on_remove(request, response):
        response.success = request.id in ("", "auto-7")
        response.message = f"removed '{request.id}'"
        return response

    server.create_service(srvs.SetTarget, "tracker/set_target", on_set)
    server.create_service(srvs.RemoveTarget, "tracker/remove_target", on_remove)
    set_client = client_node.create_client(srvs.SetTarget, "tracker/set_target")
    remove_client = client_node.create_client(srvs.RemoveTarget, "tracker/remove_target")
    spin.add_node(server)
    spin.add_node(client_node)
    try:
        assert set_client.wait_for_service(timeout_sec=10.0)
        req = srvs.SetTarget.Request()
        req.stamp.sec, req.stamp.nanosec = 42, 500
        req.x, req.y, req.width, req.height = 10.5, 20.0, 30.0, 40.25
        mask = np.zeros((4, 6), np.uint8)
        mask[1:3, 2:5] = 255
        req.mask.height, req.mask.width, req.mask.encoding, req.mask.step = 4, 6, "mono8", 6
        req.mask.data = mask.tobytes()
        res = set_client.call_async(req)
        done = threading.Event()
        res.add_done_callback(lambda _f: done.set())
        assert done.wait(10.0), "SetTarget call timed out"
        response = res.result()
        assert response.success and response.id == "auto-7" and response.message == "accepted"
        got = seen[0]
        assert (got.stamp.sec, got.stamp.nanosec) == (42, 500)
        assert (got.x, got.y, got.width, got.height) == (10.5, 20.0, 30.0, 40.25)
        got_mask = np.frombuffer(bytes(got.mask.data), np.uint8).reshape(4, 6)
        np.testing.assert_array_equal(got_mask, mask)

        bad = srvs.SetTarget.Request()
        bad.id = "x"
        bad.width = -1.0
        fut = set_client.call_async(bad)
        done2 = threading.Event()
        fut.add_done_callback(lambda _f: done2.set())
        assert done2.wait(10.0)
        assert not fut.result().success
        assert "positive" in fut.result().message

        assert remove_client.wait_for_service(timeout_sec=10.0)
        fut3 = remove_client.call_async(srvs.RemoveTarget.Request(id="auto-7"))
        done3 = threading.Event()
        fut3.add_done_callback(lambda _f: done3.set())
        assert done3.wait(10.0)
        assert fut3.result().success and fut3.result().message == "removed 'auto-7'"
    finally:
        _stop(spin, server, client_node)

"""follower_node as a process over the real middleware: arming, output signs, stop on LOST."""

from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")
pytest.importorskip("meta_tracker_ros.msg", reason="generated interfaces missing: `make build`")

from geometry_msgs.msg import Twist  # noqa: E402
from meta_tracker_ros.msg import TrackedObject, TrackedObjectArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from meta_tracker_ros.ros.image_source import camera_info_for  # noqa: E402
from meta_tracker_ros.tools import graph  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    domain = graph.random_domain_id()
    log = tmp_path_factory.mktemp("follower") / "follower_node.log"
    proc = graph.start_node(
        "follower_node",
        [
            "--params-file", str(graph.ROOT / "config" / "follower_node.yaml"),
            "-p", "max_yaw_accel:=100.0",
            "-p", "max_linear_accel:=100.0",
            "-p", "stale_timeout:=0.5",
            "-r", "tracks:=/tracker_node/tracks",
            "-r", "cmd_vel:=/robot/cmd_vel",
        ],
        log,
        env={"ROS_DOMAIN_ID": str(domain)},
    )  # fmt: skip
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("follower_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    cmds: list[Twist] = []
    cond = threading.Condition()

    def on_cmd(msg: Twist) -> None:
        with cond:
            cmds.append(msg)
            cond.notify_all()

    node.create_subscription(Twist, "/robot/cmd_vel", on_cmd, 50)
    rig = {
        "node": node,
        "cmds": cmds,
        "cond": cond,
        "tracks": node.create_publisher(TrackedObjectArray, "/tracker_node/tracks", 10),
        "info": node.create_publisher(CameraInfo, "camera_info", 10),
        "enable": node.create_client(SetBool, "/follower_node/enable"),
        "log": log,
    }
    try:
        assert rig["enable"].wait_for_service(timeout_sec=60.0), log.read_text()
        yield rig
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        graph.stop_node(proc)


def _tracks(cx: float, state: int = TrackedObject.STATE_TRACKING, size: float = 80.0):
    msg = TrackedObjectArray()
    obj = TrackedObject(id="t", state=state, score=0.9, center_x=cx, center_y=240.0)
    obj.size_x = obj.size_y = size
    msg.objects = [obj]
    return msg


def _enable(rig, on: bool) -> None:
    future = rig["enable"].call_async(SetBool.Request(data=on))
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(30.0) and future.result().success


def _send_until(rig, make, predicate, timeout: float = 20.0) -> Twist:
    """Publish tracks from ``make()`` at 20 Hz until a cmd_vel satisfies ``predicate``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rig["tracks"].publish(make())
        with rig["cond"]:
            n = len(rig["cmds"])
            rig["cond"].wait(0.05)
            for msg in rig["cmds"][n:]:
                if predicate(msg):
                    return msg
    raise AssertionError("no matching cmd_vel")


def test_disarmed_follower_publishes_zero(rig):
    _enable(rig, False)
    msg = _send_until(rig, lambda: _tracks(600.0), lambda m: True)
    assert msg.angular.z == 0.0 and msg.linear.x == 0.0


def test_output_signs_follow_the_target(rig):
    rig["info"].publish(camera_info_for(640, 480, 1.0, "cam"))
    _enable(rig, True)
    _send_until(rig, lambda: _tracks(320.0), lambda m: True)  # reference size at selection
    right = _send_until(rig, lambda: _tracks(600.0), lambda m: m.angular.z < 0)
    assert right.angular.z < 0
    left = _send_until(rig, lambda: _tracks(40.0), lambda m: m.angular.z > 0)
    assert left.angular.z > 0
    far = _send_until(rig, lambda: _tracks(320.0, size=40.0), lambda m: m.linear.x > 0)
    assert far.linear.x > 0


def test_stops_on_lost_and_on_stale_tracks(rig):
    _enable(rig, True)
    _send_until(rig, lambda: _tracks(600.0), lambda m: m.angular.z < 0)
    lost = _send_until(
        rig,
        lambda: _tracks(600.0, TrackedObject.STATE_LOST),
        lambda m: m.angular.z == 0.0 and m.linear.x == 0.0,
    )
    assert lost.angular.z == 0.0
    _send_until(rig, lambda: _tracks(600.0), lambda m: m.angular.z < 0)
    with rig["cond"]:  # stop publishing tracks: the watchdog must publish zero
        n = len(rig["cmds"])
        assert rig["cond"].wait_for(
            lambda: any(m.angular.z == 0.0 for m in rig["cmds"][n:]), timeout=10.0
        )

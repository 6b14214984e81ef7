"""tracker_node as a process over the real middleware: services, tracks, encodings, depth, LOST.

One tracker_node process (the installed executable, the shipped params file, remapped topics,
its own ROS domain) serves the whole module, because starting it loads the backbone. Tests
publish procedural frames from :mod:`meta_tracker_ros.ros.synthetic` (no data needed) and
wait on events with timeouts rather than sleeping, so they pass on a slow, shared CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")
pytest.importorskip("meta_tracker_ros.srv", reason="generated interfaces missing: `make build`")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from meta_tracker_ros.msg import TrackedObject, TrackedObjectArray  # noqa: E402
from meta_tracker_ros.srv import RemoveTarget, SetTarget  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from meta_tracker_ros.core.geometry import iou_xywh  # noqa: E402
from meta_tracker_ros.ros import conversions as conv  # noqa: E402
from meta_tracker_ros.ros import synthetic  # noqa: E402
from meta_tracker_ros.ros.image_source import camera_info_for  # noqa: E402
from meta_tracker_ros.tools import graph  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WIDTH, HEIGHT = 320, 180
WAIT = 90.0  # generous: the CPU is shared; events end the waits early
# The most set_target may wait for an initialisation: the top of the parameter's declared range
# (a value outside it would be rejected and replaced by the default, 1.5 s, at start-up).
SET_TARGET_TIMEOUT = "set_target_timeout:=30.0"


def ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return stamp.sec * 10**9 + stamp.nanosec


class Harness:
    """A client node plus helpers to publish frames, call services and wait for tracks."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("itest_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, "/cam/image", qos)
        self.pub_depth = self.node.create_publisher(Image, "/cam/depth", qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "/cam/camera_info", qos)
        self.tracks: list[TrackedObjectArray] = []
        self.diags: list[DiagnosticArray] = []
        self.debug: list[Image] = []
        self.cond = threading.Condition()
        self.node.create_subscription(TrackedObjectArray, "/tracker_node/tracks", self._on, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.set_client = self.node.create_client(SetTarget, "/tracker_node/set_target")
        self.remove_client = self.node.create_client(RemoveTarget, "/tracker_node/remove_target")
        self.param_client = self.node.create_client(SetParameters, "/tracker_node/set_parameters")
        clip = list(synthetic.clip(n_frames=120, width=WIDTH, height=HEIGHT))
        self.frames = [c[0] for c in clip]
        self.gt = [c[1] for c in clip]
        self.published: dict[int, int] = {}  # stamp ns -> frame index
        self.depth_m: float | None = None
        self._stream_stop = threading.Event()
        self._stream: threading.Thread | None = None

    def _on(self, msg: TrackedObjectArray) -> None:
        with self.cond:
            self.tracks.append(msg)
            self.cond.notify_all()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.cond:
            self.diags.append(msg)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout=timeout)

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def diag_after(self, t_ns: int):
        """The tracker_node diagnostics status stamped first at or after ``t_ns``; waits for it.

        Its stamp is the node's clock, so this waits until the node itself is past ``t_ns``.
        """

        def find():
            for d in self.diags:
                if ns(d.header.stamp) >= t_ns:
                    for status in d.status:
                        if status.name.startswith("tracker_node"):
                            return status
            return None

        assert self.wait_for(lambda: find() is not None), "no diagnostics from tracker_node"
        return find()

    def frames_received(self, after_ns: int) -> int:
        status = self.diag_after(after_ns)
        return int(next(kv.value for kv in status.values if kv.key == "frames_received"))

    def publish(self, index: int, encoding: str = "bgr8") -> Time:
        """Publish frame ``index`` (and camera_info + depth when depth_m is set)."""
        stamp = self.node.get_clock().now().to_msg()
        msg = conv.bgr_to_image(self.frames[index % len(self.frames)], encoding)
        msg.header.stamp, msg.header.frame_id = stamp, "cam"
        if self.depth_m is not None:
            depth = np.full((HEIGHT, WIDTH), self.depth_m, np.float32)
            dmsg = conv.metres_to_depth(depth, "16UC1")
            dmsg.header = msg.header
            info = camera_info_for(WIDTH, HEIGHT, 1.0, "cam")
            info.header = msg.header
            self.pub_info.publish(info)
            self.pub_depth.publish(dmsg)
        self.pub_image.publish(msg)
        self.published[ns(stamp)] = index % len(self.frames)
        return stamp

    def start_stream(self, rate: float = 15.0, start: int = 0) -> None:
        """Publish frames start, start+1, ... at ``rate`` Hz on a thread until stop_stream()."""
        self.stop_stream()
        self._stream_stop.clear()

        def run() -> None:
            i = start
            while not self._stream_stop.wait(1.0 / rate):
                self.publish(i)
                i += 1

        self._stream = threading.Thread(target=run, daemon=True)
        self._stream.start()

    def stop_stream(self) -> None:
        if self._stream is not None:
            self._stream_stop.set()
            self._stream.join()
            self._stream = None

    def call(self, client, request, timeout: float = WAIT):
        assert client.wait_for_service(timeout_sec=timeout), "service not available"
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), "service call timed out"
        return future.result()

    def set_target(self, box, stamp: Time | None = None, tid: str = "", **extra):
        req = SetTarget.Request(id=tid, x=float(box[0]), y=float(box[1]))
        req.width, req.height = float(box[2]), float(box[3])
        if stamp is not None:
            req.stamp = stamp
        for key, value in extra.items():
            setattr(req, key, value)
        return self.call(self.set_client, req)

    def remove(self, tid: str):
        return self.call(self.remove_client, RemoveTarget.Request(id=tid))

    def set_param(self, name: str, value):
        pv = ParameterValue()
        if isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        elif isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
        req = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
        return self.call(self.param_client, req).results[0]

    def close(self) -> None:
        self.stop_stream()
        self.executor.shutdown()
        self.node.destroy_node()


def _start_tracker(log: Path, ros_args: list[str]):
    """tracker_node with the shipped parameters plus ``ros_args``, in a new private ROS domain.

    Returns the process and an rclpy context initialised on the same domain.
    """
    domain = graph.random_domain_id()
    params = ["--params-file", str(graph.ROOT / "config" / "tracker_node.yaml")]
    proc = graph.start_node(
        "tracker_node", params + ros_args, log, env={"ROS_DOMAIN_ID": str(domain)}
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    return proc, context


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """tracker_node process + client harness in a private ROS domain."""
    log = tmp_path_factory.mktemp("tracker") / "tracker_node.log"
    proc, context = _start_tracker(
        log,
        [
            "-p", "lost_timeout:=1.0",
            "-p", SET_TARGET_TIMEOUT,
            "-p", "frame_ring_length:=20",
            "-p", "diagnostics_period:=0.5",
            "-r", "image:=/cam/image",
            "-r", "depth:=/cam/depth",
            "-r", "camera_info:=/cam/camera_info",
        ],
    )  # fmt: skip
    h = Harness(context)
    h.proc, h.log = proc, log
    try:
        assert h.set_client.wait_for_service(timeout_sec=WAIT), log.read_text()
        # Parameters are declared before the services exist: every override was taken as given.
        assert "override rejected" not in log.read_text(), log.read_text()
        yield h
    finally:
        h.close()
        rclpy.shutdown(context=context)
        graph.stop_node(proc)


def _until_image_received(h: Harness, index: int = 0) -> Time:
    """Publish frame ``index`` until the node has it (set_target stops saying 'no image')."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        stamp = h.publish(index)
        res = h.set_target((float("nan"), 0, 10, 10), stamp)
        if "no image" not in res.message and "too old" not in res.message:
            return stamp
        time.sleep(0.05)  # pacing between attempts; the service answer is the event
    raise AssertionError("tracker_node never received an image")


def test_set_target_before_any_image_fails_clearly(env):
    res = env.set_target((10, 10, 20, 20))
    assert not res.success
    assert "no image received yet" in res.message and "/cam/image" in res.message


def test_bad_requests_answer_false_with_a_reason(env):
    stamp = _until_image_received(env)
    cases = {
        "non-finite": env.set_target((float("nan"), 1, 10, 10), stamp),
        "positive width": env.set_target((10, 10, 0, 10), stamp),
        "positive width ": env.set_target((10, 10, -5, 10), stamp),
        "does not overlap": env.set_target((WIDTH + 5, 10, 20, 20), stamp),
        "mostly outside": env.set_target((204, 150, 1e9, 1e9), stamp),
        "mostly outside ": env.set_target((WIDTH - 10, 10, 40, 40), stamp),  # a quarter inside
        "non-finite ": env.set_target((10, 10, float("inf"), 10), stamp),
        "too old": env.set_target((10, 10, 20, 20), Time(sec=1, nanosec=0)),
        "yet": env.set_target((10, 10, 20, 20), Time(sec=stamp.sec + 100, nanosec=0)),
        "printable": env.set_target((10, 10, 20, 20), stamp, tid="bad\nid"),
        "mask is": env.set_target(
            (10, 10, 20, 20), stamp, mask=conv.mask_to_image(np.ones((5, 5), np.uint8))
        ),
        "mask must be mono8": env.set_target(
            (10, 10, 20, 20), stamp, mask=conv.bgr_to_image(np.zeros((4, 4, 3), np.uint8))
        ),
    }
    for expected, res in cases.items():
        assert not res.success, expected
        assert expected.strip() in res.message, (expected, res.message)
    res = env.remove("nobody")
    assert not res.success and "no target 'nobody'" in res.message
    assert env.proc.poll() is None
    assert env.set_target((WIDTH - 20, 10, 40, 40), stamp, tid="edge").success  # half inside
    assert env.remove("edge").success


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--params-file", "{bad_params}"], "lost_timeout"),
        (["--params-file", "{typo_params}"], "lost_timout"),
        (["-p", "image_reliability:=sometimes"], "image_reliability"),
        (["-p", "runtime.backend:=tensorflow"], "runtime.backend"),
        (["-p", "config_file:={broken_yaml}"], "config_file"),
    ],
    ids=["out-of-range", "unknown-name", "bad-choice", "bad-tracker-choice", "broken-yaml"],
)
def test_bad_configuration_stops_the_node_at_start_up(tmp_path, args, named):
    """A rejected override, an unknown parameter or a broken tracker YAML: exit 2, named."""
    files = {
        "bad_params": "tracker_node:\n  ros__parameters:\n    lost_timeout: 99999.0\n",
        "typo_params": "tracker_node:\n  ros__parameters:\n    lost_timout: 2.0\n",
        "broken_yaml": "mask: {enabled: [\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(text)
    log = tmp_path / "tracker_node.log"
    proc, context = _start_tracker(log, [a.format(**paths) for a in args])
    rclpy.shutdown(context=context)
    try:
        rc = proc.wait(timeout=WAIT)
    finally:
        graph.stop_node(proc)
    out = log.read_text()
    assert rc == 2, out[-2000:]
    assert "bad configuration" in out and named in out, out[-2000:]
    assert "tracker_node up" not in out


def test_set_track_and_remove_targets(env):
    stamp = _until_image_received(env, 0)
    res = env.set_target(env.gt[0], stamp, tid="a")
    assert res.success and res.id == "a", res.message
    n0 = len(env.tracks)
    env.start_stream(rate=15.0, start=1)
    assert env.wait_for(lambda: sum(1 for t in env.tracks[n0:] if t.objects) >= 3)
    got = [t for t in env.tracks[n0:] if t.objects]
    for msg in got:
        assert ns(msg.header.stamp) in env.published, "tracks header must be a published image's"
        assert msg.header.frame_id == "cam"
        obj = msg.objects[0]
        assert obj.id == "a" and obj.state != TrackedObject.STATE_LOST
    last = got[-1]
    obj = last.objects[0]
    index = env.published[ns(last.header.stamp)]
    assert iou_xywh(conv.msg_to_box(obj), env.gt[index]) > 0.3
    assert obj.mask.width > 0 and obj.mask.width == obj.mask_roi.width
    assert np.frombuffer(obj.mask.data, np.uint8).any(), "mask is empty"

    res = env.set_target((10, 10, 40, 40), Time(), tid="")  # zero stamp: newest; id assigned
    assert res.success and res.id, res.message
    second = res.id
    n1 = len(env.tracks)
    assert env.wait_for(
        lambda: any({o.id for o in t.objects} == {"a", second} for t in env.tracks[n1:])
    )
    assert env.remove("a").success
    n2 = len(env.tracks)
    assert env.wait_for(lambda: any([o.id for o in t.objects] == [second] for t in env.tracks[n2:]))
    assert env.remove("").success  # all
    env.stop_stream()


def test_targets_go_lost_when_frames_stop_and_recover(env):
    stamp = _until_image_received(env, 0)
    assert env.set_target(env.gt[0], stamp, tid="a").success
    env.start_stream(rate=15.0, start=1)
    n0 = len(env.tracks)
    assert env.wait_for(lambda: len(env.tracks) - n0 >= 2)
    env.stop_stream()
    n1 = len(env.tracks)
    assert env.wait_for(
        lambda: any(
            t.objects and all(o.state == TrackedObject.STATE_LOST for o in t.objects)
            for t in env.tracks[n1:]
        )
    ), "no LOST report after the images stopped"
    env.start_stream(rate=15.0, start=1)
    n2 = len(env.tracks)
    assert env.wait_for(
        lambda: any(o.state != TrackedObject.STATE_LOST for t in env.tracks[n2:] for o in t.objects)
    ), "targets did not recover when images resumed"
    env.stop_stream()
    assert env.remove("").success


def test_target_added_after_images_stopped_is_not_reported_lost(env):
    """A target initialised more than lost_timeout after the last image is not reported LOST.

    The CI flake behind this test: the images-stopped clock ran from the last image only, so a
    slow initialisation on a loaded CPU ended with the new, never-tracked target reported LOST,
    stamped now() (no image's stamp). Here the images stop for 2 s before the target is set on
    a kept frame, which made the old node report it at once, every time.
    """
    stamp = _until_image_received(env, 0)
    env.diag_after(ns(stamp) + 2 * 10**9)  # the node's clock is 2 s past the last image
    n0 = len(env.tracks)
    try:
        res = env.set_target(env.gt[0], stamp, tid="i")
        assert res.success, res.message
        status = env.diag_after(env.now_ns() + int(2.5e9))  # 2.5 lost_timeouts after the add
        reported = [t for t in env.tracks[n0:] if t.objects]
        assert not reported, f"new target reported: {[o.state for o in reported[0].objects]}"
        assert "LOST" not in status.message, status.message
        env.start_stream(rate=15.0, start=1)
        assert env.wait_for(lambda: sum(1 for t in env.tracks[n0:] if t.objects) >= 2)
        for msg in [t for t in env.tracks[n0:] if t.objects][:2]:
            assert ns(msg.header.stamp) in env.published, "header not an image's"
            assert msg.objects[0].id == "i" and msg.objects[0].state != TrackedObject.STATE_LOST
    finally:
        env.stop_stream()
        env.remove("")


def test_lost_report_counts_from_a_new_target_and_has_no_image_stamp(env):
    """Images stop, a second target is added: the LOST report comes lost_timeout after the add.

    It reports only the tracked target (the new one is still INITIALIZING), with the images'
    frame_id and the node's now() as stamp, which matches no published image.
    """
    timeout = 5.0
    stamp = _until_image_received(env, 0)
    assert env.set_target(env.gt[0], stamp, tid="a").success
    assert env.set_param("lost_timeout", timeout).successful
    try:
        n0 = len(env.tracks)
        env.start_stream(rate=15.0, start=1)
        assert env.wait_for(lambda: sum(1 for t in env.tracks[n0:] if t.objects) >= 2)
        env.stop_stream()
        last_image = max(env.published)
        env.diag_after(last_image + int(1.5e9))  # images stopped 1.5 s ago, on the node's clock
        t_request = env.now_ns()
        res = env.set_target((10, 10, 40, 40), Time(), tid="b")  # on the newest kept frame
        t_answer = env.now_ns()
        assert res.success, res.message

        def report():
            return next(
                (
                    t
                    for t in env.tracks[n0:]
                    if t.objects and all(o.state == TrackedObject.STATE_LOST for o in t.objects)
                ),
                None,
            )

        assert env.wait_for(lambda: report() is not None), "no LOST report after images stopped"
        msg = report()
        assert [o.id for o in msg.objects] == ["a"], "only the tracked target is reported LOST"
        assert msg.header.frame_id == "cam"
        assert ns(msg.header.stamp) not in env.published, "the LOST report has no image's stamp"
        assert ns(msg.header.stamp) >= last_image + int((timeout - 0.05) * 1e9)
        # The add ended before the images-stopped deadline (it ended by t_answer), so the clock
        # restarted at the add, which began after t_request. Under a load heavy enough to break
        # that premise the bound is not implied and is not checked.
        if t_answer < last_image + timeout * 1e9:
            assert ns(msg.header.stamp) >= t_request + int((timeout - 0.05) * 1e9), (
                "LOST reported less than lost_timeout after a target was added"
            )
    finally:
        env.stop_stream()
        assert env.set_param("lost_timeout", 1.0).successful
        env.remove("")


def _with_encoding(frame: np.ndarray, encoding: str, h: Harness) -> Image:
    msg = conv.bgr_to_image(frame, "bgr8")
    msg.encoding = encoding
    msg.header.stamp = h.node.get_clock().now().to_msg()
    return msg


def test_wrong_encodings_and_broken_images_are_skipped(env):
    stamp = _until_image_received(env, 0)
    assert env.set_target(env.gt[0], stamp, tid="a").success
    # Unsupported encodings are dropped in the callback without a trace but the one warning:
    # send each until the node has warned (the event), then twice more (it must not warn again).
    for encoding in ("nv21", "32FC3"):
        deadline = time.monotonic() + WAIT
        while f"unsupported image encoding '{encoding}'" not in env.log.read_text():
            assert time.monotonic() < deadline, f"no warning about {encoding}"
            env.pub_image.publish(_with_encoding(env.frames[1], encoding, env))
            time.sleep(0.1)  # pacing while polling the log
        for _ in range(2):
            env.pub_image.publish(_with_encoding(env.frames[1], encoding, env))
    broken = [
        Image(height=0, width=0, encoding="bgr8", step=0),
        Image(height=1, width=1, encoding="bgr8", step=3, data=bytes(3)),  # 1x1: too small
        Image(height=101, width=33, encoding="bgr8", step=99, data=bytes(10)),  # short data
        Image(height=4, width=3, encoding="yuv422", step=6, data=bytes(24)),  # odd width
        Image(height=7, width=5, encoding="rgb8", step=15, data=bytes(105)),  # odd size: ok
        Image(height=2000, width=3000, encoding="mono8", step=3000, data=bytes(6_000_000)),
    ]
    for encoding in ("rgb8", "mono8", "yuv422", "bgra8"):  # valid ones keep the node tracking
        msg = conv.bgr_to_image(env.frames[2], encoding)
        broken.append(msg)
    # One at a time, each acknowledged by the node's frames_received count (diagnostics), so
    # none is overwritten in the depth-1 queues before the node took it.
    received = env.frames_received(env.now_ns())
    for msg in broken:
        msg.header.stamp = env.node.get_clock().now().to_msg()
        env.pub_image.publish(msg)
        received += 1
        deadline = time.monotonic() + WAIT
        while env.frames_received(env.now_ns()) < received:  # waits for the next diagnostics
            assert time.monotonic() < deadline, f"{msg.width}x{msg.height} {msg.encoding} lost"
    n0 = len(env.tracks)
    env.start_stream(rate=15.0, start=3)
    assert env.wait_for(lambda: len(env.tracks) - n0 >= 2), "node stopped publishing tracks"
    env.stop_stream()
    assert env.proc.poll() is None, "tracker_node died"
    assert env.remove("").success
    log = env.log.read_text()
    assert log.count("unsupported image encoding 'nv21'") == 1, log[-2000:]
    assert log.count("unsupported image encoding '32FC3'") == 1


def test_depth_gives_position_and_rviz_markers(env):
    from visualization_msgs.msg import Marker, MarkerArray

    markers: list = []

    def on_markers(msg: MarkerArray) -> None:
        with env.cond:
            markers.append(msg)
            env.cond.notify_all()

    sub = env.node.create_subscription(MarkerArray, "/tracker_node/markers", on_markers, 10)
    env.depth_m = 2.0
    try:
        stamp = _until_image_received(env, 0)
        assert env.set_target(env.gt[0], stamp, tid="d").success
        n0 = len(env.tracks)
        env.start_stream(rate=15.0, start=1)
        assert env.wait_for(
            lambda: any(o.has_position for t in env.tracks[n0:] for o in t.objects)
        ), "no position although depth and camera_info are published"
        assert env.wait_for(
            lambda: any(m.type == Marker.SPHERE for a in markers for m in a.markers)
        ), "no rviz marker for a target with a position"
        env.stop_stream()
        msg = next(t for t in env.tracks[n0:] if any(o.has_position for o in t.objects))
        obj = msg.objects[0]
        assert obj.position.z == pytest.approx(2.0, abs=0.01)
        fx = (WIDTH / 2) / np.tan(0.5)
        expected_x = (obj.center_x - WIDTH / 2) * 2.0 / fx
        assert obj.position.x == pytest.approx(expected_x, abs=0.15)
        assert np.sign(obj.position.x) == np.sign(obj.center_x - WIDTH / 2)
        array = next(a for a in markers if any(m.type == Marker.SPHERE for m in a.markers))
        assert array.markers[0].action == Marker.DELETEALL
        sphere = next(m for m in array.markers if m.type == Marker.SPHERE)
        assert sphere.ns == "target/d" and sphere.pose.position.z == pytest.approx(2.0, abs=0.01)
        assert sphere.scale.x == pytest.approx(obj.size_x * 2.0 / fx, rel=0.5)
        # Removing the last target: no tracks message follows, the markers go at once.
        n1 = len(markers)
        assert env.remove("").success
        assert env.wait_for(
            lambda: any([m.action for m in a.markers] == [Marker.DELETEALL] for a in markers[n1:])
        ), "removing the targets did not clear their markers"
    finally:
        env.depth_m = None
        env.stop_stream()
        env.remove("")
        env.node.destroy_subscription(sub)


def test_parameters_read_only_ranges_and_runtime_changes(env):
    res = env.set_param("runtime.backend", "onnxruntime")
    assert not res.successful and "read-only" in res.reason.lower()
    res = env.set_param("frame_ring_length", 0)
    assert not res.successful
    assert env.set_param("lost_timeout", 1.5).successful
    assert env.set_param("localization.lost_after", 4).successful
    res = env.set_param("localization.uncertain_threshold", 7.0)
    assert not res.successful
    assert env.set_param("mask_as_roi", False).successful
    assert env.set_param("mask_as_roi", True).successful


def test_structural_change_rebuilds_and_keeps_tracking(env):
    """mask.enabled off while a target exists: tracker rebuilt, target kept, masks gone."""
    stamp = _until_image_received(env, 0)
    assert env.set_target(env.gt[0], stamp, tid="m").success
    env.start_stream(rate=15.0, start=1)
    try:
        assert env.set_param("mask.enabled", False).successful
        n0 = len(env.tracks)
        assert env.wait_for(
            lambda: sum(1 for t in env.tracks[n0 + 2 :] if any(o.id == "m" for o in t.objects)) >= 2
        )
        last = next(t for t in reversed(env.tracks) if t.objects)
        assert last.objects[0].mask.width == 0, "masks still published after mask.enabled=false"
        assert env.set_param("mask.enabled", True).successful
    finally:
        env.stop_stream()
        env.remove("")


def test_diagnostics_report_rate_backend_and_targets(env):
    def has_status() -> bool:
        return any(s.name.startswith("tracker_node") for d in env.diags for s in d.status)

    assert env.wait_for(has_status)
    status = next(s for d in env.diags for s in d.status if s.name.startswith("tracker_node"))
    keys = {kv.key for kv in status.values}
    assert {"processing_rate_hz", "latency_p50_ms", "backend", "device", "targets"} <= keys


def test_debug_image_only_when_subscribed(env):
    got = threading.Event()
    images: list[Image] = []

    def on_debug(msg: Image) -> None:
        images.append(msg)
        got.set()

    sub = env.node.create_subscription(Image, "/tracker_node/debug_image", on_debug, 1)
    try:
        env.start_stream(rate=10.0, start=0)
        assert got.wait(WAIT), "no debug image although subscribed"
        assert (images[0].width, images[0].height, images[0].encoding) == (WIDTH, HEIGHT, "bgr8")
    finally:
        env.stop_stream()
        env.node.destroy_subscription(sub)


def test_compressed_input(tmp_path):
    """use_compressed:=true: JPEG frames on image/compressed are tracked."""
    from sensor_msgs.msg import CompressedImage

    log = tmp_path / "tracker_node.log"
    proc, context = _start_tracker(
        log,
        [
            "-p", "use_compressed:=true",
            "-p", SET_TARGET_TIMEOUT,
            "-r", "image/compressed:=/cam/image/compressed",
        ],
    )  # fmt: skip
    h = Harness(context)
    pub = h.node.create_publisher(CompressedImage, "/cam/image/compressed", 1)
    try:
        assert h.set_client.wait_for_service(timeout_sec=WAIT), log.read_text()
        assert "override rejected" not in log.read_text(), log.read_text()

        def send(index: int) -> Time:
            msg = conv.bgr_to_compressed(h.frames[index], "jpeg")
            msg.header.stamp = h.node.get_clock().now().to_msg()
            pub.publish(msg)
            return msg.header.stamp

        deadline = time.monotonic() + WAIT
        res = None
        while time.monotonic() < deadline:  # until the node holds the frame just sent
            res = h.set_target(h.gt[0], send(0), tid="c")
            # Not there yet, or replaced unseen by a later one (depth-1 subscription on a busy
            # CPU): send another. The service answer is the event.
            if "no image" not in res.message and "no kept frame" not in res.message:
                break
            time.sleep(0.05)  # pacing
        assert res is not None and res.success, res.message if res else "no answer"
        deadline, i = time.monotonic() + WAIT, 1
        while not h.wait_for(lambda: any(t.objects for t in h.tracks), timeout=0.07):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            send(i % len(h.frames))
            i += 1
        assert h.tracks[-1].objects[0].id == "c"
    finally:
        h.close()
        rclpy.shutdown(context=context)
        graph.stop_node(proc)

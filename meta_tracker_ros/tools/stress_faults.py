"""Fault part of the reliability suite: what a robot's day does to tracker_node.

- *camera stop/restart under a CPU hog*: frames stop, the node reports the target LOST (one
  tracks message stamped by no image), frames resume and the target is tracked again; two busy
  processes run beside the node for the whole test.
- *QoS changes*: the camera publisher is replaced by a best-effort one and back; frames from
  each are tracked (the node re-matches its subscription's reliability, ros/qos.py).
- *node killed with an armed follower*: follower_node follows the tracks; SIGKILL of
  tracker_node must bring ``cmd_vel`` to zero (the follower's stale-tracks watchdog), and a
  restarted tracker_node serves again.
- *broken files*: missing and corrupt backbone weights, a corrupt ONNX file, a corrupt
  TensorRT engine-cache entry: the node must not crash; it either answers ``set_target`` with
  "tracker unavailable: <reason naming the file>" or falls back to the torch runtime and says
  so in its log, naming the backend.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from meta_tracker_ros.tools import graph
from meta_tracker_ros.tools.stress import WAIT, CpuHog, Rig, Summary, bad_log_lines
from meta_tracker_ros.tools.stress_fuzz import Streamer

STATE_TRACKING, STATE_LOST = 1, 3


def _camera_and_qos(summary: Summary, log_dir: Path) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    log = log_dir / "faults_camera.log"
    rig = Rig(log, ["-p", "lost_timeout:=1.0"])
    try:
        with CpuHog(2, seconds=WAIT * 3):
            assert rig.wait_subscribed(), f"tracker_node never subscribed; see {log}"
            stream = Streamer(rig)
            rig.set_on_frame(stream.msgs[0], [stream.boxes[0]])
            stream.start()
            first = stream.latest
            ok = rig.wait_for(lambda: len(rig.tracks) >= 3 and first() > 0)
            stream.stop()
            n_other = len(rig.other_tracks)

            def lost_report() -> bool:
                return any(
                    o.state == STATE_LOST for m in rig.other_tracks[n_other:] for o in m.objects
                )

            lost = ok and rig.wait_for(lost_report)
            summary.check(lost, "camera stop: target reported LOST (stamp of no image)")
            before = len(rig.tracks)
            stream = Streamer(rig).start()

            def tracking_again() -> bool:
                new = sorted(rig.tracks)[before:]
                return any(o.state == STATE_TRACKING for s in new for o in rig.tracks[s][1].objects)

            again = rig.wait_for(tracking_again)
            stream.stop()
            summary.check(again, "camera restart: target tracked again (under a 2-process hog)")
            # QoS: the camera publisher replaced by a best-effort one, then a reliable one again.
            for policy in (ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE):
                rig.camera.destroy_publisher(rig.pub)  # never spun: no race with the executor
                rig.pub = rig.camera.create_publisher(
                    rig.Image, rig.image_topic, QoSProfile(depth=1, reliability=policy)
                )
                rig.wait_subscribed()
                got = None
                for _ in range(100):  # frames may be dropped until the node re-matches its QoS
                    got = rig.wait_tracks(rig.publish(stream.msgs[5]), timeout=2.0)
                    if got is not None:
                        break
                summary.check(got is not None, f"QoS {policy.name.lower()} camera: frames tracked")
        alive = rig.alive()
    finally:
        rc = rig.close()
    summary.crashes += 0 if alive else 1
    summary.check(alive and rc == 0, f"camera/QoS: node up, clean exit (rc={rc})")
    bad = bad_log_lines(log)
    summary.check(not bad, f"camera/QoS: no exception in the log {bad[:3]}")


def _kill_with_follower(summary: Summary, log_dir: Path) -> None:
    from geometry_msgs.msg import Twist
    from std_srvs.srv import SetBool

    rig = Rig(log_dir / "faults_kill.log")
    follower = graph.start_node(
        "follower_node",
        [
            "--params-file", str(graph.ROOT / "config" / "follower_node.yaml"),
            "-p", "stale_timeout:=0.5",
            "-p", "max_yaw_accel:=100.0",
            "-r", "tracks:=/tracker_node/tracks",
            "-r", "cmd_vel:=/robot/cmd_vel",
        ],
        log_dir / "faults_follower.log",
        env={"ROS_DOMAIN_ID": str(rig.domain)},
    )  # fmt: skip
    cmds: list[Any] = []

    def on_cmd(msg: Any) -> None:
        with rig.cond:
            cmds.append(msg)
            rig.cond.notify_all()

    rig.node.create_subscription(Twist, "/robot/cmd_vel", on_cmd, 50)
    try:
        assert rig.wait_subscribed(), "tracker_node never subscribed"
        stream = Streamer(rig)
        # A target off-centre, so an armed follower turns towards it.
        rig.set_on_frame(stream.msgs[0], [(10, 60, 40, 40)])
        arm = rig.node.create_client(SetBool, "/follower_node/enable")
        armed = rig.call(arm, SetBool.Request(data=True))
        summary.check(armed is not None and armed.success, "follower armed")
        stream.start()
        moving = rig.wait_for(lambda: any(abs(c.angular.z) > 1e-3 for c in cmds))
        summary.check(moving, "armed follower turns towards the tracked target")
        rig.proc.kill()
        rig.proc.wait()
        n = len(cmds)
        stopped = rig.wait_for(
            lambda: any(c.angular.z == 0.0 and c.linear.x == 0.0 for c in cmds[n:])
        )
        summary.check(stopped, "tracker_node SIGKILLed: follower publishes a zero Twist")
        restarted = time.time_ns()
        rig.restart()
        stream.stop()
        # The killed node's service can linger in discovery: wait for the new process's first
        # diagnostics (an event) before calling, so no request goes to the dead one only.
        res = None
        if rig.diag_after(restarted) is not None:
            res = rig.set_on_frame_or_answer(stream.msgs[0], (10, 60, 40, 40))
        summary.check(
            res is not None and res.success, "restarted tracker_node accepts targets again"
        )
        alive = rig.alive() and follower.poll() is None
    finally:
        graph.stop_node(follower)
        rig.close()
    summary.check(alive, "kill/restart: restarted node and follower up")


def _broken_files(summary: Summary, log_dir: Path, quick: bool) -> None:
    """Start the node with broken files; each must be survived and named."""
    work = log_dir / "broken"
    work.mkdir(exist_ok=True)
    corrupt = work / "corrupt_weights.pth"
    corrupt.write_bytes(b"not a torch file\x00" * 64)
    onnx = work / "corrupt_backbone.onnx"
    onnx.write_bytes(b"\x08\x07garbage onnx" * 100)
    engines = work / "engines"
    engines.mkdir(exist_ok=True)
    (engines / "corrupt_backbone.engine").write_bytes(b"\x00" * 512)
    (engines / "corrupt_backbone.key.json").write_text("{not json")
    cases = [
        ("missing weights", ["-p", f"backbone.weights:={work / 'missing.pth'}"], "missing.pth"),
        ("corrupt weights", ["-p", f"backbone.weights:={corrupt}"], corrupt.name),
        (
            "corrupt ONNX",
            ["-p", "runtime.backend:=onnxruntime", "-p", f"runtime.onnx_path:={onnx}"],
            "onnxruntime",
        ),
        (
            "corrupt engine cache",
            [
                "-p",
                "runtime.backend:=tensorrt",
                "-p",
                f"runtime.onnx_path:={onnx}",
                "-p",
                f"runtime.engine_dir:={engines}",
            ],
            "tensorrt",
        ),
    ]
    if quick:
        cases = cases[:1]
    for label, args, named in cases:
        log = log_dir / f"faults_{label.replace(' ', '_')}.log"
        rig = Rig(log, args)
        try:
            assert rig.wait_subscribed(), f"tracker_node never subscribed; see {log}"
            stream = Streamer(rig)
            res = rig.set_on_frame_or_answer(stream.msgs[0], (40, 40, 30, 30))
            text = log.read_text(errors="replace")
            if res.success:  # a fallback: the log must say which backend failed and why
                ok = "falling back" in text and named in text
                how = "fell back to torch, named in the log"
            else:
                ok = "tracker unavailable" in res.message and named in res.message
                how = f"answers '{res.message[:90]}...'"
            summary.check(ok and rig.alive(), f"{label}: node up, {how}")
            alive = rig.alive()
        finally:
            rc = rig.close()
        summary.crashes += 0 if alive else 1
        summary.check(rc == 0, f"{label}: clean exit (rc={rc})")


def run(summary: Summary, log_dir: Path, quick: bool = False) -> None:
    """The fault tests (``quick``: no kill/restart, one broken-file case); adds to ``summary``."""
    tests = [
        ("camera stop/restart + QoS + CPU hog", lambda: _camera_and_qos(summary, log_dir)),
        ("node killed with an armed follower", lambda: _kill_with_follower(summary, log_dir)),
        ("broken weights/ONNX/engine", lambda: _broken_files(summary, log_dir, quick)),
    ]
    if quick:  # the kill/restart test starts three processes: make stress only
        del tests[1]
    for name, test in tests:
        print(f"faults: {name}", flush=True)
        try:
            test()
        except Exception as exc:  # one fault test failing must not hide the others
            summary.check(False, f"{name}: {type(exc).__name__}: {exc}")

"""End-to-end latency of tracker_node as an external client sees it (prints numbers).

    python -m meta_tracker_ros.tools.latency_bench [--sequence uav_person11] [--targets 1 4]
        [--rate 30] [--frames 150] [--size 640x360] [--offline]

For each target count it starts the ``tracker_node`` executable (remapped to
``/camera/image_raw`` like a real deployment), publishes a ../shared/data sequence at ``--rate``
Hz (frames resized to ``--size``), sets the targets through ``/tracker_node/set_target`` on the
first frame with that frame's stamp (the first ground-truth box, plus boxes of the same size
elsewhere for extra targets), and measures for every tracks message the time from the image's
publication (its stamp, taken from the same clock just before publishing) to its reception.

Prints latency p50/p95/max, the processed-frame rate (tracks messages per second), the
frames dropped by the newest-frame-only policy, the node's own means from ``/diagnostics``
(``receive``: stamp to the image callback, i.e. transport; ``wait``: a processed frame's time
queued behind the previous frame's step; ``tracker``; ``publish``: building and publishing the
results), so the latency splits into transport, queueing and work, and for one target the
success AUC of the boxes on the processed frames; ``--offline`` also runs the core on every
frame in this process for the offline AUC of the same frames. ``--dds`` picks the Fast DDS
profile of the two processes (default: the shipped large-message profile in both, as the launch
files set it). Latency depends on the CPU load: say what else ran when reporting numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from meta_tracker_ros.core.geometry import iou_xywh
from meta_tracker_ros.evaluation.metrics import success_curve
from meta_tracker_ros.tools import graph


def success_auc(ious: list[float]) -> float:
    """Area under the success curve (the evaluation's 21 IoU thresholds), in percent."""
    return float(success_curve(ious).mean() * 100) if ious else float("nan")


def load_sequence(data: Path, name: str, size: tuple[int, int], n: int):
    """Frames (resized BGR) and 0-based GT boxes (scaled) of a shared-data sequence."""
    from meta_tracker_ros.evaluation.datasets import load_shared

    seqs = {s.name: s for s in load_shared(data)}
    if name not in seqs:
        raise SystemExit(f"sequence {name} not in {data} (have: {', '.join(sorted(seqs))})")
    seq = seqs[name]
    frames, boxes = [], []
    for i in range(min(n, len(seq))):
        img = seq.frame(i)
        sx, sy = size[0] / img.shape[1], size[1] / img.shape[0]
        frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
        x, y, w, h = seq.boxes[i]
        boxes.append((x * sx, y * sy, w * sx, h * sy))
    return frames, boxes


# Fractions of the image (left, top) for the extra targets' boxes (stage_bench uses them too).
SPOTS = [(0.15, 0.2), (0.8, 0.25), (0.2, 0.75), (0.75, 0.75), (0.5, 0.15), (0.45, 0.8), (0.05, 0.5)]


def extra_boxes(first: tuple, size: tuple[int, int], count: int) -> list[tuple]:
    """``count`` boxes of the first box's size spread over the image (extra targets).

    Raises ``ValueError`` beyond the known spots (it once gave fewer boxes than asked).
    """
    if count > len(SPOTS):
        raise ValueError(f"at most {len(SPOTS) + 1} targets (got {count + 1})")
    _, _, w, h = first
    width, height = size
    out = []
    for fx, fy in SPOTS[:count]:
        out.append((min(width - w, fx * width), min(height - h, fy * height), w, h))
    return out


# The shipped Fast DDS profile for large images (32 MB shared-memory segment).
PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
LARGE_PROFILE = graph.ROOT / "config" / "fastdds_large_messages.xml"


def dds_environment(mode: str) -> tuple[dict[str, str | None], str | None]:
    """(node env changes, client's profile file or None) for ``--dds`` ``mode``.

    ``shm``: the shipped large-message profile in both processes (what the README recommends
    for a same-host camera); ``client``: in the publishing client only; ``default``: in
    neither (Fast DDS's built-in transports, whose 512 kB shared-memory segments cannot hold a
    691 kB image, so it travels as UDP fragments over loopback); ``inherit``: whatever this
    shell exports, for both.
    """
    profile = str(LARGE_PROFILE)
    inherited = os.environ.get(PROFILE_VAR)
    return {
        "shm": ({PROFILE_VAR: profile}, profile),
        "client": ({PROFILE_VAR: None}, profile),
        "default": ({PROFILE_VAR: None}, None),
        "inherit": ({}, inherited),
    }[mode]


def run_once(
    frames,
    boxes,
    targets: int,
    rate: float,
    log: Path,
    extra: list[str] | None = None,
    dds: str = "shm",
) -> dict:
    """One tracker_node process, one publishing run; returns the measurements."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from meta_tracker_ros.msg import TrackedObjectArray
    from meta_tracker_ros.ros.conversions import bgr_to_image, msg_to_box
    from meta_tracker_ros.srv import SetTarget

    node_env, client_profile = dds_environment(dds)
    proc = graph.start_node(
        "tracker_node",
        [
            "--params-file", str(graph.ROOT / "config" / "tracker_node.yaml"),
            "-p", "set_target_timeout:=30.0",
            "-r", "image:=/camera/image_raw",
            *[a for p in extra or [] for a in ("-p", p)],
        ],
        log,
        node_env,
    )  # fmt: skip
    # Fast DDS reads the profile variable when this process's participant is created.
    saved = os.environ.pop(PROFILE_VAR, None)
    if client_profile:
        os.environ[PROFILE_VAR] = client_profile
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("latency_bench", context=context)
    os.environ.pop(PROFILE_VAR, None)
    if saved is not None:
        os.environ[PROFILE_VAR] = saved
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    received: dict[int, tuple[int, object]] = {}

    def on_tracks(msg) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        received[stamp] = (time.time_ns(), msg)

    pub = node.create_publisher(
        Image,
        "/camera/image_raw",
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
    )
    node.create_subscription(TrackedObjectArray, "/tracker_node/tracks", on_tracks, 50)
    diag: dict[str, str] = {}

    def on_diag(msg) -> None:
        for status in msg.status:
            if status.name.startswith("tracker_node"):
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    try:
        if not graph.wait_for_service(node, SetTarget, "/tracker_node/set_target", 60.0):
            raise SystemExit(f"tracker_node did not start; see {log}")
        end = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.02)
        msgs = [bgr_to_image(f) for f in frames]
        # First frame: publish (repeatedly, same stamp) until set_target accepts it.
        msgs[0].header.stamp.sec, msgs[0].header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        client = node.create_client(SetTarget, "/tracker_node/set_target")
        init_boxes = [boxes[0], *extra_boxes(boxes[0], frames[0].shape[1::-1], targets - 1)]
        t0 = time.monotonic()
        for k, box in enumerate(init_boxes):
            req = SetTarget.Request(id=f"t{k}", x=box[0], y=box[1], width=box[2], height=box[3])
            req.stamp = msgs[0].header.stamp
            for _ in range(100):
                pub.publish(msgs[0])
                future = client.call_async(req)
                end = time.monotonic() + 60.0
                while not future.done() and time.monotonic() < end:
                    time.sleep(0.01)
                res = future.result() if future.done() else None
                if res is not None and (res.success or "no image" not in res.message):
                    break
                time.sleep(0.1)
            if res is None or not res.success:
                raise SystemExit(f"set_target failed: {res.message if res else 'timeout'}")
        init_s = time.monotonic() - t0
        sent: dict[int, int] = {}
        period = 1.0 / rate
        start = time.monotonic()
        for i in range(1, len(msgs)):
            due = start + (i - 1) * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time_ns()
            msgs[i].header.stamp.sec, msgs[i].header.stamp.nanosec = divmod(now, 10**9)
            pub.publish(msgs[i])
            sent[now] = i
        duration = time.monotonic() - start
        time.sleep(2.0)
    finally:
        graph.stop_node(proc)
        executor.shutdown()
        # Join the spin thread before tearing down what it waits on: left running into the
        # interpreter's exit, it ended some runs with "terminate called without an active
        # exception" (the executor's C++ wait set torn down under it).
        spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.shutdown(context=context)
    lat, ious, recv_times = [], [], []
    for stamp, (recv, msg) in received.items():
        if stamp not in sent:
            continue
        lat.append((recv - stamp) / 1e6)
        recv_times.append(recv)
        obj = next((o for o in msg.objects if o.id == "t0"), None)
        if obj is not None:
            ious.append(iou_xywh(msg_to_box(obj), boxes[sent[stamp]]))
    recv_times.sort()
    span = (recv_times[-1] - recv_times[0]) / 1e9 if len(recv_times) > 1 else 0.0
    return {
        "targets": targets,
        "init_s": init_s,
        "published": len(sent),
        "processed": len(lat),
        "publish_rate": len(sent) / duration if duration > 0 else 0.0,
        "processed_rate": (len(recv_times) - 1) / span if span > 0 else 0.0,
        "latency": np.array(lat),
        "auc": success_auc(ious),
        "node_received": diag.get("frames_received", "?"),
        "node_dropped": diag.get("frames_dropped", "?"),
        "tracker_ms": diag.get("tracker_ms_mean", "?"),
        "receive_ms": diag.get("stage_receive_ms", "?"),
        "wait_ms": diag.get("stage_wait_ms", "?"),
        "publish_ms": diag.get("stage_publish_ms", "?"),
    }


def offline_auc(frames, boxes) -> float:
    """The core on every frame in-process (no ROS): the offline reference for the AUC."""
    from meta_tracker_ros.core import create_multi_tracker
    from meta_tracker_ros.core.config import load_config

    tracker = create_multi_tracker(load_config(None))
    tracker.add("t0", frames[0], boxes[0])
    ious = [
        iou_xywh(tracker.track(f)["t0"].box, b) for f, b in zip(frames[1:], boxes[1:], strict=True)
    ]
    return success_auc(ious)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each target count and print a table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=graph.ROOT.parent / "shared" / "data")
    p.add_argument("--sequence", default="uav_person11")
    p.add_argument("--targets", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", default="640x360")
    p.add_argument("--offline", action="store_true", help="also the offline AUC of the core")
    p.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    p.add_argument(
        "--dds",
        choices=("shm", "client", "default", "inherit"),
        default="shm",
        help="Fast DDS profile: the shipped large-message profile in both processes (shm, the "
        "recommended same-host setup), in the client only, in neither, or as exported",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="extra tracker_node parameter, e.g. runtime.num_threads:=1 (repeatable)",
    )
    args = p.parse_args(argv)
    if max(args.targets) > len(SPOTS) + 1:
        p.error(f"--targets: at most {len(SPOTS) + 1} (the first box and {len(SPOTS)} spots)")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    frames, boxes = load_sequence(args.data, args.sequence, size, args.frames)
    domain = graph.pick_domain_id()
    print(
        f"latency_bench: {args.sequence}, {len(frames)} frames at {size[0]}x{size[1]}, "
        f"{args.rate:g} Hz, ROS_DOMAIN_ID={domain}, --dds {args.dds}"
    )
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load average before: {' '.join(load)} (other processes share this CPU)")
    except OSError:
        pass
    args.log_dir.mkdir(parents=True, exist_ok=True)
    for n in args.targets:
        log = args.log_dir / f"latency_bench_{n}.log"
        r = run_once(frames, boxes, n, args.rate, log, args.param, args.dds)
        lat = r["latency"]
        print(
            f"targets={n}: latency p50={np.percentile(lat, 50):.1f} ms "
            f"p95={np.percentile(lat, 95):.1f} ms max={lat.max():.1f} ms | processed "
            f"{r['processed']}/{r['published']} frames, {r['processed_rate']:.1f} Hz "
            f"(published {r['publish_rate']:.1f} Hz) | init {r['init_s']:.2f} s | "
            f"AUC(target t0, processed frames)={r['auc']:.1f} | node: received "
            f"{r['node_received']}, dropped {r['node_dropped']}; mean ms: receive "
            f"{r['receive_ms']}, wait {r['wait_ms']}, tracker {r['tracker_ms']}, publish "
            f"{r['publish_ms']}"
        )
    if args.offline:
        print(f"offline core AUC on all {len(frames)} frames: {offline_auc(frames, boxes):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

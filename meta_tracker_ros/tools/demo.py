"""``make demo``: the full graph (image_source -> tracker_node, target set through the service).

    python -m meta_tracker_ros.tools.demo --output demo_output [--input X] [--box x,y,w,h]

Without ``--input`` the image source plays the procedural clip of
:mod:`meta_tracker_ros.ros.synthetic` (no download, no camera) and the box is its first-frame
ground truth. With ``--input`` (video, image folder, ``/dev/videoN``) the box comes from
``--box`` or, for a ``../shared/data`` sequence folder, from its first ground-truth row.

The tool starts ``tracker_node`` and ``image_source`` as processes (like ``ros2 launch`` would),
records ``image`` and ``~/tracks`` from a node of its own, calls ``~/set_target`` on the first
image with that image's stamp, and writes to ``--output``:

- ``annotated.mp4``: every source frame with the newest tracks at or before it drawn on it;
- ``tracks.jsonl``: one line per tracks message (stamp, frame index, latency, objects);
- ``summary.json`` / ``summary.txt``: frames, processed FPS, latency percentiles, accuracy
  against the synthetic ground truth when available;
- ``tracker_node.log`` / ``image_source.log``: the nodes' output.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from meta_tracker_ros.core.geometry import iou_xywh
from meta_tracker_ros.tools import graph


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'x,y,w,h' (commas or spaces) -> 4 floats."""
    values = [float(v) for v in text.replace(",", " ").split()]
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box needs 4 numbers x,y,w,h, got {text!r}")
    return (values[0], values[1], values[2], values[3])


def first_gt_box(folder: Path) -> tuple[float, float, float, float] | None:
    """First ground-truth box of a ../shared/data sequence folder (0-based), if it has one."""
    try:
        from meta_tracker_ros.evaluation.datasets import load_shared

        root = folder.resolve().parents[1]
        for seq in load_shared(root):
            if seq.name == folder.name and len(seq.boxes):
                return tuple(float(v) for v in seq.boxes[0])  # type: ignore[return-value]
    except Exception:
        pass
    gt = folder / "groundtruth.txt"
    if gt.is_file():
        return parse_box(gt.read_text().splitlines()[0])
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the demo graph and write the outputs; exit status 0 when tracks were received."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("demo_output"))
    p.add_argument("--input", default="synthetic", help="synthetic | video | folder | /dev/videoN")
    p.add_argument("--box", type=parse_box, default=None, help="x,y,w,h on the first frame")
    p.add_argument("--rate", type=float, default=30.0, help="image rate (Hz)")
    p.add_argument("--frames", type=int, default=0, help="stop after N frames (0: input length)")
    p.add_argument("--params", type=Path, default=graph.ROOT / "config" / "tracker_node.yaml")
    args = p.parse_args(argv)

    from meta_tracker_ros.ros import synthetic

    gt: list = []
    if args.input == "synthetic":
        gt = [b for _, b, _ in synthetic.clip()]
        box = args.box or gt[0]
    else:
        box = args.box
        if box is None and Path(args.input).is_dir():
            box = first_gt_box(Path(args.input))
        if box is None:
            p.error("--box x,y,w,h is needed for this input")
    frames_limit = args.frames or (300 if str(args.input).startswith("/dev/video") else 0)

    args.output.mkdir(parents=True, exist_ok=True)
    domain = graph.pick_domain_id()
    print(f"demo: ROS_DOMAIN_ID={domain}, input={args.input}, box={box}")

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from meta_tracker_ros.msg import TrackedObjectArray
    from meta_tracker_ros.ros import conversions as conv
    from meta_tracker_ros.ros.debug_draw import draw_tracks
    from meta_tracker_ros.srv import SetTarget

    remap = ["-r", "image:=/demo/image", "-r", "camera_info:=/demo/camera_info"]
    # A long set_target_timeout: the demo waits for the initialisation before playing on.
    tracker = graph.start_node(
        "tracker_node",
        ["--params-file", str(args.params), "-p", "set_target_timeout:=30.0", *remap],
        args.output / "tracker_node.log",
    )
    rclpy.init()
    node = rclpy.create_node("demo_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    source = None
    try:
        if not graph.wait_for_service(node, SetTarget, "/tracker_node/set_target", 60.0):
            print("tracker_node did not start; see tracker_node.log", file=sys.stderr)
            return 1
        images: dict[int, tuple[int, np.ndarray]] = {}
        order: list[int] = []
        tracks: list[tuple[float, object]] = []
        first = threading.Event()
        lock = threading.Lock()

        def on_image(msg: Image) -> None:
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            with lock:
                if stamp in images:  # the paused source re-sends its first frame
                    return
                images[stamp] = (len(order), conv.image_to_bgr(msg))
                order.append(stamp)
            first.set()

        def on_tracks(msg) -> None:
            tracks.append((node.get_clock().now().nanoseconds, msg))

        node.create_subscription(
            Image,
            "/demo/image",
            on_image,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        node.create_subscription(TrackedObjectArray, "/tracker_node/tracks", on_tracks, 100)
        source = graph.start_node(
            "image_source",
            [
                "-p", f"input:={args.input}",
                "-p", f"rate:={args.rate}",
                "-p", f"max_frames:={frames_limit}",
                "-p", "wait_for_subscribers:=2",
                "-p", "start_paused:=true",
                "-p", "queue_depth:=50",  # the recorder must see every frame for the video
                *remap,
            ],
            args.output / "image_source.log",
        )  # fmt: skip
        if not first.wait(timeout=60.0):
            print("no image from image_source; see image_source.log", file=sys.stderr)
            return 1
        with lock:
            stamp0 = order[0]
        req = SetTarget.Request()
        req.id = "target"
        req.stamp.sec, req.stamp.nanosec = divmod(stamp0, 10**9)
        req.x, req.y, req.width, req.height = (float(v) for v in box)
        t0 = time.monotonic()
        client = node.create_client(SetTarget, "/tracker_node/set_target")
        res = None
        while time.monotonic() - t0 < 30.0:
            future = client.call_async(req)
            while not future.done() and time.monotonic() - t0 < 30.0:
                time.sleep(0.01)
            res = future.result() if future.done() else None
            if res is None or res.success or "no image" not in res.message:
                break
            time.sleep(0.2)  # the tracker has not received the (re-sent) first frame yet
        set_ms = (time.monotonic() - t0) * 1000
        print(f"set_target: {res.message if res else 'no answer'} ({set_ms:.0f} ms)")
        if res is None or not res.success:
            return 1
        from std_srvs.srv import SetBool

        resume = node.create_client(SetBool, "/image_source/pause")
        resume.wait_for_service(timeout_sec=10.0)
        done = resume.call_async(SetBool.Request(data=False))
        while not done.done() and source.poll() is None:
            time.sleep(0.01)
        while source.poll() is None:
            time.sleep(0.1)
        time.sleep(2.0)  # let the last frames be processed
    finally:
        if source is not None:
            graph.stop_node(source)
        graph.stop_node(tracker)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()

    return write_outputs(args.output, images, order, tracks, gt, set_ms, draw_tracks, conv)


def write_outputs(out: Path, images, order, tracks, gt, set_ms, draw_tracks, conv) -> int:
    """Annotated video, tracks.jsonl and the summary."""
    by_stamp = {}
    latencies = []
    with open(out / "tracks.jsonl", "w", encoding="utf-8") as fh:
        for recv_ns, msg in tracks:
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            index = images.get(stamp, (-1, None))[0]
            latency = (recv_ns - stamp) / 1e6 if index >= 0 else None
            if latency is not None:
                latencies.append(latency)
                by_stamp[stamp] = msg
            objects = []
            for o in msg.objects:
                box = conv.msg_to_box(o)
                objects.append(
                    {
                        "id": o.id,
                        "state": int(o.state),
                        "score": round(float(o.score), 4),
                        "box": [round(v, 2) for v in box],
                        "mask_pixels": int(np.count_nonzero(np.frombuffer(o.mask.data, np.uint8))),
                        "position": [o.position.x, o.position.y, o.position.z]
                        if o.has_position
                        else None,
                    }
                )
            fh.write(
                json.dumps(
                    {
                        "stamp_ns": stamp,
                        "frame": index,
                        "latency_ms": None if latency is None else round(latency, 2),
                        "objects": objects,
                    }
                )
                + "\n"
            )
    video_path = out / "annotated.mp4"
    writer = None
    current = None
    ious = []
    for stamp in order:
        index, frame = images[stamp]
        if stamp in by_stamp:
            current = by_stamp[stamp]
        items = []
        if current is not None:
            h, w = frame.shape[:2]
            for o in current.objects:
                box = conv.msg_to_box(o)
                items.append((o.id, box, o.state, o.score, conv.msg_mask_full(o, w, h)))
                if gt and index < len(gt) and index > 0:
                    ious.append(iou_xywh(box, gt[index]))
        image = draw_tracks(frame, items, text=f"frame {index}")
        if writer is None:
            writer = cv2.VideoWriter(
                str(video_path),
                cv2.VideoWriter_fourcc(*"mp4v"),
                30.0,
                (frame.shape[1], frame.shape[0]),
            )
        writer.write(image)
    if writer is not None:
        writer.release()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    duration = 0.0
    if len(tracks) > 1:
        duration = (tracks[-1][0] - tracks[0][0]) / 1e9
    summary = {
        "frames_published": len(order),
        "tracks_messages": len(tracks),
        "frames_processed": len(latencies),
        "processed_fps": round((len(tracks) - 1) / duration, 2) if duration > 0 else 0.0,
        "latency_ms": {
            "p50": round(float(np.nanpercentile(lat, 50)), 1),
            "p95": round(float(np.nanpercentile(lat, 95)), 1),
            "max": round(float(np.nanmax(lat)), 1),
        },
        "set_target_ms": round(set_ms, 1),
        "mean_iou_vs_synthetic_gt": round(float(np.mean(ious)), 3) if ious else None,
        "success_at_0.5": round(float(np.mean(np.array(ious) > 0.5)), 3) if ious else None,
        "video": str(video_path),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = "\n".join(f"{k}: {v}" for k, v in summary.items())
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if latencies else 1


if __name__ == "__main__":
    sys.exit(main())

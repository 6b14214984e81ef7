"""Where the time goes: per-stage milliseconds of the core and of the node path (prints tables).

    python -m meta_tracker_ros.tools.stage_bench [--data ../shared/data] [--sequence uav_person11]
        [--targets 1,4,8] [--wide 0] [--frames 60] [--threads 1] [--size 640x360] [--node]
        [--compare-before]

Core: a :class:`~meta_tracker_ros.core.multi.MultiTracker` at ``--threads`` torch threads (the
node's ``runtime.num_threads``) tracks a real sequence, resized to ``--size`` like the latency
benchmark, with 1, 4 and 8 targets (the first ground-truth box plus boxes of the same size
spread over the image). ``--wide K`` forces the first K targets into the widest search region
every frame (what a LOST/UNCERTAIN target searches), the case where crops of different sizes
meet in one frame. The tracker's own stage record (``core/timing.py``) gives crop, to-tensor,
backbone, classifier, scale, refine (the box refiner), mask, update (memory and filter refinement)
and other.

``--compare-before`` runs, interleaved frame by frame with the current code, the former
batching (before issue 11): every crop padded to the largest and all in one backbone call (an
A/B in one process, so both see the same load).

Node path (``--node``, needs the built messages): per frame for one target, the steps
``tracker_node`` runs, timed in this process without DDS: deserialising a bgr8
``sensor_msgs/Image`` (what rclpy does before the callback), the conversion to a BGR array,
the tracker, building the ``TrackedObjectArray`` (mask as ROI) and serialising it (what
publishing costs in Python before DDS). Transport and queueing are what ``latency_bench``
adds on top. Times depend on the load: say what else ran when reporting them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import torch

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import crops_to_tensor
from meta_tracker_ros.core.multi import MultiTracker
from meta_tracker_ros.core.timing import CORE_STAGES
from meta_tracker_ros.tools import graph
from meta_tracker_ros.tools.latency_bench import extra_boxes


def target_boxes(first: tuple, size: tuple[int, int], count: int) -> list[tuple]:
    """The first box plus ``count - 1`` boxes of its size spread over the image."""
    return [tuple(first), *extra_boxes(first, size, max(0, count - 1))]


def padded_extract_each(tracker: MultiTracker, images: list[np.ndarray]):
    """The former batching (before issue 11): every crop padded to the largest, one call for all."""
    side = max(im.shape[0] for im in images)
    padded = [np.pad(im, ((0, side - im.shape[0]),) * 2 + ((0, 0),), mode="edge") for im in images]
    with tracker.times.measure("to_tensor"):
        batch = crops_to_tensor(padded, tracker.device)
    with tracker.times.measure("backbone"):
        feats = tracker.backbone.extract(batch)
    out = []
    for i, im in enumerate(images):
        mine = {}
        for lv, f in feats.items():
            n = im.shape[0] * f.shape[-1] // side
            mine[lv] = f[i : i + 1, :, :n, :n]
        out.append(mine)
    return out


def _widen(tracker: MultiTracker, ids: list[Hashable], wide: int) -> None:
    cfg = tracker.config.search
    for tid in ids[:wide]:
        tracker._targets[tid].search_area = cfg.max_search_area


def bench_core(
    frames: list[np.ndarray],
    boxes: list[tuple],
    targets: int,
    wide: int,
    config: TrackerConfig,
    warmup: int,
    compare_before: bool,
) -> dict[str, dict[str, float]]:
    """Mean ms per frame and stage: {"current": ..., "before": ...} (the latter when asked)."""
    variants = {"current": MultiTracker(config)}
    if compare_before:
        legacy = MultiTracker(config)
        legacy._extract_each = lambda images, t=legacy: padded_extract_each(t, images)
        variants["before"] = legacy
    h, w = frames[0].shape[:2]
    init = target_boxes(boxes[0], (w, h), targets)
    for tr in variants.values():
        for k, box in enumerate(init):
            tr.add(k, frames[0], box)
    ids = list(range(len(init)))
    for i, frame in enumerate(frames[1:]):
        if i == warmup:
            for tr in variants.values():
                tr.times.clear()
        for tr in variants.values():  # interleaved: both variants see the same moment's load
            _widen(tr, ids, wide)
            tr.track(frame)
    out = {}
    for name, tr in variants.items():
        out[name] = tr.times.means_ms()
        out[name]["total_p95"] = tr.times.quantile_ms("total", 0.95)
        out[name]["total_max"] = tr.times.quantile_ms("total", 1.0)
    return out


def bench_node(
    frames: list[np.ndarray], boxes: list[tuple], config: TrackerConfig, warmup: int
) -> dict[str, float]:
    """Mean ms per frame of the node's steps for one target, without DDS (see module doc)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from meta_tracker_ros.msg import TrackedObjectArray
    from meta_tracker_ros.ros import conversions as conv

    tracker = MultiTracker(config)
    tracker.add("t0", frames[0], boxes[0])
    h, w = frames[0].shape[:2]
    wire = [serialize_message(conv.bgr_to_image(f, "bgr8")) for f in frames[1:]]
    samples: dict[str, list[float]] = {}

    def rec(stage: str, t0: float) -> float:
        now = time.perf_counter()
        samples.setdefault(stage, []).append(1000.0 * (now - t0))
        return now

    for i, data in enumerate(wire):
        if i == warmup:
            samples.clear()
        t = time.perf_counter()
        msg = deserialize_message(data, Image)
        t = rec("deserialise", t)
        bgr = conv.image_to_bgr(msg)
        t = rec("image_conversion", t)
        results = tracker.track(bgr)
        t = rec("tracker", t)
        out = TrackedObjectArray()
        out.header = msg.header
        for tid, res in results.items():
            out.objects.append(conv.result_to_msg(str(tid), res, (w, h), True, None))
        t = rec("message_building", t)
        serialize_message(out)
        rec("publish_serialise", t)
    means = {k: statistics.fmean(v) for k, v in samples.items()}
    means["total"] = sum(means.values())
    return means


def _table(title: str, rows: dict[str, dict[str, float]], cols: list[str]) -> str:
    head = f"| {title} | " + " | ".join(cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"
    lines = [head, sep]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals.get(c, 0.0):.1f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from meta_tracker_ros.tools.latency_bench import load_sequence

    p = argparse.ArgumentParser(prog="python -m meta_tracker_ros.tools.stage_bench")
    p.add_argument("--data", type=Path, default=graph.ROOT.parent / "shared" / "data")
    p.add_argument("--sequence", default="uav_person11")
    p.add_argument("--targets", default="1,4,8", help="comma-separated target counts")
    p.add_argument("--wide", type=int, default=0, help="targets forced into the widest search")
    p.add_argument("--frames", type=int, default=60, help="frames timed per target count")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the node uses 1)")
    p.add_argument("--size", default="640x360", help="frame size WxH (latency_bench's default)")
    p.add_argument("--config", type=Path, default=None, help="tracker YAML (default: shipped)")
    p.add_argument("--node", action="store_true", help="also time the node path (1 target)")
    p.add_argument("--compare-before", action="store_true", help="A/B with the padded batch")
    args = p.parse_args(argv)
    if not args.data.exists():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    size = tuple(int(v) for v in args.size.split("x"))
    frames, boxes = load_sequence(args.data, args.sequence, size, args.frames + args.warmup + 1)
    config = TrackerConfig.from_yaml(args.config) if args.config else TrackerConfig()
    config.runtime.num_threads = args.threads
    torch.set_num_threads(args.threads)
    print(
        f"# stage_bench: {args.sequence} {size[0]}x{size[1]}, {len(frames) - 1 - args.warmup} "
        f"timed frames, {args.threads} torch thread(s), wide={args.wide}, "
        f"backend {config.runtime.backend}; mean ms per frame"
    )
    rows: dict[str, dict[str, float]] = {}
    for n in (int(v) for v in args.targets.split(",")):
        res = bench_core(
            frames,
            boxes,
            n,
            min(args.wide, n),
            config,
            args.warmup,
            args.compare_before,
        )
        for name, means in res.items():
            label = f"{n} target{'s' if n > 1 else ''}" + (
                f" ({min(args.wide, n)} wide)" if args.wide else ""
            )
            rows[label if name == "current" else f"{label}, before"] = means
    print(_table("core", rows, [*CORE_STAGES, "total", "total_p95", "total_max"]))
    if args.node:
        node = bench_node(frames, boxes, config, args.warmup)
        print()
        print(_table("node path, 1 target", {"ms": node}, list(node)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

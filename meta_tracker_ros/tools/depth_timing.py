"""Milliseconds per target and frame of the position from depth (prints a table).

    python -m meta_tracker_ros.tools.depth_timing [--sizes 640x480:100x200,1280x720:400x600]
        [--repeats 10]

Why a separate tool: with depth on, tracker_node computes every target's position from the
depth pixels under its mask on its publishing path (``ros/depth.py``), and that cost grows
with the target's size in pixels, which the tracker benchmarks never see. The depth image is
synthetic (2 m with noise and 5 % holes) and the mask a filled rectangle of the given size
centred in the frame; no data or ROS graph is needed. Report the load beside the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from meta_tracker_ros.ros.depth import Intrinsics, target_position

DEFAULT_SIZES = "640x480:100x200,1280x720:400x600,1920x1080:1000x1000"


def _pair(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def time_case(frame: tuple[int, int], target: tuple[int, int], repeats: int) -> float:
    """Median ms of ``target_position`` for one ``target``-sized mask in a ``frame`` image."""
    (w, h), (bw, bh) = frame, target
    rng = np.random.default_rng(0)
    depth = (2.0 + 0.1 * rng.standard_normal((h, w))).astype(np.float32)
    depth[rng.random((h, w)) < 0.05] = np.nan
    mask = np.zeros((h, w), np.uint8)
    x0, y0 = max(0, (w - bw) // 2), max(0, (h - bh) // 2)
    mask[y0 : y0 + bh, x0 : x0 + bw] = 255
    box = (float(x0), float(y0), float(bw), float(bh))
    k = Intrinsics(fx=600.0, fy=600.0, cx=w / 2, cy=h / 2, width=w, height=h)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        target_position(depth, box, k, mask)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="frame:target pairs, WxH:WxH, commas")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    print("| depth image | mask | ms per target and frame |\n|---|---|---:|")
    for case in args.sizes.split(","):
        frame, target = (_pair(t) for t in case.split(":"))
        ms = time_case(frame, target, args.repeats)
        print(f"| {frame[0]}x{frame[1]} | {target[0]}x{target[1]} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

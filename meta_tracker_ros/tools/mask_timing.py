"""Milliseconds per frame of the mask head, training-free vs with the learned decoder.

    python -m meta_tracker_ros.tools.mask_timing [--data ../shared/data] [--sequence NAME]
        [--frames N] [--threads 1] [--device cpu|cuda]

Why a separate tool: the evaluation's FPS covers the whole tracker; this isolates
``MaskHead.segment`` (+ ``update``) with the same backbone features, interleaving the two
variants frame by frame so that other load on the machine affects both alike. One torch thread
by default, like the node. With ``--device cuda`` the backbone and the decoder run on the GPU
(the cue maps stay on the CPU, as in the tracker).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.heads.mask_decoder import SHIPPED, load_decoder
from meta_tracker_ros.core.heads.mask_head import MaskHead
from meta_tracker_ros.evaluation.datasets import load_sequences
from meta_tracker_ros.training.mask_data import LEVELS, HeadRunner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_tracker_ros.tools.mask_timing")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--sequence", default="davis16_dog")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default=str(SHIPPED))
    p.add_argument("--work-size", type=int, help="mask.work_size (default: the config's)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    seq = load_sequences(args.data, "shared", [args.sequence])[1][0]
    cfg = TrackerConfig()
    if args.work_size:  # the decoder file must have been trained for it
        cfg = cfg.with_overrides({"mask.work_size": args.work_size})
    if args.device != "cpu":
        cfg = cfg.with_overrides({"runtime.device": args.device})
    runner = HeadRunner(cfg)
    decoder = load_decoder(args.weights).decoder.to(device)
    box = tuple(float(v) for v in seq.boxes[0])
    frame0 = seq.frame(0)
    feats, crop = runner.feats(frame0, box)
    heads = {
        "training_free": MaskHead(cfg.mask, device),
        "learned": MaskHead(cfg.mask, device, decoder, LEVELS),
    }
    for head in heads.values():
        head.initialize(frame0, box, feats, crop)
    times: dict[str, list[float]] = {k: [] for k in heads}
    n = min(args.frames, len(seq) - 1)
    for i in range(1, n + 1):
        frame = seq.frame(i)
        b = tuple(float(v) for v in seq.boxes[i])
        feats, crop = runner.feats(frame, b)
        for name, head in heads.items():
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            est = head.segment(frame, b, feats, crop)
            head.update(frame, est, b)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    out = {k: round(statistics.median(v[2:] or v), 2) for k, v in times.items()}
    out["added_ms"] = round(out["learned"] - out["training_free"], 2)
    print(
        json.dumps(
            {
                "sequence": args.sequence,
                "frames": n,
                "threads": args.threads,
                "device": args.device,
                "median_ms_segment_update": out,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line of the evaluation harness.

    python -m meta_tracker_ros.evaluation --data DIR --tracker meta|csrt|kcf[,...] \\
        [--config YAML] [--format auto|shared|got10k|lasot|vot|davis] [--names a,b] \\
        [--max-frames N] --json OUT.json [--markdown OUT.md] [--plots DIR]

With one tracker the JSON is that tracker's result object; with a comma list the trackers run
interleaved in one pass and the JSON is ``{"runs": {name: result}, "data", "machine", ...}``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from meta_tracker_ros.evaluation.baselines import BASELINES, create_baseline
from meta_tracker_ros.evaluation.datasets import FORMATS, Sequence, load_sequences
from meta_tracker_ros.evaluation.runner import TrackerFactory, run_benchmark, summarize_tracker

# "meta": the shipped tracker (learned classifier, learned mask decoder; the box refiner and box
# from mask are off by default); "handset": the same configuration with every learned part that
# can move the box off (hand-set classifier, the DSST scale filter alone instead of its mix with
# the learned scale head, no box refiner, no box from mask; the decoder still draws the masks),
# to measure what offline training buys the box in one run;
# "meta-refine": the shipped tracker with the learned box refiner on;
# meta-freemask: the shipped tracker with the training-free mask head and the classifier's box
# (mask.learned: false, mask_fusion.box_weight/center_weight: 0), i.e. without issue 9.
OURS = ("meta", "handset", "meta-refine", "meta-freemask")
TRACKERS = (*OURS, *BASELINES)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m meta_tracker_ros.evaluation",
        description="One-pass evaluation (success AUC, P@20, normalized precision, mask J, FPS).",
    )
    p.add_argument("--data", required=True, type=Path, help="dataset root directory")
    p.add_argument(
        "--tracker",
        required=True,
        help=f"tracker or comma list of trackers to compare in one run ({', '.join(TRACKERS)})",
    )
    p.add_argument("--config", type=Path, help="tracker YAML (meta and handset trackers)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="dataset layout")
    p.add_argument("--names", help="comma list of sequence names (default: all)")
    p.add_argument(
        "--split",
        choices=("train", "val"),
        help="only the clips of this part of the training set's split by video "
        "(meta_tracker_ros.training.data.split_clips, the split meta-training uses)",
    )
    p.add_argument("--max-frames", type=int, help="use only the first N frames of each sequence")
    p.add_argument(
        "--starts",
        help="track every sequence from several starts: a comma list of fN (forward from frame "
        "N) and bN (backward from N frames before the last), e.g. f0,f6,f12,b0,b6, the "
        "protocol used to choose mask-head designs on the three validation mask clips "
        "(default: f0, the usual one-pass evaluation)",
    )
    p.add_argument(
        "--init-mask",
        action="store_true",
        help="initialise trackers that take a mask with the first frame's ground-truth mask "
        "(mask sequences only; others get the box)",
    )
    p.add_argument(
        "--opencv-threads",
        type=int,
        help="OpenCV threads of the CSRT/KCF baselines (default: every core, OpenCV's own "
        "default). Our trackers use runtime.num_threads for torch, OpenCV and the backbone "
        "(default half the cores): 1 here compares them at equal threads on 2 cores",
    )
    p.add_argument("--json", required=True, type=Path, help="write results here")
    p.add_argument("--markdown", type=Path, help="write a README-ready results table here")
    p.add_argument("--plots", type=Path, help="write success/precision/attribute PNGs here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def machine_info() -> dict[str, Any]:
    """What the FPS numbers were measured on (they mean little without it)."""
    import cv2
    import numpy as np

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


def _factories(
    names: list[str], config: Path | None, opencv_threads: int | None = None
) -> dict[str, TrackerFactory]:
    factories: dict[str, TrackerFactory] = {}
    for name in names:
        if name in OURS:
            # Imported only when asked for (torch + model); the YAML is parsed once up front so
            # a bad config fails before any sequence runs, and each sequence gets its own copy.
            import torch

            from meta_tracker_ros.core import create_tracker
            from meta_tracker_ros.core.config import load_config
            from meta_tracker_ros.core.multi import (
                load_box_refiner,
                load_classifier,
                load_mask_decoder,
                load_scale_head,
            )

            cfg = load_config(config)  # None: the shipped defaults (config/tracker.yaml)
            if name == "handset":
                cfg = cfg.with_overrides(
                    {
                        "classifier.learned": False,
                        "scale.method": "dsst",
                        "box_refine.enabled": False,
                        "mask_fusion.box_weight": 0.0,
                        "mask_fusion.center_weight": 0.0,
                    }
                )
            if name == "meta-refine":
                cfg = cfg.with_overrides({"box_refine.enabled": True})
            if name == "meta-freemask":
                cfg = cfg.with_overrides(
                    {
                        "mask.learned": False,
                        "mask_fusion.box_weight": 0.0,
                        "mask_fusion.center_weight": 0.0,
                    }
                )
            load_classifier(cfg, torch.device("cpu"))  # a missing or mismatched file fails here
            load_mask_decoder(cfg)  # ... and so does the mask decoder's
            load_box_refiner(cfg)  # ... and the box refiner's
            load_scale_head(cfg)  # ... and the scale head's
            factories[name] = lambda cfg=cfg: create_tracker(copy.deepcopy(cfg))
        else:
            factories[name] = lambda kind=name: create_baseline(kind, opencv_threads)
    return factories


def _with_starts(sequences: list[Sequence], starts: str) -> list[Sequence]:
    """Every sequence once per start of ``starts`` ("f0,f6,b0": see ``--starts``)."""
    parsed = []
    for token in (t.strip() for t in starts.split(",")):
        if len(token) < 2 or token[0] not in "fb" or not token[1:].isdigit():
            raise ValueError(f"{token!r} is not fN or bN")
        parsed.append((int(token[1:]), token[0] == "b"))
    return [s.from_start(start, reverse) for s in sequences for start, reverse in parsed]


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; returns the process exit code (0 ok, 2 usage or data errors)."""
    args = _parser().parse_args(argv)
    trackers = [t.strip().lower() for t in args.tracker.split(",") if t.strip()]
    unknown = [t for t in trackers if t not in TRACKERS]
    if not trackers or unknown or len(set(trackers)) != len(trackers):
        print(f"error: --tracker takes distinct names from {', '.join(TRACKERS)}", file=sys.stderr)
        return 2
    if args.max_frames is not None and args.max_frames < 2:
        print("error: --max-frames must be at least 2 (frame 1 only initialises)", file=sys.stderr)
        return 2
    if args.config is not None and not args.config.is_file():
        print(f"error: config {args.config} does not exist", file=sys.stderr)
        return 2
    if args.opencv_threads is not None and args.opencv_threads < 1:
        print("error: --opencv-threads must be at least 1", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if args.split:
        from meta_tracker_ros.training.data import load_clips, source_videos, split_clips

        try:
            clips = [c.name for c in load_clips(args.data)]
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        part = getattr(split_clips(clips, source_videos(args.data)), args.split)
        names = [n for n in (names or part) if n in part]
    try:
        fmt, sequences = load_sequences(args.data, args.format, names)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not sequences:
        print(f"error: no sequences found in {args.data} (format {fmt})", file=sys.stderr)
        return 2
    if args.max_frames is not None:
        sequences = [s.truncated(args.max_frames) for s in sequences]
    if args.starts:
        try:
            sequences = _with_starts(sequences, args.starts)
        except ValueError as exc:
            print(f"error: --starts: {exc}", file=sys.stderr)
            return 2
    try:
        factories = _factories(trackers, args.config, args.opencv_threads)
    except Exception as exc:  # import or config errors: report them as a usage error
        print(f"error: cannot set up the tracker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    started = _dt.datetime.now(_dt.timezone.utc)
    machine = machine_info()
    runs = run_benchmark(
        factories, sequences, progress=not args.no_progress, init_mask=args.init_mask
    )
    results = {name: summarize_tracker(name, runs[name], sequences) for name in trackers}
    machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    import cv2

    machine["baseline_opencv_threads"] = args.opencv_threads or cv2.getNumberOfCPUs()

    context = {
        "data": {
            "path": str(args.data.resolve()),
            "format": fmt,
            "sequences": len(sequences),
            "frames": sum(len(s) for s in sequences),
            "max_frames": args.max_frames,
            "init_mask": args.init_mask,
            "coord_offsets": {s.name: s.meta.get("coord_offset") for s in sequences},
        },
        "config": str(args.config) if args.config else None,
        "machine": machine,
        "command": shlex.join(
            [Path(sys.executable).name, "-m", "meta_tracker_ros.evaluation"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "started_utc": started.isoformat(timespec="seconds"),
        "metrics": "see meta_tracker_ros/evaluation/metrics.py (AUC: 21 thresholds, IoU > t, "
        "first frame and absent-GT frames excluded; perfect tracker = 20/21)",
    }
    if len(trackers) == 1:
        out: dict[str, Any] = {**results[trackers[0]], **context}
    else:
        out = {"runs": results, **context}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, allow_nan=False) + "\n")

    from meta_tracker_ros.evaluation.report import markdown_table, summary_table, write_plots

    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(results))
    if args.plots:
        write_plots(results, args.plots)
    print(f"\n{len(sequences)} sequences, {context['data']['frames']} frames ({fmt})")
    print(summary_table(results))
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

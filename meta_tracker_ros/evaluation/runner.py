"""Run trackers over sequences and turn the raw outputs into the result objects.

Timing rules (so FPS means the same thing for every tracker):

* Only ``tracker.track(frame)`` is inside the timed window for FPS; ``initialize`` is timed on
  its own (``init_ms``) and building the tracker (model loading) is reported as ``create_ms``.
* Frames are decoded, and GT masks read and scored, outside every timed window.
* A fresh tracker is built for every sequence, so a sequence's result never depends on which
  sequences ran before it (``--names`` subsets reproduce full-run numbers).
* With several trackers, sequences are interleaved (every tracker runs sequence k before any runs
  k + 1) and the tracker order rotates per sequence, so background load on a shared machine
  hits all trackers alike instead of whichever ran during a busy minute.

A tracker exception ends that tracker's sequence: it is reported on stderr and in the JSON
(``error``), the frames not tracked count as failures, and the run goes on.
"""

from __future__ import annotations

import inspect
import sys
import time
import traceback
from collections.abc import Callable
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from meta_tracker_ros.core.types import TrackState
from meta_tracker_ros.evaluation import metrics as M
from meta_tracker_ros.evaluation.datasets import Sequence


class Tracker(Protocol):
    """The interface shared by the meta tracker and the baselines."""

    def initialize(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> None: ...

    def track(self, frame: np.ndarray) -> Any: ...


TrackerFactory = Callable[[], Tracker]


@dataclass
class SequenceRun:
    """Raw outcome of one tracker on one sequence."""

    name: str
    pred: np.ndarray  # (N, 4) xywh; NaN before the start frame and after an error
    start: int = 0  # index of the initialisation frame (first annotated frame)
    create_s: float = 0.0
    init_s: float = 0.0
    track_s: float = 0.0
    tracked_frames: int = 0
    lost_frames: int = 0
    initialized: bool = False
    mask_ious: list[float] = field(default_factory=list)
    mask_sources: set[str] = field(default_factory=set)
    error: str | None = None


def _frame_mask(result_mask: Any, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(result_mask)
    if m.shape[:2] != shape:
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > 0


def _takes_mask(tracker: Tracker) -> bool:
    """Whether ``tracker.initialize`` accepts a first-frame mask (the meta tracker does)."""
    try:
        return "mask" in inspect.signature(tracker.initialize).parameters
    except (TypeError, ValueError):
        return False


def run_sequence(factory: TrackerFactory, seq: Sequence, init_mask: bool = False) -> SequenceRun:
    """Track ``seq`` from its first annotated frame; never raises for tracker errors.

    ``init_mask``: trackers that accept one get the first frame's ground-truth mask too.
    """
    n = len(seq)
    run = SequenceRun(seq.name, np.full((n, 4), np.nan))
    valid = M.valid_gt(seq.boxes)
    if not valid.any():
        run.error = "no annotated frame to initialise from"
        return run
    start = int(np.argmax(valid))
    run.start = start
    next_frame = start
    try:
        t0 = time.perf_counter()
        tracker = factory()
        run.create_s = time.perf_counter() - t0
        frame = seq.frame(start)
        init_box = tuple(float(v) for v in seq.boxes[start])
        mask0 = seq.mask(start) if init_mask and seq.has_masks else None
        t0 = time.perf_counter()
        if mask0 is not None and _takes_mask(tracker):
            tracker.initialize(frame, init_box, mask=mask0)
        else:
            tracker.initialize(frame, init_box)
        run.init_s = time.perf_counter() - t0
        run.initialized = True
        run.pred[start] = init_box
        next_frame = start + 1
        for i in range(start + 1, n):
            frame = seq.frame(i)
            t0 = time.perf_counter()
            result = tracker.track(frame)
            run.track_s += time.perf_counter() - t0
            next_frame = i + 1
            run.tracked_frames += 1
            run.pred[i] = [float(v) for v in result.box]
            if result.state == TrackState.LOST:
                run.lost_frames += 1
            gt_mask = seq.mask(i)
            if gt_mask is not None:
                if result.mask is not None:
                    pm = _frame_mask(result.mask, gt_mask.shape)
                    run.mask_sources.add("mask")
                else:
                    pm = M.box_to_mask(result.box, gt_mask.shape)
                    run.mask_sources.add("box")
                run.mask_ious.append(M.mask_iou(pm, gt_mask))
    except Exception as exc:  # one bad sequence must not end the benchmark
        run.error = f"{type(exc).__name__}: {exc}"
        print(f"\nerror in sequence {seq.name}:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        # Untracked mask frames count as failures, like the untracked box frames (NaN pred).
        for i in range(max(next_frame, start + 1), n):
            gt_mask = seq.mask(i)
            if gt_mask is not None:
                run.mask_ious.append(M.mask_iou(None, gt_mask))
    return run


def run_benchmark(
    factories: dict[str, TrackerFactory],
    sequences: SequenceABC[Sequence],
    progress: bool = True,
    init_mask: bool = False,
) -> dict[str, dict[str, SequenceRun]]:
    """Run every tracker on every sequence, interleaved per sequence (see module docstring)."""
    from tqdm import tqdm

    names = list(factories)
    runs: dict[str, dict[str, SequenceRun]] = {name: {} for name in names}
    bar = tqdm(sequences, desc="sequences", unit="seq", file=sys.stderr, disable=not progress)
    for k, seq in enumerate(bar):
        order = names[k % len(names) :] + names[: k % len(names)]
        for name in order:
            bar.set_postfix_str(f"{seq.name} [{name}]")
            runs[name][seq.name] = run_sequence(factories[name], seq, init_mask)
    bar.close()
    return runs


# --------------------------------------------------------------------------------------------
# Summaries


def _r(value: float, digits: int = 4) -> float | None:
    """Round for JSON; NaN becomes null (JSON has no NaN)."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def summarize_sequence(run: SequenceRun, seq: Sequence) -> dict[str, Any]:
    """Per-sequence result object (metrics, speed, bookkeeping)."""
    m = M.sequence_metrics(run.pred, seq.boxes)
    out: dict[str, Any] = {
        "auc": _r(m["auc"]),
        "precision20": _r(m["precision20"]),
        "norm_precision": _r(m["norm_precision"]),
        "norm_precision_at_0.2": _r(m["norm_precision_at_0.2"]),
    }
    if seq.has_masks:
        out["mask_J"] = _r(M.nanmean(run.mask_ious)) if run.mask_ious else None
        out["mask_J_from"] = "+".join(sorted(run.mask_sources)) or None
    out.update(
        {
            "fps": _r(run.tracked_frames / run.track_s, 2) if run.track_s > 0 else None,
            "init_ms": _r(run.init_s * 1000.0, 2) if run.initialized else None,
            "create_ms": _r(run.create_s * 1000.0, 2),
            "frames": len(seq),
            "tracked_frames": run.tracked_frames,
            "scored_frames": m["scored_frames"],
            "lost_frames": run.lost_frames,
            "track_s": _r(run.track_s, 4),
        }
    )
    if run.error:
        out["error"] = run.error
    return out


def summarize_tracker(
    name: str, runs: dict[str, SequenceRun], sequences: SequenceABC[Sequence]
) -> dict[str, Any]:
    """Single-tracker result object: per-sequence results, means, curves and attributes."""
    per_seq = {s.name: summarize_sequence(runs[s.name], s) for s in sequences}
    curves = [M.scored_curves(runs[s.name].pred, s.boxes) for s in sequences]
    total_frames = sum(runs[s.name].tracked_frames for s in sequences)
    total_s = sum(runs[s.name].track_s for s in sequences)
    mask_vals = [v["mask_J"] for v in per_seq.values() if v.get("mask_J") is not None]

    def mean_of(key: str) -> float | None:
        return _r(M.nanmean(v[key] if v[key] is not None else np.nan for v in per_seq.values()))

    mean: dict[str, Any] = {
        "auc": mean_of("auc"),
        "precision20": mean_of("precision20"),
        "norm_precision": mean_of("norm_precision"),
        "norm_precision_at_0.2": mean_of("norm_precision_at_0.2"),
    }
    if mask_vals:
        mean["mask_J"] = _r(float(np.mean(mask_vals)))
        mean["mask_J_sequences"] = len(mask_vals)
    mean.update(
        {
            "fps": _r(total_frames / total_s, 2) if total_s > 0 else None,
            "init_ms": mean_of("init_ms"),
            "frames": sum(len(s) for s in sequences),
            "tracked_frames": total_frames,
            "track_s": _r(total_s, 3),
            "lost_frames": sum(runs[s.name].lost_frames for s in sequences),
            "sequences": len(sequences),
            "errors": [s.name for s in sequences if runs[s.name].error],
        }
    )
    if curves:
        mean["curves"] = {
            "iou_thresholds": [round(float(t), 3) for t in M.IOU_THRESHOLDS],
            "success": [_r(v) for v in np.mean([c["success"] for c in curves], axis=0)],
            "precision_thresholds_px": [int(t) for t in M.PRECISION_THRESHOLDS],
            "precision": [_r(v) for v in np.mean([c["precision"] for c in curves], axis=0)],
            "norm_precision_thresholds": [round(float(t), 3) for t in M.NORM_PRECISION_THRESHOLDS],
            "norm_precision": [
                _r(v) for v in np.mean([c["norm_precision"] for c in curves], axis=0)
            ],
        }
    return {
        "tracker": name,
        "sequences": per_seq,
        "mean": mean,
        "attributes": attribute_breakdown(per_seq, sequences),
    }


def attribute_breakdown(
    per_seq: dict[str, dict[str, Any]], sequences: SequenceABC[Sequence]
) -> dict[str, dict[str, Any]]:
    """Mean AUC / P@20 over the sequences carrying each attribute tag."""
    tags: dict[str, list[str]] = {}
    for s in sequences:
        for tag in s.attributes:
            tags.setdefault(tag, []).append(s.name)
    out = {}
    for tag in sorted(tags):
        names = tags[tag]
        out[tag] = {
            "auc": _r(M.nanmean(_nan(per_seq[n]["auc"]) for n in names)),
            "precision20": _r(M.nanmean(_nan(per_seq[n]["precision20"]) for n in names)),
            "sequences": len(names),
        }
    return out


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)

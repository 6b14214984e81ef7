"""Tracking validation of a learned classifier file on the held-out clips.

The episode loss is what training optimises, but what a user gets is tracking: after training,
the real tracker (``core``, masks off for speed) runs over the validation clips once with the new
file and once with the hand-set classifier, through the evaluation harness, and the mean success
AUC / P@20 of both go into the file's metadata (the model card's validation score).
"""

from __future__ import annotations

import copy
from pathlib import Path

from meta_tracker_ros.core import create_tracker
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.evaluation.datasets import load_sequences
from meta_tracker_ros.evaluation.runner import run_benchmark, summarize_tracker


def tracking_scores(
    weights: str | Path, tracker_cfg: TrackerConfig, root: str | Path, names: list[str]
) -> dict[str, dict[str, float]]:
    """Mean AUC and P@20 of the learned and the hand-set tracker on clips ``names``."""
    if not names:
        return {}
    _, seqs = load_sequences(Path(root), "shared", names)
    base = tracker_cfg.with_overrides({"mask.enabled": False})
    cfgs = {
        "learned": base.with_overrides(
            {"classifier.learned": True, "classifier.weights_path": str(weights)}
        ),
        "handset": base.with_overrides({"classifier.learned": False}),
    }
    factories = {k: (lambda c=c: create_tracker(copy.deepcopy(c))) for k, c in cfgs.items()}
    runs = run_benchmark(factories, seqs, progress=False)
    out = {}
    for name in factories:
        mean = summarize_tracker(name, runs[name], seqs)["mean"]
        out[name] = {"auc": mean["auc"], "precision20": mean["precision20"]}
    return out

"""The learned classifier file: what meta-training produces and the tracker loads by default.

One small, versioned ``torch.save`` file holds every learned tensor of the classifier (the 1x1
feature projection and the solver constants of :class:`~.solver.SolverParams`) together with
what they were trained with: the backbone, its feature levels and channels, the projection size,
the crop geometry and a key of the training data. The tracker refuses a file whose backbone,
levels or sizes do not match its configuration, with a message that says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meta_tracker_ros.core.heads.solver import SolverParams
from meta_tracker_ros.core.heads.weights_file import read_versioned, write_versioned

FORMAT = "meta_tracker_ros.classifier"
VERSION = 1

# The file shipped inside the package (``classifier.weights_path: ""`` with ``learned: true``).
SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "classifier.pt"


@dataclass
class LearnedClassifier:
    """Tensors of a learned classifier and the metadata they were trained with."""

    solver: SolverParams
    proj_weight: torch.Tensor | None  # (proj_dim, C_total) 1x1 projection, None = PCA
    proj_bias: torch.Tensor | None  # (proj_dim,)
    meta: dict[str, Any]

    def check(self, backbone: str, levels: list[str], channels: list[int], proj_dim: int) -> None:
        """Raise ValueError naming the mismatch when this file does not fit the tracker."""
        m = self.meta
        want = {
            "backbone": backbone,
            "levels": list(levels),
            "channels": list(channels),
            "proj_dim": int(proj_dim),
        }
        for key, value in want.items():
            if m.get(key) != value:
                raise ValueError(
                    f"learned classifier file {m.get('path', '?')}: trained for {key}="
                    f"{m.get(key)!r}, but the tracker is configured with {value!r} "
                    "(retrain with python -m meta_tracker_ros.training, or set "
                    "classifier.learned: false for the hand-set classifier)"
                )


def save_learned(path: str | Path, learned: LearnedClassifier) -> None:
    """Write the file (tensors detached to CPU, metadata as plain values)."""
    tensors = {k: v.detach().cpu().clone() for k, v in learned.solver.tensors().items()}
    if learned.proj_weight is not None:
        tensors["proj_weight"] = learned.proj_weight.detach().cpu().clone()
        tensors["proj_bias"] = learned.proj_bias.detach().cpu().clone()
    body = {
        "tensors": tensors,
        "label_sigma": learned.solver.label_sigma,
        "hinge_threshold": learned.solver.hinge_threshold,
        "meta": learned.meta,
    }
    write_versioned(path, FORMAT, VERSION, body)


def load_learned(path: str | Path, device: torch.device | str = "cpu") -> LearnedClassifier:
    """Read a file written by :func:`save_learned`; ValueError for anything else."""
    data, meta = read_versioned(
        path,
        FORMAT,
        VERSION,
        "learned classifier file",
        "train one with python -m meta_tracker_ros.training, or set classifier.learned: false",
        device,
    )
    t = {k: v.to(torch.float32) for k, v in data["tensors"].items()}
    try:
        solver = SolverParams(
            log_ridge_reg=t["log_ridge_reg"],
            log_reg=t["log_reg"],
            log_init_steps=t["log_init_steps"],
            log_update_steps=t["log_update_steps"],
            log_channel_steps=t["log_channel_steps"],
            label_sigma=float(data["label_sigma"]),
            hinge_threshold=float(data["hinge_threshold"]),
            label_bins=t.get("label_bins"),
            log_weight_bins=t.get("log_weight_bins"),
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing tensor {exc}") from exc
    return LearnedClassifier(solver, t.get("proj_weight"), t.get("proj_bias"), meta)

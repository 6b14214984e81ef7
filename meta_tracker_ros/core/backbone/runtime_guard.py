"""``runtime.backend: auto``: the fastest installed runtime whose recorded accuracy holds.

Why a recorded table: whether a runtime (ONNX Runtime, int8, ...) keeps the tracker's accuracy
is a property of the runtime and the evaluation data, measured once by running the evaluation
with each runtime (minutes to hours), not something to re-measure at start-up. The table
(``runtime_accuracy.json`` next to this module) is written by
``python -m meta_tracker_ros.export.runtime_guard`` from evaluation JSON files, never by hand,
and keeps the commands that produced it. A runtime is eligible when its mean AUC and mask J are
within the tolerance (0.01) of the torch fp32 reference on the same sequences; torch fp32 is
the reference and always eligible; a runtime missing from the table is not eligible.

Speed order (fastest first) per device comes from ``export.bench_runtimes`` on the 2-core
development CPU at one thread, per 256 px crop: OpenVINO bf16 6.2 ms, onnxruntime fp32 9.8,
OpenVINO fp32 9.9, torch 23.4 (README, runtime table). On CUDA, TensorRT first (unmeasured
here: no GPU in this workplace).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TABLE = Path(__file__).with_name("runtime_accuracy.json")
REFERENCE = "torch/fp32"
TOLERANCE = {"auc": 0.01, "mask_J": 0.01}

# Candidates per device type, fastest first: (backend, precision, module that must import).
CANDIDATES: dict[str, list[tuple[str, str, str]]] = {
    "cpu": [
        ("openvino", "bf16", "openvino"),
        ("onnxruntime", "fp32", "onnxruntime"),
        ("openvino", "fp32", "openvino"),
        ("torch", "fp32", "torch"),
    ],
    "cuda": [
        ("tensorrt", "fp16", "tensorrt"),
        ("torch", "fp16", "torch"),
        ("torch", "fp32", "torch"),
    ],
}


def load_table(path: str | Path | None = None) -> dict[str, Any]:
    """The recorded table, or an empty one (no runtime but the reference eligible)."""
    p = Path(path) if path else TABLE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        log.info("runtime accuracy table %s unreadable (%s): only torch fp32 is eligible", p, exc)
        return {}


def accuracy_holds(key: str, table: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``key`` ("backend/precision") is within tolerance of the reference, and why."""
    if key == REFERENCE:
        return True, "reference"
    row = table.get("runtimes", {}).get(key)
    ref = table.get("runtimes", {}).get(REFERENCE)
    if row is None or ref is None:
        return False, f"no recorded accuracy for {key}"
    if row.get("sequences") != ref.get("sequences"):
        return False, f"{key} was evaluated on other sequences than {REFERENCE}"
    for metric, tol in TOLERANCE.items():
        a, b = row.get(metric), ref.get(metric)
        if (a is None) != (b is None):
            return False, f"{metric} recorded for only one of {key} and {REFERENCE}"
        if a is not None and abs(float(a) - float(b)) > tol:
            return False, f"{metric} {a:.4f} vs {REFERENCE} {b:.4f} (tolerance {tol})"
    return True, "within tolerance"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def choose(device: str, table: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(backend, precision) candidates for ``device``, fastest first, installed and accurate.

    The factory tries them in order and takes the first that starts; the last entry is always
    a torch runtime, so there is something to fall back to.
    """
    table = load_table() if table is None else table
    kind = "cuda" if device.startswith("cuda") else "cpu"
    out: list[tuple[str, str]] = []
    for backend, precision, module in CANDIDATES[kind]:
        key = f"{backend}/{precision}"
        if backend != "torch" and not installed(module):
            log.debug("auto: %s not installed", key)
            continue
        ok, why = accuracy_holds(key, table)
        if not ok:
            log.info("auto: %s skipped: %s", key, why)
            continue
        out.append((backend, precision))
    if ("torch", "fp32") not in out:
        out.append(("torch", "fp32"))
    return out

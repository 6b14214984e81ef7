"""``python -m meta_tracker_ros.export.runtime_guard``: write the accuracy table ``auto`` reads.

    python -m meta_tracker_ros.export.runtime_guard \\
        --run torch/fp32=eval_torch.json --run onnxruntime/fp32=eval_ort.json [--out FILE]

Each ``--run KEY=FILE`` names a runtime ("backend/precision") and the JSON written by
``python -m meta_tracker_ros.evaluation ... --json FILE`` for the meta tracker with that
runtime's config. The table keeps, per runtime, the mean AUC and mask J, the sequence and frame
counts, and the evaluation command, so every figure traces back to a run. Refuses runs made on
truncated sequences (``--max-frames``): ``auto`` must decide from the full evaluation set.
``torch/fp32`` (the reference) is required.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from meta_tracker_ros.core.backbone.runtime_guard import REFERENCE, TABLE, TOLERANCE


def row_from_eval(data: dict[str, Any], source: str) -> dict[str, Any]:
    """One table row from an evaluation JSON (single-tracker output)."""
    if "mean" not in data:
        raise ValueError(f"{source}: not a single-tracker evaluation JSON (no 'mean')")
    ctx = data.get("data", {})
    if ctx.get("max_frames"):
        raise ValueError(f"{source}: made with --max-frames {ctx['max_frames']}; use full runs")
    mean = data["mean"]
    config = data.get("config")
    try:  # keep what the run was configured with: the file itself may be temporary
        config_text = Path(config).read_text() if config else None
    except OSError:
        config_text = None
    return {
        "auc": mean.get("auc"),
        "mask_J": mean.get("mask_J"),
        "sequences": mean.get("sequences"),
        "frames": mean.get("frames"),
        "fps": mean.get("fps"),
        "command": data.get("command"),
        "config": config,
        "config_text": config_text,
        "started_utc": data.get("started_utc"),
        "source": source,
    }


def build_table(
    runs: dict[str, dict[str, Any]], sources: dict[str, str] | None = None
) -> dict[str, Any]:
    """The table from ``{"backend/precision": evaluation JSON}`` (``sources``: their files)."""
    if REFERENCE not in runs:
        raise ValueError(f"the reference run {REFERENCE} is required")
    sources = sources or {}
    rows = {k: row_from_eval(v, sources.get(k, k)) for k, v in runs.items()}
    ref = rows[REFERENCE]
    for row in rows.values():
        for metric in TOLERANCE:
            a, b = row.get(metric), ref.get(metric)
            row[f"delta_{metric}"] = None if a is None or b is None else round(a - b, 4)
    return {
        "written_by": "python -m meta_tracker_ros.export.runtime_guard",
        "written_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "reference": REFERENCE,
        "tolerance": TOLERANCE,
        "runtimes": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_tracker_ros.export.runtime_guard")
    p.add_argument("--run", action="append", required=True, metavar="BACKEND/PRECISION=JSON")
    p.add_argument("--out", type=Path, default=TABLE)
    args = p.parse_args(argv)
    runs, sources = {}, {}
    for item in args.run:
        key, _, path = item.partition("=")
        if "/" not in key or not path:
            p.error(f"--run {item!r}: expected backend/precision=file.json")
        runs[key] = json.loads(Path(path).read_text())
        sources[key] = path
    try:
        table = build_table(runs, sources)
    except ValueError as exc:
        print(f"runtime_guard: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    for key, row in table["runtimes"].items():
        print(
            f"{key:20s} AUC {row['auc']} (delta {row['delta_auc']}) "
            f"J {row['mask_J']} (delta {row['delta_mask_J']}) on {row['sequences']} sequences"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

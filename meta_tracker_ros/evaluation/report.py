"""Human-readable outputs: the markdown results table, the stdout summary and the plots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Columns of the per-tracker group in the tables: (result key, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("auc", "AUC", "{:.3f}"),
    ("precision20", "P@20", "{:.3f}"),
    ("norm_precision", "NP", "{:.3f}"),
    ("mask_J", "J", "{:.3f}"),
    ("fps", "FPS", "{:.1f}"),
)


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else spec.format(value)


def _columns(runs: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Drop the J column when no sequence has masks (box-only data)."""
    has_j = any("mask_J" in r["mean"] for r in runs.values())
    return [c for c in COLUMNS if c[0] != "mask_J" or has_j]


def markdown_table(runs: dict[str, dict[str, Any]]) -> str:
    """Per-sequence rows and a bold mean row, one column group per tracker.

    J of a box-only tracker is the J of its box filled as a mask (marked ``mask_J_from: box`` in
    the JSON); the mean FPS is total tracked frames / total ``track()`` time.
    """
    cols = _columns(runs)
    header = ["Sequence"] + [f"{t} {h}" for t in runs for _, h, _ in cols]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    first = next(iter(runs.values()))
    for seq in first["sequences"]:
        cells = [seq]
        for r in runs.values():
            s = r["sequences"].get(seq, {})
            cells += [_fmt(s.get(k), f) for k, _, f in cols]
        lines.append("| " + " | ".join(cells) + " |")
    cells = [f"**mean ({first['mean']['sequences']})**"]
    for r in runs.values():
        cells += [f"**{_fmt(r['mean'].get(k), f)}**" for k, _, f in cols]
    lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "AUC: success AUC over 21 IoU thresholds (perfect = 0.952, OTB convention); P@20: centre"
        " error <= 20 px; NP: normalized precision AUC (0..0.5); first frame not scored.",
        "FPS: frames / time inside `track()` only (mean row: total frames / total time).",
    ]
    if any(c[0] == "mask_J" for c in cols):
        notes.append(
            f"J: mean mask IoU over the {first['mean'].get('mask_J_sequences', 0)} mask sequences;"
            " for trackers without masks it is the J of the box filled as a mask."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def summary_table(runs: dict[str, dict[str, Any]]) -> str:
    """Compact stdout comparison: one row per tracker with the means."""
    cols = [*_columns(runs), ("init_ms", "init ms", "{:.1f}")]
    rows = [["tracker", *(h for _, h, _ in cols), "errors"]]
    for name, r in runs.items():
        m = r["mean"]
        rows.append([name, *(_fmt(m.get(k), f) for k, _, f in cols), str(len(m["errors"]))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def write_plots(runs: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """Success, precision and per-attribute PNGs (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    n_seq = next(iter(runs.values()))["mean"]["sequences"]

    def curve_plot(key: str, xkey: str, metric: str, title: str, xlabel: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        order = sorted(runs, key=lambda t: -(runs[t]["mean"].get(metric) or 0.0))
        for t in order:
            curves = runs[t]["mean"].get("curves")
            if not curves:
                continue
            value = runs[t]["mean"].get(metric)
            label = f"{t} [{value:.3f}]" if value is not None else t
            ax.plot(curves[xkey], [v or 0.0 for v in curves[key]], label=label, linewidth=2)
        ax.set(title=f"{title} ({n_seq} sequences)", xlabel=xlabel, ylabel="rate", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left" if key == "success" else "lower right")
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    curve_plot(
        "success", "iou_thresholds", "auc", "Success plot (AUC)", "IoU threshold", "success.png"
    )
    curve_plot(
        "precision",
        "precision_thresholds_px",
        "precision20",
        "Precision plot (P@20)",
        "centre error threshold (px)",
        "precision.png",
    )
    path = _attribute_plot(runs, out_dir, plt)
    if path is not None:
        written.append(path)
    return written


def _attribute_plot(runs: dict[str, dict[str, Any]], out_dir: Path, plt: Any) -> Path | None:
    """Grouped bars of mean AUC per attribute tag (tags on at least two sequences)."""
    import numpy as np

    tags = _shared_tags(r["attributes"] for r in runs.values())
    if not tags:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(tags) * max(1, len(runs)) + 2), 4.5))
    width = 0.8 / len(runs)
    x = np.arange(len(tags))
    for k, (name, r) in enumerate(runs.items()):
        vals = [r["attributes"][t]["auc"] or 0.0 for t in tags]
        ax.bar(x + (k - (len(runs) - 1) / 2) * width, vals, width, label=name)
    first = next(iter(runs.values()))["attributes"]
    ax.set_xticks(x, [f"{t}\n({first[t]['sequences']})" for t in tags], fontsize=8)
    ax.set(title="Success AUC per attribute (n sequences)", ylabel="AUC", ylim=(0, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out_dir / "attributes.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _shared_tags(breakdowns: Iterable[dict[str, Any]]) -> list[str]:
    first = next(iter(breakdowns), {})
    return [t for t, v in first.items() if v["sequences"] >= 2]

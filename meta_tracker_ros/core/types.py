"""Result types and input validation shared by the tracker, the nodes and the evaluation tools.

Box convention everywhere in the core: ``(x, y, w, h)`` floats, 0-based pixel coordinates of the
top-left corner, width and height (the same as OpenCV's trackers and the ``SetTarget`` service).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]


class TrackState(enum.IntEnum):
    """Life cycle of a target; values match ``TrackedObject.STATE_*`` in msg/TrackedObject.msg."""

    INITIALIZING = 0
    TRACKING = 1
    UNCERTAIN = 2  # low confidence: the box is a prediction
    LOST = 3  # target not found: the box is the last known one


@dataclass
class TrackResult:
    """What ``track()`` returns for one target in one frame.

    Attributes:
        box: (x, y, w, h) in 0-based image pixels.
        score: classifier confidence in [0, 1].
        state: see :class:`TrackState`.
        mask: HxW uint8 (0/255) full-frame mask, or None when masks are disabled.
        frames_since_seen: frames since the last TRACKING frame (0 while tracking).
    """

    box: Box
    score: float
    state: TrackState
    mask: np.ndarray | None = None
    frames_since_seen: int = 0


def validate_frame(frame: Any) -> np.ndarray:
    """Return ``frame`` if it is an HxWx3 uint8 array, else raise ``ValueError`` saying why."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 (BGR), got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3 (BGR), got shape {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise ValueError(f"frame is too small: {frame.shape[1]}x{frame.shape[0]} pixels")
    return frame


def validate_box(box: Any, image_size: tuple[int, int]) -> Box:
    """Check an initial ``(x, y, w, h)`` box against an image of ``(width, height)``.

    Raises ``ValueError`` for a box that is not four finite numbers, has a non-positive size, or
    does not overlap the image. A box partly outside the image is accepted (targets entering the
    view) and returned unchanged.
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be four numbers (x, y, w, h), got {box!r}") from exc
    if len(values) != 4:
        raise ValueError(f"box must have four values (x, y, w, h), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box has non-finite values: {values}")
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise ValueError(f"box must have positive width and height, got w={w:g}, h={h:g}")
    if w < 1.0 or h < 1.0:
        raise ValueError(f"box is degenerate (smaller than one pixel): w={w:g}, h={h:g}")
    width, height = image_size
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(
            f"box ({x:g}, {y:g}, {w:g}, {h:g}) does not overlap the {width}x{height} image"
        )
    return (x, y, w, h)

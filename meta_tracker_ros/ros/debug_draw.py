"""Drawing of tracks over a frame for ``~/debug_image`` and the demo video (presentation only)."""

from __future__ import annotations

import cv2
import numpy as np

from meta_tracker_ros.core.types import TrackState

_STATE_COLOURS = {  # BGR
    TrackState.INITIALIZING: (200, 200, 200),
    TrackState.TRACKING: (60, 220, 60),
    TrackState.UNCERTAIN: (0, 200, 255),
    TrackState.LOST: (40, 40, 230),
}
_PALETTE = [(255, 128, 0), (255, 0, 200), (0, 255, 255), (128, 255, 0), (0, 128, 255)]


def draw_tracks(
    frame: np.ndarray,
    tracks: list[tuple[str, tuple[float, float, float, float], int, float, np.ndarray | None]],
    fps: float | None = None,
    text: str = "",
) -> np.ndarray:
    """Return a copy of ``frame`` with masks (tinted), boxes, ids, states and scores drawn.

    ``tracks`` items are ``(id, box_xywh, state, score, full_frame_mask_or_None)``.
    """
    out = frame.copy()
    for i, (_tid, _box, _state, _score, mask) in enumerate(tracks):
        if mask is not None and mask.shape[:2] == out.shape[:2] and mask.any():
            colour = np.array(_PALETTE[i % len(_PALETTE)], np.float32)
            sel = mask > 0
            out[sel] = (0.55 * out[sel] + 0.45 * colour).astype(np.uint8)
    for tid, box, state, score, _mask in tracks:
        st = TrackState(int(state))
        colour = _STATE_COLOURS.get(st, (255, 255, 255))
        x, y, w, h = (round(v) for v in box)
        thickness = 2 if st != TrackState.LOST else 1
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness, cv2.LINE_AA)
        label = f"{tid} {st.name} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(th + 4, y)
        cv2.rectangle(out, (x, ty - th - 4), (x + tw + 4, ty), colour, -1)
        cv2.putText(
            out, label, (x + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    header = text
    if fps is not None:
        header = f"{fps:5.1f} FPS  {text}".strip()
    if header:
        cv2.putText(out, header, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            out, header, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out

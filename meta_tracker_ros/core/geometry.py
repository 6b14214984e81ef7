"""Box conventions and search-region crops (numpy / OpenCV / torch only).

Boxes are ``(x, y, w, h)`` in 0-based image pixels unless a name says otherwise
(``cxcywh`` = centre and size). A search region is a square of side ``crop_side`` image pixels
centred on the target, resized to ``out_size`` pixels; :class:`Crop` maps between the two
frames of reference so heads can work in crop pixels and results go back to image pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from meta_tracker_ros.core.types import Box


def iround(v: float) -> int:
    """Round half up to an int (also for numpy and torch scalars)."""
    return math.floor(float(v) + 0.5)


def xywh_to_cxcywh(box: Box) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x + w / 2.0, y + h / 2.0, w, h)


def cxcywh_to_xywh(box: Sequence[float]) -> Box:
    cx, cy, w, h = box
    return (cx - w / 2.0, cy - h / 2.0, w, h)


def iou_xywh(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes, in [0, 1] (0 when either is empty).

    Clipped at 1: for equal boxes, rounding in ``(x + w) - x`` can give 1 + 1e-16, which a
    success threshold of 1 would count (evaluation uses ``IoU > t``).
    """
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return min(1.0, float(inter / union)) if union > 0 else 0.0


@dataclass(frozen=True)
class Crop:
    """A square search region: image point p maps to crop point ``(p - origin) * scale``.

    Attributes:
        cx, cy: region centre in image pixels.
        side: region side in image pixels.
        out_size: side of the resized crop in pixels.
    """

    cx: float
    cy: float
    side: float
    out_size: int

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.out_size / self.side

    @property
    def origin(self) -> tuple[float, float]:
        """Image coordinates of the crop's top-left corner."""
        return (self.cx - self.side / 2.0, self.cy - self.side / 2.0)

    def to_crop_point(self, x: float, y: float) -> tuple[float, float]:
        ox, oy = self.origin
        return ((x - ox) * self.scale, (y - oy) * self.scale)

    def to_image_point(self, u: float, v: float) -> tuple[float, float]:
        ox, oy = self.origin
        return (u / self.scale + ox, v / self.scale + oy)

    def box_to_crop(self, box: Box) -> Box:
        u, v = self.to_crop_point(box[0], box[1])
        return (u, v, box[2] * self.scale, box[3] * self.scale)

    def box_to_image(self, box: Box) -> Box:
        x, y = self.to_image_point(box[0], box[1])
        return (x, y, box[2] / self.scale, box[3] / self.scale)

    def affine(self) -> np.ndarray:
        """2x3 matrix taking image coordinates to crop coordinates (for cv2.warpAffine)."""
        s = self.scale
        ox, oy = self.origin
        return np.array([[s, 0.0, -ox * s], [0.0, s, -oy * s]], dtype=np.float64)


def search_crop(
    center: tuple[float, float],
    target_size: tuple[float, float],
    search_area: float,
    out_size: int,
    min_side: float = 16.0,
) -> Crop:
    """Square region of side ``search_area * sqrt(w * h)`` around ``center``."""
    w, h = target_size
    side = max(float(min_side), search_area * float(np.sqrt(max(w, 1.0) * max(h, 1.0))))
    return Crop(float(center[0]), float(center[1]), side, int(out_size))


def crop_image(frame: np.ndarray, crop: Crop, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Cut and resize the region of ``crop`` from an HxWx3 uint8 frame (out_size x out_size).

    Regions leaving the image are padded by replicating the border, which keeps the statistics
    of the padding close to the image's (mean padding creates strong false edges).
    """
    interp = cv2.INTER_AREA if crop.scale < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(
        frame, crop.affine(), (crop.out_size, crop.out_size), flags=interp, borderMode=border
    )


def crops_to_tensor(
    crops: Sequence[np.ndarray], device: torch.device | str = "cpu", contiguous: bool = False
) -> torch.Tensor:
    """Stack BGR uint8 crops into a float (N, 3, H, W) RGB tensor in [0, 1] on ``device``.

    One pass converts, reorders and scales (the same float32 values as ``uint8 / 255``).
    ``contiguous=False`` returns a channels-last view, the memory layout the PyTorch runtime
    has always been given (its convolutions choose kernels by layout, and another layout moves
    features by about 4e-5); ``contiguous=True`` returns the NCHW array ONNX Runtime and
    OpenVINO read, so they need no copy of their own (about 0.4 ms per 256 px crop).
    """
    arr = np.stack(crops, axis=0) if len(crops) != 1 else np.asarray(crops[0])[None]
    n, h, w = arr.shape[:3]
    if contiguous:
        out = np.empty((n, 3, h, w), np.float32)
        out[...] = arr.transpose(0, 3, 1, 2)[:, ::-1]  # BGR -> RGB
    else:
        out = np.empty((n, h, w, 3), np.float32)
        out[...] = arr[..., ::-1]
    np.divide(out, 255.0, out=out)
    t = torch.from_numpy(out).to(device)
    return t if contiguous else t.permute(0, 3, 1, 2)


def clamp_box(
    box: Box, image_size: tuple[int, int], min_size: float = 4.0, min_inside: float = 0.2
) -> Box:
    """Keep a box a sane size and at least ``min_inside`` of its extent inside the image."""
    width, height = image_size
    x, y, w, h = box
    w = float(np.clip(w, min_size, width))
    h = float(np.clip(h, min_size, height))
    cx, cy = x + w / 2.0, y + h / 2.0
    mx, my = w * (0.5 - min_inside), h * (0.5 - min_inside)
    cx = float(np.clip(cx, -mx, width + mx))
    cy = float(np.clip(cy, -my, height + my))
    return (cx - w / 2.0, cy - h / 2.0, w, h)

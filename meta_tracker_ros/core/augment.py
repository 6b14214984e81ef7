"""First-frame augmentations for the classifier's initial training samples.

Why: a filter fitted to a single view overfits to it; shifted, mirrored, blurred and slightly
rotated copies of the first search crop (ATOM / DiMP ``generate_init_samples``) teach it
translation-equivariant, blur- and rotation-tolerant responses. Every augmentation returns the
crop image and where the target centre lands in it, so labels follow the transform.
"""

from __future__ import annotations

import cv2
import numpy as np

from meta_tracker_ros.core.geometry import Crop, crop_image


def augmentation_list(
    shift: float, blur: float, rotations: list[float]
) -> list[tuple[str, tuple[float, ...]]]:
    """(kind, parameters) of each sample after the identity: flip, four diagonal shifts
    (fractions of half the crop side), a blur (sigma in crop pixels) and rotations (degrees)."""
    augs: list[tuple[str, tuple[float, ...]]] = [("flip", ())]
    if shift > 0:
        augs += [("shift", (sx * shift, sy * shift)) for sx in (1, -1) for sy in (1, -1)]
    if blur > 0:
        augs.append(("blur", (blur,)))
    augs += [("rotate", (float(r),)) for r in rotations]
    return augs


def augmented_crops(
    frame: np.ndarray, crop: Crop, augmentations: list[tuple[str, tuple[float, ...]]]
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Crops of ``frame`` around ``crop`` and the target centre (u, v) in each crop's pixels.

    The first crop is the plain one, then one per entry of ``augmentations`` (see
    :func:`augmentation_list`; empty = no augmentation). The target is assumed to be at the
    crop centre (``crop.cx, crop.cy``).
    """
    size = crop.out_size
    centre = crop.to_crop_point(crop.cx, crop.cy)
    base = crop_image(frame, crop)
    images: list[np.ndarray] = [base]
    centres: list[tuple[float, float]] = [centre]
    for kind, p in augmentations:
        if kind == "flip":
            images.append(np.ascontiguousarray(base[:, ::-1]))
            centres.append((size - 1 - centre[0], centre[1]))
        elif kind == "shift":
            dx, dy = p[0] * crop.side / 2.0, p[1] * crop.side / 2.0
            shifted = Crop(crop.cx - dx, crop.cy - dy, crop.side, size)
            images.append(crop_image(frame, shifted))
            centres.append(shifted.to_crop_point(crop.cx, crop.cy))
        elif kind == "blur":
            images.append(cv2.GaussianBlur(base, (0, 0), p[0]))
            centres.append(centre)
        elif kind == "rotate":
            m = cv2.getRotationMatrix2D(centre, p[0], 1.0)
            images.append(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REPLICATE))
            centres.append(centre)
    return images, centres

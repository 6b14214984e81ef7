"""Procedural demo clip: a textured target moving over a textured background, no data files.

``make demo`` must run on a fresh clone without downloads or a camera, and the project may not
commit third-party frames, so the default input is generated. To give the tracker something
realistic to do, the clip has multi-scale natural-looking texture (smoothed noise at several
octaves plus soft blobs), a textured target that moves on a smooth path, grows and shrinks
(about 1.6x), and a vertical pole that briefly occludes it. Deterministic for a given seed.

It lives next to ``image_source`` (its default input) and imports no ROS, so the demo tool and
the tests read the same clip and its ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def _fractal_texture(rng: np.random.Generator, h: int, w: int, octaves: int = 7) -> np.ndarray:
    """HxWx3 float texture in [0, 1] from summed, upsampled noise (a cheap fractal noise)."""
    out = np.zeros((h, w, 3), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 4 * 2**o
        small = rng.random((max(2, h * cells // w), cells, 3)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.75
    out /= total
    return np.clip((out - out.min()) / max(1e-6, float(np.ptp(out))), 0, 1)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A greenish-brown 'field with shrubs' background as BGR uint8."""
    rng = np.random.default_rng(seed)
    tex = _fractal_texture(rng, height, width)
    base = np.array([0.32, 0.48, 0.40], np.float32)  # BGR: muted green/brown
    img = base + 0.35 * (tex - 0.5)
    for _ in range(14):  # darker shrubs / stones
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(8, 40))
        colour = (rng.random(3) * 0.3 + 0.15).astype(np.float32)
        overlay = img.copy()
        cv2.circle(overlay, (int(cx), int(cy)), r, colour.tolist(), -1, cv2.LINE_AA)
        img = cv2.addWeighted(overlay, 0.6, img, 0.4, 0)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def target_sprite(size: int = 96, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A textured, roughly elliptical target (BGR) and its alpha mask (uint8 0/255)."""
    rng = np.random.default_rng(seed)
    tex = _fractal_texture(rng, size, size, octaves=3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = (0.15, 0.25, 0.85)  # orange-red body (BGR)
    img = img * (0.6 + 0.8 * tex)
    # Stripes make the appearance distinctive and rotation-sensitive.
    for k in range(3):
        y = int(size * (0.25 + 0.25 * k))
        cv2.line(img, (0, y), (size, y + size // 6), (0.9, 0.85, 0.2), max(2, size // 16))
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(
        mask,
        (size // 2, size // 2),
        (size // 2 - 2, int(size * 0.38)),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
    )
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def clip(
    n_frames: int = 150, width: int = 640, height: int = 360, seed: int = 0
) -> Iterator[tuple[np.ndarray, Box, np.ndarray]]:
    """Yield ``(frame_bgr, gt_box_xywh, gt_mask)`` for each frame of the synthetic clip."""
    bg = background(width, height, seed)
    sprite, alpha = target_sprite(128, seed + 1)
    for i in range(n_frames):
        t = i / max(1, n_frames - 1)
        # Left-to-right with a wobble and a vertical wave; scale 0.55..0.9 of the sprite.
        cx = width * (0.18 + 0.64 * t + 0.04 * math.sin(6 * math.pi * t))
        cy = height * (0.52 + 0.2 * math.sin(3 * math.pi * t))
        scale = 0.55 + 0.35 * (0.5 - 0.5 * math.cos(2 * math.pi * t))
        sw = sh = max(8, round(128 * scale))
        spr = cv2.resize(sprite, (sw, sh), interpolation=cv2.INTER_AREA)
        alp = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA)
        # Slight camera shake: shift the background a few pixels.
        dx, dy = 3 * math.sin(i * 0.7), 2 * math.cos(i * 0.5)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frame = cv2.warpAffine(bg, m, (width, height), borderMode=cv2.BORDER_REFLECT)
        x0, y0 = round(cx - sw / 2), round(cy - sh / 2)
        mask_full = np.zeros((height, width), np.uint8)
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(width, x0 + sw), min(height, y0 + sh)
        if fx1 > fx0 and fy1 > fy0:
            a = alp[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0].astype(np.float32)[..., None] / 255
            roi = frame[fy0:fy1, fx0:fx1].astype(np.float32)
            s = spr[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0].astype(np.float32)
            frame[fy0:fy1, fx0:fx1] = (a * s + (1 - a) * roi).astype(np.uint8)
            mask_full[fy0:fy1, fx0:fx1] = np.where(a[..., 0] > 0.5, 255, 0)
        # A pole in the path briefly occludes the target (around 55-65 % of the clip).
        pole_x = int(width * 0.56)
        cv2.rectangle(frame, (pole_x - 14, 0), (pole_x + 14, height), (60, 70, 80), -1)
        cv2.line(frame, (pole_x - 6, 0), (pole_x - 6, height), (90, 100, 110), 3)
        mask_full[:, max(0, pole_x - 14) : pole_x + 15] = 0
        noise = np.random.default_rng(seed * 1000 + i).normal(0, 3, frame.shape)
        frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        box = (float(x0), float(y0), float(sw), float(sh))
        yield frame, box, mask_full

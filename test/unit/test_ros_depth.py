"""Robust depth and pinhole back-projection (pure numpy)."""

from __future__ import annotations

import math

import numpy as np

from meta_tracker_ros.ros.depth import Intrinsics, backproject, robust_depth, target_position

K = Intrinsics(fx=500.0, fy=500.0, cx=320.0, cy=180.0, width=640, height=360)


def test_backproject_centre_and_offsets():
    assert backproject(320, 180, 2.0, K) == (0.0, 0.0, 2.0)
    x, y, z = backproject(420, 130, 2.0, K)
    assert math.isclose(x, 0.4) and math.isclose(y, -0.2) and z == 2.0


def test_intrinsics_from_k_and_scaling():
    k = Intrinsics.from_k([500, 0, 320, 0, 500, 180, 0, 0, 1], 640, 360)
    assert k == K
    assert Intrinsics.from_k([0.0] * 9, 640, 360) is None
    half = K.scaled_to(320, 180)
    assert (half.fx, half.cx, half.cy) == (250.0, 160.0, 90.0)
    assert K.horizontal_angle(320) == 0.0 and K.horizontal_angle(400) > 0


def test_robust_depth_ignores_holes_and_background_in_the_mask():
    depth = np.full((100, 100), 5.0, np.float32)  # background
    depth[30:70, 30:70] = 2.0  # target
    depth[40:45, 40:45] = np.nan  # holes
    mask = np.zeros((100, 100), np.uint8)
    mask[28:72, 28:72] = 255  # mask bleeds 2 px into the background
    assert robust_depth(depth, (30, 30, 40, 40), mask) == 2.0


def test_robust_depth_box_centre_and_no_valid_pixels():
    depth = np.full((100, 100), 3.0, np.float32)
    depth[45:55, 45:55] = 1.5
    assert robust_depth(depth, (30, 30, 40, 40)) == 1.5
    assert robust_depth(np.full((10, 10), np.nan, np.float32), (0, 0, 10, 10)) is None
    assert robust_depth(depth, (500, 500, 10, 10)) is None


def test_target_position_with_half_resolution_depth():
    depth = np.full((180, 320), 4.0, np.float32)
    depth[40:60, 200:220] = 2.0  # target at colour pixels x 400..440, y 80..120
    pos = target_position(depth, (400.0, 80.0, 40.0, 40.0), K)
    assert pos is not None
    x, y, z = pos
    assert z == 2.0
    assert math.isclose(x, (420 - 320) * 2.0 / 500) and math.isclose(y, (100 - 180) * 2.0 / 500)

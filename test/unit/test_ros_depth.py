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


def _reference_depth(depth: np.ndarray, mask: np.ndarray) -> float | None:
    """The definition: median of the nearer half of every valid depth pixel under the mask."""
    values = depth[mask > 0]
    values = values[np.isfinite(values) & (values > 0)]
    if values.size < 5:
        return None
    return float(np.median(np.sort(values)[: (values.size + 1) // 2]))


def test_mask_depth_and_centroid_equal_their_definitions_on_random_targets():
    """Bounding-box crop, partial sort and image moments give the numbers of the definition."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        h, w = 60 + trial, 80 + 2 * trial
        depth = rng.uniform(0.3, 8.0, (h, w)).astype(np.float32)
        depth[rng.random((h, w)) < 0.2] = np.nan
        depth[rng.random((h, w)) < 0.05] = 0.0
        mask = np.zeros((h, w), np.uint8)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        mask[y0 : y0 + rng.integers(1, h // 2), x0 : x0 + rng.integers(1, w // 2)] = 255
        mask[rng.random((h, w)) < 0.01] = 255  # stray pixels: odd and even counts, far corners
        box = (float(x0), float(y0), 10.0, 10.0)
        assert robust_depth(depth, box, mask) == _reference_depth(depth, mask)
        k = Intrinsics(fx=100.0, fy=100.0, cx=w / 2, cy=h / 2, width=w, height=h)
        pos = target_position(depth, box, k, mask)
        if pos is None:
            continue
        ys, xs = np.nonzero(mask)
        z = _reference_depth(depth, mask)
        assert np.allclose(pos, backproject(xs.mean(), ys.mean(), z, k), rtol=0, atol=1e-9)


def test_depth_timing_tool_prints_one_row_per_case(capsys):
    from meta_tracker_ros.tools import depth_timing

    assert depth_timing.main(["--sizes", "64x48:10x20,80x60:80x60", "--repeats", "2"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 64x48")]
    assert len(rows) == 1 and float(rows[0].split("|")[3]) > 0

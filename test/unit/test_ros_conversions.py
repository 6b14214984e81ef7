"""Image <-> numpy conversions for every supported encoding (no ROS graph needed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable: run through make test")

from meta_tracker_ros.core.types import TrackResult, TrackState
from meta_tracker_ros.ros import conversions as conv


@pytest.fixture
def frame() -> np.ndarray:
    """A smooth colour frame (YUV 4:2:2 round trips are exact only up to chroma averaging)."""
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_colour_round_trip_is_exact(frame, encoding):
    msg = conv.bgr_to_image(frame, encoding)
    assert msg.encoding == encoding and msg.height == 48 and msg.width == 64
    np.testing.assert_array_equal(conv.image_to_bgr(msg), frame)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_round_trip_gives_grey_bgr(frame, encoding):
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    out = conv.image_to_bgr(conv.bgr_to_image(frame, encoding))
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], grey)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_mono16_big_endian_and_fixed_scaling():
    data = np.array([[0, 256, 65535, 32768]], dtype=">u2")
    msg = conv.bgr_to_image(np.zeros((1, 4, 3), np.uint8), "mono16")
    msg.is_bigendian, msg.data = True, data.tobytes()
    out = conv.image_to_bgr(msg)[0, :, 0]
    assert out.tolist() == [0, 1, 255, 128]


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_round_trip_is_close(frame, encoding):
    out = conv.image_to_bgr(conv.bgr_to_image(frame, encoding))
    assert out.shape == frame.shape
    assert np.abs(out.astype(int) - frame.astype(int)).mean() < 4.0


def test_uyvy_and_yuyv_byte_orders_differ(frame):
    a = conv.bgr_to_image(frame, "uyvy")
    b = conv.bgr_to_image(frame, "yuyv")
    assert bytes(a.data) != bytes(b.data)
    b.encoding = "uyvy"  # YUYV bytes read as UYVY must not give the same picture
    assert np.abs(conv.image_to_bgr(b).astype(int) - frame.astype(int)).mean() > 10


def test_row_padding_is_honoured(frame):
    msg = conv.bgr_to_image(frame, "bgr8")
    padded = np.zeros((48, 64 * 3 + 8), np.uint8)
    padded[:, : 64 * 3] = frame.reshape(48, -1)
    msg.step, msg.data = 64 * 3 + 8, padded.tobytes()
    np.testing.assert_array_equal(conv.image_to_bgr(msg), frame)


def _raw(array: np.ndarray, encoding: str):
    """A sensor_msgs/Image holding ``array`` (HxW or HxWxC, uint8 or little-endian uint16)."""
    from sensor_msgs.msg import Image

    h, w = array.shape[:2]
    data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return Image(
        height=h, width=w, encoding=encoding, is_bigendian=0, step=len(data) // h, data=data
    )


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_mosaics_are_demosaiced_to_the_right_colours(frame, pattern, bits):
    """A mosaic sampled from a known image (ROS names the top-left 2x2 cell) comes back as it."""
    channel = {"b": 0, "g": 1, "r": 2}
    mosaic = np.zeros(frame.shape[:2], np.uint16 if bits == 16 else np.uint8)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        values = frame[dy::2, dx::2, channel[pattern[k]]].astype(np.uint16)
        mosaic[dy::2, dx::2] = values * 257 if bits == 16 else values
    out = conv.image_to_bgr(_raw(mosaic, f"bayer_{pattern}{bits}"))
    assert out.shape == frame.shape and out.dtype == np.uint8
    error = np.abs(out.astype(int) - frame.astype(int))[2:-2, 2:-2]
    assert error.mean() < 1.0, (pattern, error.mean())  # a wrong pattern errs by tens


@pytest.mark.parametrize(("encoding", "order"), [("bgr16", [0, 1, 2]), ("rgb16", [2, 1, 0])])
@pytest.mark.parametrize("alpha", [False, True])
def test_16_bit_colour_is_scaled_like_mono16(frame, encoding, order, alpha):
    wide = frame[:, :, order].astype(np.uint16) * 256 + 77  # low byte: dropped by the scaling
    if alpha:
        wide = np.dstack([wide, np.full(frame.shape[:2], 65535, np.uint16)])
        encoding = encoding.replace("16", "a16")
    np.testing.assert_array_equal(conv.image_to_bgr(_raw(wide, encoding)), frame)


def test_bayer_smaller_than_one_cell_is_refused():
    with pytest.raises(ValueError, match="2x2"):
        conv.image_to_bgr(_raw(np.zeros((1, 8), np.uint8), "bayer_rggb8"))


@pytest.mark.parametrize("encoding", ["nv21", "32FC3", "bayer_rggb", "", "jpeg"])
def test_unsupported_encoding_raises_its_own_error(frame, encoding):
    msg = conv.bgr_to_image(frame, "bgr8")
    msg.encoding = encoding
    with pytest.raises(conv.UnsupportedEncodingError):
        conv.image_to_bgr(msg)


@pytest.mark.parametrize(
    ("height", "width", "step", "nbytes"),
    [(0, 0, 0, 0), (10, 10, 30, 5), (10, 10, 10, 300), (-1, 4, 12, 12)],
)
def test_inconsistent_geometry_raises_value_error(height, width, step, nbytes):
    msg = conv.bgr_to_image(np.zeros((2, 2, 3), np.uint8), "bgr8")
    msg.height, msg.width, msg.step = max(0, height), width, step
    msg.data = bytes(nbytes)
    with pytest.raises(ValueError):
        conv.image_to_bgr(msg)


def test_odd_width_yuv_is_rejected():
    msg = conv.bgr_to_image(np.zeros((4, 4, 3), np.uint8), "uyvy")
    msg.width, msg.step, msg.data = 3, 6, bytes(24)
    with pytest.raises(ValueError, match="even width"):
        conv.image_to_bgr(msg)


def test_compressed_round_trip(frame):
    out = conv.compressed_to_bgr(conv.bgr_to_compressed(frame, "png"))
    np.testing.assert_array_equal(out, frame)
    jpg = conv.compressed_to_bgr(conv.bgr_to_compressed(frame, "jpeg"))
    assert jpg.shape == frame.shape
    bad = conv.bgr_to_compressed(frame, "jpeg")
    bad.data = b"not an image"
    with pytest.raises(ValueError):
        conv.compressed_to_bgr(bad)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_round_trip_in_metres_with_invalid_as_nan(encoding):
    depth = np.full((6, 8), 1.234, np.float32)
    depth[0, 0] = np.nan
    out = conv.depth_to_metres(conv.metres_to_depth(depth, encoding))
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out[1:, 1:], 1.234, atol=1e-3)


def test_mask_round_trip():
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:6] = 1
    out = conv.image_to_mask(conv.mask_to_image(mask))
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(out > 0, mask > 0)


def test_result_to_msg_roi_and_full_mask():
    from meta_tracker_ros.msg import TrackedObject

    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 5:25] = 255
    res = TrackResult((5.0, 10.0, 20.0, 10.0), 0.8, TrackState.UNCERTAIN, mask, 2)
    obj = conv.result_to_msg("a", res, (60, 40), mask_as_roi=True, msg_type=TrackedObject)
    assert (obj.center_x, obj.center_y, obj.size_x, obj.size_y) == (15.0, 15.0, 20.0, 10.0)
    assert obj.state == TrackedObject.STATE_UNCERTAIN and obj.frames_since_seen == 2
    assert (obj.mask_roi.x_offset, obj.mask_roi.y_offset) == (5, 10)
    assert (obj.mask.width, obj.mask.height) == (20, 10)
    np.testing.assert_array_equal(conv.msg_mask_full(obj, 60, 40), mask)
    full = conv.result_to_msg("a", res, (60, 40), mask_as_roi=False, position=(1.0, 2.0, 3.0))
    assert (full.mask.width, full.mask.height) == (60, 40)
    assert full.has_position and full.position.z == 3.0
    assert conv.msg_to_box(full) == (5.0, 10.0, 20.0, 10.0)
    # mask pixels outside the box are kept: the ROI grows to cover them
    wide = mask.copy()
    wide[30:35, 40:50] = 255
    res_wide = TrackResult((5.0, 10.0, 20.0, 10.0), 0.8, TrackState.TRACKING, wide)
    obj = conv.result_to_msg("a", res_wide, (60, 40), mask_as_roi=True, msg_type=TrackedObject)
    assert (obj.mask_roi.x_offset, obj.mask_roi.y_offset) == (5, 10)
    assert (obj.mask_roi.width, obj.mask_roi.height) == (45, 25)
    np.testing.assert_array_equal(conv.msg_mask_full(obj, 60, 40), wide)
    nomask = conv.result_to_msg("b", TrackResult((0, 0, 5, 5), 0.1, TrackState.LOST), (60, 40))
    assert nomask.mask.width == 0 and not nomask.has_position


def test_markers_for_targets_with_a_position():
    """A sphere as wide as the box at its depth plus a label; LOST / no depth: nothing drawn."""
    from meta_tracker_ros.msg import TrackedObjectArray
    from visualization_msgs.msg import Marker

    tracks = TrackedObjectArray()
    tracks.header.frame_id = "camera_optical_frame"
    tracks.header.stamp.sec = 7
    seen = conv.result_to_msg(
        "a", TrackResult((100, 50, 40, 80), 0.9, TrackState.TRACKING), (320, 240)
    )
    seen.has_position = True
    seen.position.x, seen.position.y, seen.position.z = 0.4, -0.1, 2.0
    lost = conv.result_to_msg("b", TrackResult((10, 10, 20, 20), 0.1, TrackState.LOST), (320, 240))
    tracks.objects = [seen, lost]
    out = conv.tracks_to_markers(tracks, fx=400.0)
    assert [m.action for m in out.markers] == [Marker.DELETEALL, Marker.ADD, Marker.ADD]
    sphere, label = out.markers[1], out.markers[2]
    assert sphere.type == Marker.SPHERE and label.type == Marker.TEXT_VIEW_FACING
    assert sphere.header.frame_id == "camera_optical_frame" and sphere.header.stamp.sec == 7
    assert (sphere.pose.position.x, sphere.pose.position.y, sphere.pose.position.z) == (
        pytest.approx(0.4),
        pytest.approx(-0.1),
        pytest.approx(2.0),
    )
    assert sphere.scale.x == pytest.approx(40 * 2.0 / 400.0)  # box width at 2 m
    assert label.text.startswith("a TRACKING 0.90") and label.pose.position.y < -0.1
    assert sphere.lifetime.sec + sphere.lifetime.nanosec > 0
    assert {m.ns for m in out.markers[1:]} == {"target/a"}
    tracks.objects = [lost]
    assert [m.action for m in conv.tracks_to_markers(tracks).markers] == [Marker.DELETEALL]


def test_removal_markers_delete_one_target_or_all():
    from visualization_msgs.msg import Marker

    one = conv.removal_markers("a").markers
    assert [(m.ns, m.id, m.action) for m in one] == [
        ("target/a", 0, Marker.DELETE),
        ("target/a", 1, Marker.DELETE),
    ]
    assert [m.action for m in conv.removal_markers("").markers] == [Marker.DELETEALL]

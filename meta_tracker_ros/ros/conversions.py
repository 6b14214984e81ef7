"""sensor_msgs <-> numpy conversions written for this package (no cv_bridge).

cv_bridge is unusable on the NumPy 2 stacks this package meets (see docs), so the node converts
images itself. Every function here is pure (messages in, arrays out, or back) so each encoding
can be unit-tested without a running ROS graph.

The tracking core wants HxWx3 uint8 BGR; :func:`image_to_bgr` produces exactly that from every
supported encoding and raises :class:`UnsupportedEncodingError` (a ``ValueError``) for the
others, so the node can warn once per encoding and skip the frame.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest

from meta_tracker_ros.core.types import TrackResult, TrackState

# Encodings we turn into BGR for the tracker (names as in sensor_msgs/image_encodings.hpp).
# ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV. "uyvy"/"yuyv" are common aliases.
_YUV422 = {
    "yuv422": cv2.COLOR_YUV2BGR_UYVY,
    "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUYV,
    "yuyv": cv2.COLOR_YUV2BGR_YUYV,
}
# Raw colour cameras (industrial and many USB3 ones) publish the sensor's Bayer mosaic. ROS's
# bayer_<pattern> names the colours of the top-left 2x2 cell; OpenCV names its codes after the
# second row's second and third pixels, so the names differ (a unit test checks the mapping on
# a mosaic made from a known image).
_BAYER = {
    "bayer_rggb": cv2.COLOR_BayerBG2BGR,
    "bayer_bggr": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg": cv2.COLOR_BayerGR2BGR,
    "bayer_grbg": cv2.COLOR_BayerGB2BGR,
}
# 16-bit colour: channel order (as indices into the message's channels, to BGR) and count.
_COLOR16 = {
    "bgr16": ((0, 1, 2), 3),
    "rgb16": ((2, 1, 0), 3),
    "bgra16": ((0, 1, 2), 4),
    "rgba16": ((2, 1, 0), 4),
}
COLOR_ENCODINGS = (
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    *_COLOR16,
    *_YUV422,
    *(f"{name}{bits}" for name in _BAYER for bits in (8, 16)),
)
_BAYER_ENCODINGS = {f"{n}{b}": (code, b == 16) for n, code in _BAYER.items() for b in (8, 16)}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")

# Refuse frames whose pixel count would make one conversion cost seconds or gigabytes.
MAX_PIXELS = 8192 * 8192


class UnsupportedEncodingError(ValueError):
    """The image's encoding is not one the node can convert; the frame should be skipped."""


def _check_geometry(msg: Image, bytes_per_pixel: int) -> None:
    """Reject messages whose declared size does not match their data (garbage never crashes)."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image ({w}x{h})")
    if h * w > MAX_PIXELS:
        raise ValueError(f"image too large ({w}x{h} > {MAX_PIXELS} pixels)")
    if step < w * bytes_per_pixel:
        raise ValueError(
            f"step {step} is smaller than width*{bytes_per_pixel} = {w * bytes_per_pixel}"
        )
    if len(msg.data) < step * (h - 1) + w * bytes_per_pixel:
        raise ValueError(f"data has {len(msg.data)} bytes, {step * h} expected for {w}x{h}")


def _rows(msg: Image, dtype: np.dtype, channels: int) -> np.ndarray:
    """View the data as HxWxC of ``dtype``, honouring row padding (step) and byte order."""
    itemsize = np.dtype(dtype).itemsize
    _check_geometry(msg, itemsize * channels)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, bytes) else msg.data, np.uint8)
    if len(buf) < step * h:  # last row may omit its padding
        buf = np.concatenate([buf, np.zeros(step * h - len(buf), np.uint8)])
    rows = buf[: step * h].reshape(h, step)[:, : w * itemsize * channels]
    dt = np.dtype(dtype)
    if itemsize > 1:
        dt = dt.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, channels)
    # astype to the native dtype swaps bytes only when the message's order differs.
    return arr.astype(np.dtype(dtype), copy=False)


def image_to_bgr(msg: Image) -> np.ndarray:
    """Convert a sensor_msgs/Image of any supported colour encoding to HxWx3 uint8 BGR.

    16-bit encodings (mono16, rgb16, ..., bayer_*16) are scaled to 8 bits by a fixed factor
    (65535 -> 255) rather than per-frame min/max, so brightness does not flicker between frames
    and the tracker's appearance model stays valid. Bayer mosaics are demosaiced bilinearly.
    """
    enc = msg.encoding.lower() if msg.encoding else ""
    if enc == "bgr8":
        return np.ascontiguousarray(_rows(msg, np.uint8, 3))
    if enc == "rgb8":
        return np.ascontiguousarray(_rows(msg, np.uint8, 3)[:, :, ::-1])
    if enc == "bgra8":
        return np.ascontiguousarray(_rows(msg, np.uint8, 4)[:, :, :3])
    if enc == "rgba8":
        return np.ascontiguousarray(_rows(msg, np.uint8, 4)[:, :, 2::-1])
    if enc == "mono8":
        return cv2.cvtColor(_rows(msg, np.uint8, 1)[:, :, 0], cv2.COLOR_GRAY2BGR)
    if enc == "mono16":
        gray = (_rows(msg, np.uint16, 1)[:, :, 0] >> 8).astype(np.uint8)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if enc in _COLOR16:
        order, channels = _COLOR16[enc]
        rows = _rows(msg, np.uint16, channels)
        return np.ascontiguousarray((rows[:, :, list(order)] >> 8).astype(np.uint8))
    if enc in _BAYER_ENCODINGS:
        code, wide = _BAYER_ENCODINGS[enc]
        if int(msg.width) < 2 or int(msg.height) < 2:
            raise ValueError(f"{enc} needs at least 2x2 pixels, got {msg.width}x{msg.height}")
        raw = _rows(msg, np.uint16 if wide else np.uint8, 1)[:, :, 0]
        if wide:
            raw = (raw >> 8).astype(np.uint8)
        return cv2.cvtColor(np.ascontiguousarray(raw), code)
    if enc in _YUV422:
        if int(msg.width) % 2:
            raise ValueError(f"{enc} needs an even width, got {msg.width}")
        packed = np.ascontiguousarray(_rows(msg, np.uint8, 2))
        return cv2.cvtColor(packed, _YUV422[enc])
    raise UnsupportedEncodingError(
        f"unsupported image encoding '{msg.encoding}' (supported: {', '.join(COLOR_ENCODINGS)})"
    )


def bgr_to_image(
    frame: np.ndarray, encoding: str = "bgr8", header: Any = None, bigendian: bool = False
) -> Image:
    """Build a sensor_msgs/Image from a BGR frame in any encoding :func:`image_to_bgr` reads.

    Used by the image source (bgr8) and by tests to produce every encoding for round trips.
    """
    enc = encoding.lower()
    if enc == "bgr8":
        data, ch = frame, 3
    elif enc == "rgb8":
        data, ch = frame[:, :, ::-1], 3
    elif enc == "bgra8":
        data, ch = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), 4
    elif enc == "rgba8":
        data, ch = cv2.cvtColor(frame, cv2.COLOR_BGR2RGBA), 4
    elif enc == "mono8":
        data, ch = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1
    elif enc == "mono16":
        data, ch = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, 2
    elif enc in _YUV422:
        data, ch = _bgr_to_yuv422(frame, uyvy=_YUV422[enc] == cv2.COLOR_YUV2BGR_UYVY), 2
    else:
        raise UnsupportedEncodingError(f"cannot encode '{encoding}'")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = encoding
    arr = np.ascontiguousarray(data)
    if arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
        msg.is_bigendian = bigendian
    msg.step = msg.width * (ch if arr.dtype.itemsize == 1 else arr.dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def _bgr_to_yuv422(frame: np.ndarray, uyvy: bool) -> np.ndarray:
    """Pack BGR into YUV 4:2:2, BT.601 limited range (what cameras send and OpenCV decodes).

    OpenCV has no BGR->UYVY conversion; this exists for the image source and the tests.
    """
    ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    y = 16.0 + ycrcb[:, :, 0] * (219.0 / 255.0)
    cb = 128.0 + (ycrcb[:, :, 2] - 128.0) * (224.0 / 255.0)
    cr = 128.0 + (ycrcb[:, :, 1] - 128.0) * (224.0 / 255.0)
    h, w = y.shape
    chroma = np.empty((h, w), np.float32)
    chroma[:, 0::2] = (cb[:, 0::2] + cb[:, 1::2]) / 2
    chroma[:, 1::2] = (cr[:, 0::2] + cr[:, 1::2]) / 2
    out = np.empty((h, w, 2), np.uint8)
    luma_idx, chroma_idx = (1, 0) if uyvy else (0, 1)
    out[:, :, luma_idx] = np.clip(np.rint(y), 0, 255)
    out[:, :, chroma_idx] = np.clip(np.rint(chroma), 0, 255)
    return out


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    """Decode a JPEG/PNG CompressedImage to BGR; raises ValueError on undecodable data."""
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    if buf.size == 0:
        raise ValueError("empty compressed image")
    frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if frame is None:
        raise UnsupportedEncodingError(f"cannot decode compressed image (format '{msg.format}')")
    if frame.shape[0] * frame.shape[1] > MAX_PIXELS:
        raise ValueError(f"image too large ({frame.shape[1]}x{frame.shape[0]})")
    return frame


def bgr_to_compressed(frame: np.ndarray, fmt: str = "jpeg", header: Any = None) -> CompressedImage:
    """Encode BGR as JPEG or PNG (image source and tests)."""
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", frame)
    if not ok:
        raise ValueError("encoding failed")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = buf.tobytes()
    return msg


def depth_to_metres(msg: Image) -> np.ndarray:
    """Convert a depth image (16UC1 millimetres or 32FC1 metres) to float32 metres.

    Invalid readings (0, NaN, inf) become NaN so that robust statistics can ignore them.
    """
    enc = msg.encoding.upper() if msg.encoding else ""
    if enc in ("16UC1", "MONO16"):
        raw = _rows(msg, np.uint16, 1)[:, :, 0].astype(np.float32)
        raw[raw == 0] = np.nan
        return raw / 1000.0
    if enc == "32FC1":
        depth = _rows(msg, np.float32, 1)[:, :, 0].astype(np.float32)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
        return depth
    raise UnsupportedEncodingError(f"unsupported depth encoding '{msg.encoding}' (16UC1 or 32FC1)")


def metres_to_depth(depth: np.ndarray, encoding: str = "16UC1", header: Any = None) -> Image:
    """Encode a float metres array as a depth image (tests and synthetic sources)."""
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(depth.shape[0]), int(depth.shape[1])
    msg.encoding = encoding
    if encoding.upper() == "16UC1":
        arr = np.nan_to_num(depth * 1000.0, nan=0.0).round().clip(0, 65535).astype("<u2")
    elif encoding.upper() == "32FC1":
        arr = depth.astype("<f4")
    else:
        raise UnsupportedEncodingError(encoding)
    msg.step = msg.width * arr.dtype.itemsize
    msg.data = arr.tobytes()
    return msg


def mask_to_image(mask: np.ndarray, header: Any = None) -> Image:
    """A HxW mask (nonzero = target) as a mono8 Image with values 0/255."""
    msg = Image()
    if header is not None:
        msg.header = header
    m = np.where(mask > 0, 255, 0).astype(np.uint8)
    msg.height, msg.width = int(m.shape[0]), int(m.shape[1])
    msg.encoding = "mono8"
    msg.step = msg.width
    msg.data = m.tobytes()
    return msg


def image_to_mask(msg: Image) -> np.ndarray:
    """A mono8 Image as a HxW uint8 0/255 mask (any nonzero counts as target)."""
    if msg.encoding.lower() not in ("mono8", "8uc1"):
        raise UnsupportedEncodingError(f"mask must be mono8, got '{msg.encoding}'")
    return np.where(_rows(msg, np.uint8, 1)[:, :, 0] > 0, 255, 0).astype(np.uint8)


def box_roi(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, ...]:
    """Integer (x, y, w, h) of a float box clipped to the image; (0, 0, 0, 0) if outside."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return (0, 0, 0, 0)
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0)
    return (x0, y0, x1 - x0, y1 - y0)


def _union_roi(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Smallest (x, y, w, h) covering both integer rectangles; empty ones are ignored."""
    rects = [r for r in (a, b) if r[2] > 0 and r[3] > 0]
    if not rects:
        return (0, 0, 0, 0)
    x0 = min(r[0] for r in rects)
    y0 = min(r[1] for r in rects)
    x1 = max(r[0] + r[2] for r in rects)
    y1 = max(r[1] + r[3] for r in rects)
    return (x0, y0, x1 - x0, y1 - y0)


def result_to_msg(
    target_id: str,
    result: TrackResult,
    image_size: tuple[int, int],
    mask_as_roi: bool = True,
    position: tuple[float, float, float] | None = None,
    msg_type: Any = None,
) -> Any:
    """Convert one core TrackResult to a TrackedObject.

    With ``mask_as_roi`` the mask is cropped to the union of the box and the mask's own
    bounding rectangle (clipped to the image): messages stay small, and mask pixels outside the
    box (the mask head looks at a window around it) are not cut off. Consumers paste the mask
    back at ``mask_roi``. Otherwise the ROI is the whole image.
    """
    if msg_type is None:
        from meta_tracker_ros.msg import TrackedObject as msg_type  # noqa: N813
    obj = msg_type()
    obj.id = str(target_id)
    obj.state = int(TrackState(result.state))
    obj.score = float(np.clip(result.score, 0.0, 1.0)) if math.isfinite(result.score) else 0.0
    x, y, w, h = (float(v) for v in result.box)
    obj.center_x, obj.center_y, obj.size_x, obj.size_y = x + w / 2, y + h / 2, w, h
    obj.frames_since_seen = max(0, int(result.frames_since_seen))
    width, height = image_size
    if result.mask is not None and result.mask.shape[:2] == (height, width):
        if mask_as_roi:
            rx, ry, rw, rh = _union_roi(
                box_roi(result.box, width, height), cv2.boundingRect(result.mask)
            )
            crop = result.mask[ry : ry + rh, rx : rx + rw]
        else:
            rx, ry, rw, rh = 0, 0, width, height
            crop = result.mask
        obj.mask_roi = RegionOfInterest(
            x_offset=rx, y_offset=ry, width=rw, height=rh, do_rectify=False
        )
        if rw > 0 and rh > 0:
            obj.mask = mask_to_image(crop)
            obj.mask.encoding = "mono8"
    if position is not None:
        obj.has_position = True
        obj.position.x, obj.position.y, obj.position.z = (float(v) for v in position)
    return obj


def msg_to_box(obj: Any) -> tuple[float, float, float, float]:
    """(x, y, w, h) top-left box of a TrackedObject (centre/size in the message)."""
    return (
        obj.center_x - obj.size_x / 2,
        obj.center_y - obj.size_y / 2,
        float(obj.size_x),
        float(obj.size_y),
    )


def msg_mask_full(obj: Any, width: int, height: int) -> np.ndarray | None:
    """Paste a TrackedObject's (ROI) mask into a full HxW frame; None when it carries no mask."""
    if obj.mask.width == 0 or obj.mask.height == 0:
        return None
    roi = obj.mask_roi
    crop = image_to_mask(obj.mask)
    full = np.zeros((height, width), np.uint8)
    x0, y0 = int(roi.x_offset), int(roi.y_offset)
    h = min(crop.shape[0], height - y0)
    w = min(crop.shape[1], width - x0)
    if h > 0 and w > 0:
        full[y0 : y0 + h, x0 : x0 + w] = crop[:h, :w]
    return full


# rviz colours (r, g, b) per TrackedObject state; LOST targets have no position to draw.
_STATE_COLOURS = {
    int(TrackState.INITIALIZING): (0.3, 0.6, 1.0),
    int(TrackState.TRACKING): (0.2, 0.9, 0.3),
    int(TrackState.UNCERTAIN): (1.0, 0.8, 0.1),
    int(TrackState.LOST): (0.9, 0.2, 0.2),
}
_STATE_NAMES = {int(s): s.name for s in TrackState}
_SPHERE, _LABEL = 0, 1  # marker ids within a target's namespace


def _marker_ns(target_id: str) -> str:
    return f"target/{target_id}"


def tracks_to_markers(tracks: Any, fx: float | None = None, lifetime_s: float = 1.0) -> Any:
    """rviz markers for the targets of a TrackedObjectArray that have a 3-D position.

    Why: rviz cannot show the package's own message, so without these a target's position
    (from depth) is invisible there. Each such target gets a sphere at its position, as wide as
    the box at that depth (``size_x * z / fx``; 0.3 m without ``fx``), and a label above it
    (id, state, score), both in the tracks' frame. The array starts with a DELETEALL, so a
    target that was removed, lost or left the depth image disappears at the next message; the
    lifetime clears the rest if the node stops.
    """
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    clear = Marker()
    clear.header = tracks.header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
    for obj in tracks.objects:
        if not obj.has_position:
            continue
        z = float(obj.position.z)
        width = float(obj.size_x) * z / fx if fx else 0.3
        diameter = float(np.clip(width, 0.05, 3.0))
        r, g, b = _STATE_COLOURS.get(int(obj.state), (0.8, 0.8, 0.8))
        for kind in (Marker.SPHERE, Marker.TEXT_VIEW_FACING):
            m = Marker()
            m.header = tracks.header
            m.ns = _marker_ns(obj.id)
            m.id = _SPHERE if kind == Marker.SPHERE else _LABEL
            m.type = kind
            m.action = Marker.ADD
            m.lifetime = life
            m.pose.position.x = float(obj.position.x)
            m.pose.position.y = float(obj.position.y)
            m.pose.position.z = z
            m.pose.orientation.w = 1.0
            m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 0.6
            if kind == Marker.SPHERE:
                m.scale.x = m.scale.y = m.scale.z = diameter
            else:  # above the sphere: -y is up in an optical frame
                m.pose.position.y -= 0.5 * diameter + 0.1
                m.scale.z = max(0.08, 0.25 * diameter)
                m.color.a = 1.0
                state = _STATE_NAMES.get(int(obj.state), str(obj.state))
                m.text = f"{obj.id} {state} {obj.score:.2f}"
            out.markers.append(m)
    return out


def removal_markers(target_id: str) -> Any:
    """A MarkerArray that deletes one target's markers (``""``: every target's)."""
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    if not target_id:
        out.markers.append(Marker(action=Marker.DELETEALL))
        return out
    for marker_id in (_SPHERE, _LABEL):
        out.markers.append(Marker(ns=_marker_ns(target_id), id=marker_id, action=Marker.DELETE))
    return out

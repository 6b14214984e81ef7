"""image_source: publish a video file, an image folder, a camera or the synthetic clip.

Publishes ``image`` (sensor_msgs/Image, bgr8) and ``camera_info`` at ``rate`` Hz with the same
header, optionally looping. Used by the demo and for testing the tracker on recorded data
without rosbag2 (not available from PyPI).

``input`` accepts:
  - ``synthetic`` (default): the procedural clip of :mod:`meta_tracker_ros.ros.synthetic`;
  - a video file (anything OpenCV reads);
  - an image folder: its sorted images, or those of its ``img/`` subfolder (the
    ``../shared/data/boxes/<name>/`` layout);
  - a camera: ``/dev/videoN`` or a device index ``N``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import SetBool

from meta_tracker_ros.ros import synthetic
from meta_tracker_ros.ros.conversions import bgr_to_image
from meta_tracker_ros.ros.node_exit import close_node
from meta_tracker_ros.ros.params import (
    ConfigurationError,
    ParamSpec,
    check_unknown_overrides,
    dataclass_specs,
    declare,
    exit_on_configuration_error,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def image_files(folder: Path) -> list[Path]:
    """Sorted image files of ``folder`` or of its ``img/`` subfolder."""
    folder = Path(folder)
    if (folder / "img").is_dir():
        folder = folder / "img"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class FrameReader:
    """Iterates BGR frames from any supported input; ``loop`` restarts finite inputs."""

    def __init__(self, source: str, loop: bool = False, width: int = 0, height: int = 0) -> None:
        self.source = source
        self.loop = loop
        self.size = (width, height)
        self.is_live = False
        src = source.strip()
        if src in ("", "synthetic"):
            self.kind = "synthetic"
        elif src.startswith("/dev/video") or src.isdigit():
            self.kind, self.is_live = "camera", True
        elif Path(src).is_dir():
            self.kind = "folder"
            self.files = image_files(Path(src))
            if not self.files:
                raise ValueError(f"no images in {src}")
        elif Path(src).is_file():
            self.kind = "video"
        else:
            raise ValueError(f"input '{src}' is not synthetic, a folder, a file or a camera")

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            count = 0
            for frame in self._once():
                count += 1
                yield self._resize(frame)
            if not self.loop or self.is_live or count == 0:
                return

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        w, h = self.size
        if w > 0 and h > 0 and (frame.shape[1], frame.shape[0]) != (w, h):
            return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        return frame

    def _once(self) -> Iterator[np.ndarray]:
        if self.kind == "synthetic":
            w, h = self.size
            for frame, _, _ in synthetic.clip(width=w or 640, height=h or 360):
                yield frame
        elif self.kind == "folder":
            for path in self.files:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if frame is not None:
                    yield frame
        else:
            dev: str | int = int(self.source) if self.source.isdigit() else self.source
            cap = cv2.VideoCapture(dev)
            if not cap.isOpened():
                raise ValueError(f"cannot open '{self.source}'")
            try:
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        return
                    yield frame
            finally:
                cap.release()


def camera_info_for(width: int, height: int, hfov: float, frame_id: str) -> CameraInfo:
    """Pinhole CameraInfo from a horizontal field of view (no calibration file needed)."""
    fx = (width / 2) / math.tan(hfov / 2)
    info = CameraInfo()
    info.header.frame_id = frame_id
    info.width, info.height = width, height
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [fx, 0.0, width / 2, 0.0, fx, height / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, width / 2, 0.0, 0.0, fx, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def _param(default: Any, description: str, value_range: tuple[float, float] | None = None) -> Any:
    meta: dict[str, Any] = {"description": description}
    if value_range is not None:
        meta["range"] = value_range
    return field(default=default, metadata=meta)


@dataclass
class ImageSourceConfig:
    """Parameters of image_source (all read at start-up, so all read-only)."""

    input: str = _param("synthetic", "synthetic | video file | image folder | /dev/videoN | N")
    rate: float = _param(30.0, "Publishing rate (Hz); 0: as fast as possible", (0, 1000))
    loop: bool = _param(False, "Restart finite inputs at their end")
    frame_id: str = _param("camera_optical_frame", "header.frame_id of the images")
    horizontal_fov: float = _param(1.0472, "Horizontal FOV (rad) for camera_info", (0.01, 3.13))
    width: int = _param(0, "Resize frames to this width (0: keep)", (0, 16384))
    height: int = _param(0, "Resize frames to this height (0: keep)", (0, 16384))
    max_frames: int = _param(0, "Stop after this many frames (0: no limit)", (0, 2**31 - 1))
    wait_for_subscribers: int = _param(
        0, "Wait (at most 30 s) until `image` has this many subscribers", (0, 1000)
    )
    reliable: bool = _param(True, "RELIABLE QoS (false: BEST_EFFORT)")
    start_paused: bool = _param(False, "Publish the first frame, then wait for ~/pause false")
    queue_depth: int = _param(
        1,
        "Publisher history depth (1: newest only; more lets slow reliable subscribers such as "
        "recorders get every frame)",
        (1, 1000),
    )


def image_source_specs() -> list[ParamSpec]:
    """The node's parameters: typed, ranged and read-only (docs/nodes.md is generated from them)."""
    return dataclass_specs(ImageSourceConfig(), read_only=True)


class ImageSource(Node):
    """Publishes frames from a :class:`FrameReader` at a fixed rate on its own thread.

    Bad parameters (a wrong type, a value out of range, a misspelt name, an input that names
    nothing) raise :class:`ConfigurationError` at construction, like the other nodes, instead of
    publishing the synthetic clip or ending in a traceback. An input that fails while playing
    (a file OpenCV cannot decode, a camera that stops) sets :attr:`failed`.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("image_source", **kwargs)
        values = declare(self, image_source_specs())  # raises ConfigurationError
        check_unknown_overrides(self)
        self.config = cfg = ImageSourceConfig(**values)
        try:
            self.reader = FrameReader(cfg.input, cfg.loop, cfg.width, cfg.height)
        except ValueError as exc:
            raise ConfigurationError(f"parameter input: {exc}") from exc
        qos = QoSProfile(
            depth=cfg.queue_depth,
            reliability=ReliabilityPolicy.RELIABLE
            if cfg.reliable
            else ReliabilityPolicy.BEST_EFFORT,
        )
        self.pub_image = self.create_publisher(Image, "image", qos)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos)
        self.published = 0
        self.failed = False  # the input failed while playing (exit status 1)
        self.done = threading.Event()
        # Set = playing. A paused source lets a client set a target on the first frame and
        # start playback only once the tracker is initialised (the demo does this).
        self._playing = threading.Event()
        if not cfg.start_paused:
            self._playing.set()
        self.create_service(SetBool, "~/pause", self._on_pause)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cfg = self.config
        try:
            deadline = time.monotonic() + 30.0
            while (
                cfg.wait_for_subscribers > 0
                and self.pub_image.get_subscription_count() < cfg.wait_for_subscribers
                and time.monotonic() < deadline
                and not self._stop.is_set()
            ):
                time.sleep(0.02)
            self.get_logger().info(f"publishing '{cfg.input}' at {cfg.rate:g} Hz")
            period = 1.0 / cfg.rate if cfg.rate > 0 else 0.0
            next_time = time.monotonic()
            info = None
            for frame in self.reader:
                if self._stop.is_set() or not rclpy.ok(context=self.context):
                    break
                now = time.monotonic()
                if period and next_time > now:
                    time.sleep(next_time - now)
                next_time = max(next_time + period, time.monotonic() - period)
                h, w = frame.shape[:2]
                if info is None or (info.width, info.height) != (w, h):
                    info = camera_info_for(w, h, cfg.horizontal_fov, cfg.frame_id)
                msg = bgr_to_image(frame, "bgr8")
                msg.header.frame_id = cfg.frame_id
                msg.header.stamp = self.get_clock().now().to_msg()
                info.header.stamp = msg.header.stamp
                self.pub_info.publish(info)
                self.pub_image.publish(msg)
                self.published += 1
                while not self._playing.wait(timeout=0.2):
                    if self._stop.is_set():
                        return
                    # Re-send the same frame (same stamp) so late or best-effort subscribers
                    # also get the frame a target will be set on.
                    self.pub_info.publish(info)
                    self.pub_image.publish(msg)
                if cfg.max_frames and self.published >= cfg.max_frames:
                    break
            else:
                if self.reader.is_live and not self._stop.is_set():
                    # A camera has no end: running out of frames means it was unplugged or
                    # its driver failed, which a robot's launch file should see.
                    raise RuntimeError(
                        f"camera '{cfg.input}' stopped delivering frames after {self.published}"
                    )
                if self.published == 0 and not self._stop.is_set():
                    raise RuntimeError(f"'{cfg.input}' gave no frame OpenCV could read")
            self.get_logger().info(f"input finished after {self.published} frames")
        except Exception as exc:  # a broken camera or file must say so, not hang silently
            if self._stop.is_set() or not self.context.ok():
                # Ctrl-C or a launch shutdown invalidates the context while this thread is
                # publishing: the publish raises, but that is the requested end, not a failure.
                return
            self.failed = True
            self.get_logger().error(f"image source failed: {exc}")
        finally:
            self.done.set()

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response):
        if request.data:
            self._playing.clear()
        else:
            self._playing.set()
        response.success, response.message = True, "paused" if request.data else "playing"
        return response

    def stop(self) -> None:
        """Ask the publishing thread to end and wait for it."""
        self._stop.set()
        self._thread.join(timeout=2.0)


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``image_source`` executable; exits when a finite input ends.

    Exit status: 0 when the input ended or the process was interrupted, 1 when the input failed
    while playing, 2 for a refused configuration (the reason on stderr).
    """
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = ImageSource()
    except ConfigurationError as exc:
        if rclpy.ok():
            rclpy.shutdown()
        return exit_on_configuration_error("image_source", exc)
    try:
        while rclpy.ok() and not node.done.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(0.2)  # let the last messages leave
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        close_node(node, "image_source")
    return 1 if node.failed else 0


if __name__ == "__main__":
    sys.exit(main())

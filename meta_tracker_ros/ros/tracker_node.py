"""tracker_node: the tracking core behind ROS topics, services, parameters and diagnostics.

Threading, and why: a tracker step takes tens of milliseconds on a CPU, longer than a 30 Hz
frame period. Running it inside the image callback would let frames queue up in the executor
and every published track would describe an ever older image. Instead:

- the image callback only stores the newest message (and appends it to a short ring used by
  ``set_target``) and wakes the worker; a frame that arrives while the worker is busy replaces
  the pending one (it is dropped, never queued);
- one worker thread owns the core tracker: it runs queued commands (add/remove/reconfigure)
  and then tracks the newest frame, so the core is never used from two threads;
- services run in a reentrant callback group of a multi-threaded executor: ``set_target``
  validates in the service thread, hands the initialisation to the worker and waits at most
  ``set_target_timeout`` seconds, so it never blocks the node for long.

Images stopping is reported, not guessed from the tracker: when no image has arrived for
``lost_timeout`` seconds, one ``~/tracks`` message reports the tracked targets LOST (see
:meth:`TrackerNode._check_timeout` for what it contains and how it is stamped).

The node holds no tracking math: it converts messages, calls
:func:`~meta_tracker_ros.core.create_multi_tracker`'s tracker and publishes the results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import queue
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from meta_tracker_ros.core.config import TrackerConfig, load_config
from meta_tracker_ros.core.types import TrackResult, TrackState, validate_box
from meta_tracker_ros.msg import TrackedObjectArray
from meta_tracker_ros.ros import conversions as conv
from meta_tracker_ros.ros.debug_draw import draw_tracks
from meta_tracker_ros.ros.depth import Intrinsics, target_position
from meta_tracker_ros.ros.params import (
    NodeConfig,
    ParamSpec,
    check_value,
    declare,
    from_param_value,
    node_specs,
    tracker_specs,
)
from meta_tracker_ros.srv import RemoveTarget, SetTarget

# Tracker fields the core reads when it builds the tracker (backbone levels, heads), not per
# target: changing one rebuilds the tracker and re-initialises the current targets at their last
# boxes. Any "*.feature_levels" counts, so levels added to new sections are covered too;
# mask.feature_weight decides whether the mask head's levels are computed at all; the learned
# classifier file is loaded (and checked against proj_dim) once per tracker.
STRUCTURAL_PARAMS = {
    "mask.enabled",
    "mask.feature_weight",
    "scale.enabled",
    "search.crop_size",
    "classifier.learned",
    "classifier.weights_path",
    "classifier.proj_dim",
}


def is_structural(name: str) -> bool:
    """Whether changing tracker parameter ``name`` needs a rebuilt tracker."""
    return name in STRUCTURAL_PARAMS or name.endswith("feature_levels")


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclasses.dataclass
class _Frame:
    """One received image: the raw message, converted lazily (most frames are never used)."""

    stamp: int
    msg: Any
    received: float
    bgr: np.ndarray | None = None


class TrackerNode(Node):
    """ROS 2 node wrapping the multi-target tracker."""

    def __init__(self, tracker_factory: Any = None, **kwargs: Any) -> None:
        super().__init__("tracker_node", **kwargs)
        self._node_specs = {s.name: s for s in node_specs()}
        nv = declare(self, list(self._node_specs.values()))
        self.node_cfg = NodeConfig(**nv)
        try:
            base = load_config(self.node_cfg.config_file or None)
        except (OSError, ValueError) as exc:  # a broken YAML must not keep the node down
            self.get_logger().error(f"cannot load tracker config ({exc}); using code defaults")
            base = TrackerConfig()
        self._tracker_specs = {s.name: s for s in tracker_specs(base)}
        tv = declare(self, list(self._tracker_specs.values()))
        try:
            self.config: TrackerConfig = base.with_overrides(tv)
        except ValueError as exc:
            self.get_logger().error(f"invalid tracker parameters ({exc}); using {base!r}")
            self.config = base
        # Say which values differ from the tracker YAML: a stale params file is then visible.
        base_flat = base.flat()
        changed = {k: v for k, v in self.config.flat().items() if base_flat.get(k) != v}
        if changed:
            self.get_logger().info(f"tracker parameters differing from the tracker YAML: {changed}")
        self._factory = tracker_factory
        self._tracker: Any = None
        self._tracker_error = ""
        self._ready = threading.Event()

        # Shared state between callbacks and the worker.
        self._lock = threading.Lock()
        self._latest: _Frame | None = None
        self._ring: deque[_Frame] = deque(maxlen=self.node_cfg.frame_ring_length)
        self._depth: deque[Any] = deque(maxlen=8)
        self._info: CameraInfo | None = None
        self._wake = threading.Event()
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self._last_warn: dict[str, float] = {}
        self._next_id = 1

        # Results and statistics (written by the worker, read by diagnostics).
        self._ids: list[str] = []
        self._last_results: dict[str, TrackResult] = {}
        self._target_size: tuple[int, int] | None = None  # (h, w) the targets were set on
        self._last_header: Any = None
        self._last_frame_time = 0.0
        self._last_receive = 0.0
        self._last_added = 0.0  # monotonic end of the latest target initialisation
        self._lost_reported = False
        self._received = 0
        self._dropped = 0
        self._processed_times: deque[float] = deque(maxlen=120)
        self._latencies: deque[float] = deque(maxlen=300)
        self._proc_times: deque[float] = deque(maxlen=120)

        sensors = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        # Sensor subscriptions: depth-1 keep-last, reliability matched to the publishers (see
        # _sensor_qos); re-checked every second because publishers are discovered late.
        self._sensors_group = sensors
        self._sensor_subs: dict[str, list] = {}  # topic -> [type, callback, depth, reliable, sub]
        if self.node_cfg.use_compressed:
            self._add_sensor_sub("image/compressed", CompressedImage, self._on_image, 1)
        else:
            self._add_sensor_sub("image", Image, self._on_image, 1)
        if self.node_cfg.use_depth:
            self._add_sensor_sub("depth", Image, self._on_depth, 4)
            self._add_sensor_sub("camera_info", CameraInfo, self._on_info, 1)
        self.create_timer(1.0, self._refresh_sensor_qos, callback_group=sensors)
        self.pub_tracks = self.create_publisher(TrackedObjectArray, "~/tracks", 10)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", 1)
        self.pub_mask = self.create_publisher(Image, "~/mask", 1)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetTarget, "~/set_target", self._on_set_target, callback_group=services)
        self.create_service(
            RemoveTarget, "~/remove_target", self._on_remove_target, callback_group=services
        )
        self._diag_timer = self.create_timer(
            self.node_cfg.diagnostics_period, self._publish_diagnostics, callback_group=timers
        )
        self.add_on_set_parameters_callback(self._validate_params)
        # Post-set callbacks exist from Iron on; on Humble the validated values are applied at
        # the end of the validating callback instead (same effect, one callback).
        self._post_set = hasattr(self, "add_post_set_parameters_callback")
        if self._post_set:
            self.add_post_set_parameters_callback(self._apply_params)

        self._worker = threading.Thread(target=self._work, name="tracker_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"tracker_node up: backend={self.config.runtime.backend} "
            f"device={self.config.runtime.device} input="
            f"{'image/compressed' if self.node_cfg.use_compressed else 'image'}"
        )

    # ================================================================== subscriptions
    def _wants_reliable(self, topic: str) -> bool:
        """Reliability for a sensor subscription: the parameter, or (auto) the publishers'.

        A best-effort reader matches every writer, but Fast DDS delivers large best-effort
        samples (a 640x360 bgr8 image is 691 kB) through UDP fragments that a default socket
        buffer drops: nothing arrives. A reliable reader recovers the fragments but cannot
        match best-effort writers. ``auto`` therefore subscribes reliable when every publisher
        of the topic is reliable and best-effort otherwise; depth 1 keeps newest-frame-only
        either way.
        """
        mode = self.node_cfg.image_reliability
        if mode != "auto":
            return mode == "reliable"
        try:
            infos = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
        except Exception:
            return False
        return bool(infos) and all(
            i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos
        )

    def _add_sensor_sub(self, topic: str, msg_type: Any, callback: Any, depth: int) -> None:
        reliable = self._wants_reliable(topic)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        sub = self.create_subscription(
            msg_type, topic, callback, qos, callback_group=self._sensors_group
        )
        self._sensor_subs[topic] = [msg_type, callback, depth, reliable, sub]

    def _refresh_sensor_qos(self) -> None:
        """Re-create a sensor subscription whose publishers changed reliability."""
        for topic, (msg_type, callback, depth, reliable, sub) in list(self._sensor_subs.items()):
            if self._wants_reliable(topic) != reliable:
                self.destroy_subscription(sub)
                self._add_sensor_sub(topic, msg_type, callback, depth)
                self.get_logger().info(
                    f"{self.resolve_topic_name(topic)}: subscribed "
                    f"{'reliable' if not reliable else 'best-effort'} to match its publishers"
                )

    def _on_image(self, msg: Any) -> None:
        """Keep only the newest frame; never convert or track here (see module docstring)."""
        encoding = getattr(msg, "encoding", None)
        if encoding is not None and encoding.lower() not in conv.COLOR_ENCODINGS:
            # Checked here (a string compare) rather than in the worker, so an unsupported
            # stream is reported even when the worker would have dropped those frames.
            if encoding not in self._warned:
                self._warned.add(encoding)
                self.get_logger().warning(
                    f"unsupported image encoding '{encoding}' on {self._image_topic()} "
                    f"(supported: {', '.join(conv.COLOR_ENCODINGS)}); such frames are skipped"
                )
            return
        frame = _Frame(stamp_ns(msg.header.stamp), msg, time.monotonic())
        with self._lock:
            if self._latest is not None:
                self._dropped += 1
            self._latest = frame
            self._ring.append(frame)
            self._received += 1
            self._last_receive = frame.received
        self._wake.set()

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._depth.append(msg)

    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    # ================================================================== services
    def _on_set_target(self, req: SetTarget.Request, resp: SetTarget.Response):
        try:
            resp.id = ""
            tid = self._valid_id(req.id)
            if not self._ready.wait(timeout=self.node_cfg.set_target_timeout):
                raise ValueError("tracker is still starting (backbone loading); retry shortly")
            if self._tracker is None:
                raise ValueError(f"tracker unavailable: {self._tracker_error}")
            entry = self._frame_for(req.stamp)
            frame = self._bgr(entry)
            height, width = frame.shape[:2]
            box = validate_box((req.x, req.y, req.width, req.height), (width, height))
            mask = None
            if req.mask.width > 0 or req.mask.height > 0 or len(req.mask.data) > 0:
                mask = conv.image_to_mask(req.mask)
                if mask.shape != (height, width):
                    raise ValueError(
                        f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}"
                    )
            with self._lock:
                known = set(self._ids)
            if tid not in known and len(known) >= self.node_cfg.max_targets:
                raise ValueError(
                    f"already tracking max_targets={self.node_cfg.max_targets} targets; "
                    "remove one first or raise max_targets"
                )
            future = self._submit("add", tid, frame, box, mask, entry.msg.header)
            try:
                future.result(timeout=self.node_cfg.set_target_timeout)
                resp.message = f"tracking '{tid}' from box {tuple(round(v, 1) for v in box)}"
            except FutureTimeout:
                resp.message = f"'{tid}' accepted; initialisation still running"
            resp.success, resp.id = True, tid
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
        except Exception as exc:  # garbage must never kill the service thread
            resp.success, resp.message = False, f"internal error: {type(exc).__name__}: {exc}"
        if not resp.success:
            self.get_logger().warning(f"set_target rejected: {resp.message}")
        return resp

    def _on_remove_target(self, req: RemoveTarget.Request, resp: RemoveTarget.Response):
        try:
            tid = str(req.id).strip()
            with self._lock:
                known = list(self._ids)
            if tid and tid not in known:
                raise ValueError(f"no target '{tid}' (tracking: {known or 'none'})")
            future = self._submit("remove", tid)
            future.result(timeout=self.node_cfg.set_target_timeout)
            resp.success = True
            resp.message = f"removed '{tid}'" if tid else f"removed all ({len(known)})"
        except FutureTimeout:
            resp.success, resp.message = True, "removal queued"
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
        except Exception as exc:
            resp.success, resp.message = False, f"internal error: {type(exc).__name__}: {exc}"
        return resp

    def _valid_id(self, raw: str) -> str:
        tid = str(raw).strip()
        if not tid:
            with self._lock:
                while f"target_{self._next_id}" in self._ids:
                    self._next_id += 1
                tid = f"target_{self._next_id}"
                self._next_id += 1
            return tid
        if len(tid) > 64 or not tid.isprintable():
            raise ValueError("id must be printable and at most 64 characters")
        return tid

    def _frame_for(self, stamp: Any) -> _Frame:
        """The ring frame whose stamp matches ``stamp`` (zero: the newest), or a clear error."""
        wanted = stamp_ns(stamp)
        with self._lock:
            ring = list(self._ring)
        if not ring:
            raise ValueError(
                f"no image received yet on '{self._image_topic()}'; publish images first"
            )
        if wanted == 0:
            return ring[-1]
        best = min(ring, key=lambda f: abs(f.stamp - wanted))
        tol = int(self.node_cfg.stamp_tolerance * 1e9)
        if abs(best.stamp - wanted) <= tol:
            return best
        oldest, newest = ring[0].stamp, ring[-1].stamp
        if wanted < oldest:
            raise ValueError(
                f"stamp {wanted / 1e9:.3f} is too old: the oldest kept frame is "
                f"{oldest / 1e9:.3f} ({(oldest - wanted) / 1e9:.2f} s newer; the ring keeps "
                f"frame_ring_length={self._ring.maxlen} frames)"
            )
        if wanted > newest:
            raise ValueError(
                f"no image with stamp {wanted / 1e9:.3f} yet (newest is {newest / 1e9:.3f})"
            )
        raise ValueError(
            f"no kept frame has stamp {wanted / 1e9:.3f} (nearest differs by "
            f"{abs(best.stamp - wanted) / 1e6:.1f} ms > stamp_tolerance)"
        )

    def _image_topic(self) -> str:
        name = "image/compressed" if self.node_cfg.use_compressed else "image"
        try:  # resolves remappings (Node.resolve_topic_name is missing on older rclpy)
            return self.resolve_topic_name(name)
        except AttributeError:
            return name

    def _submit(self, kind: str, *args: Any) -> Future:
        future: Future = Future()
        self._commands.put((kind, args, future))
        self._wake.set()
        return future

    # ================================================================== parameters
    def _validate_params(self, params: list) -> SetParametersResult:
        overrides = {}
        for p in params:
            spec: ParamSpec | None = self._node_specs.get(p.name) or self._tracker_specs.get(p.name)
            if spec is None:
                continue
            if spec.read_only:  # rclpy checks this too; say why here
                return SetParametersResult(
                    successful=False, reason=f"{p.name} is read-only (needs a node restart)"
                )
            value = from_param_value(spec, p.value)
            reason = check_value(spec, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if spec.tracker:
                overrides[p.name] = value
        if overrides:
            try:
                self.config.with_overrides(overrides)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if not self._post_set and hasattr(self, "_worker"):
            self._apply_params(params)
        return SetParametersResult(successful=True)

    def _apply_params(self, params: list) -> None:
        overrides = {}
        for p in params:
            if p.name in self._tracker_specs:
                overrides[p.name] = from_param_value(self._tracker_specs[p.name], p.value)
            elif p.name in self._node_specs:
                value = from_param_value(self._node_specs[p.name], p.value)
                setattr(self.node_cfg, p.name, value)
                if p.name == "frame_ring_length":
                    with self._lock:
                        self._ring = deque(self._ring, maxlen=int(value))
        if overrides:
            self.config = self.config.with_overrides(overrides)
            rebuild = any(is_structural(name) for name in overrides)
            self._submit("reconfigure", self.config, rebuild)
            self.get_logger().info(
                f"tracker parameters changed: {overrides}"
                + (" (tracker rebuilt)" if rebuild else " (applies to targets set from now on)")
            )

    # ================================================================== worker
    def _work(self) -> None:
        try:
            factory = self._factory
            if factory is None:
                from meta_tracker_ros.core import create_multi_tracker as factory
            self._tracker = factory(self.config)
        except Exception as exc:
            self._tracker_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"could not create the tracker: {self._tracker_error}")
        self._ready.set()
        while not self._stop.is_set():
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            self._run_commands()
            with self._lock:
                entry, self._latest = self._latest, None
            if entry is not None:
                try:
                    self._process(entry)
                except Exception as exc:  # one bad frame must not end the worker
                    self._warn_throttled("process", f"frame skipped: {type(exc).__name__}: {exc}")
            else:
                self._check_timeout()

    def _run_commands(self) -> None:
        while True:
            try:
                kind, args, future = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if kind == "add":
                    tid, frame, box, mask, header = args
                    self._tracker.add(tid, frame, box, mask)
                    self._last_added = time.monotonic()  # restarts the images-stopped clock
                    self._target_size = frame.shape[:2]
                    self._last_results[tid] = TrackResult(box, 1.0, TrackState.INITIALIZING)
                    self._last_header = self._last_header or header
                elif kind == "remove":
                    (tid,) = args
                    for t in [tid] if tid else list(self._tracker.ids):
                        with contextlib.suppress(KeyError):
                            self._tracker.remove(t)
                        self._last_results.pop(t, None)
                elif kind == "reconfigure":
                    self._reconfigure(*args)
                with self._lock:
                    self._ids = [str(t) for t in self._tracker.ids]
                if not self._ids:
                    self._target_size = None  # new targets may come at another resolution
                future.set_result(True)
            except Exception as exc:
                self.get_logger().error(f"{kind} failed: {exc}")
                future.set_exception(exc)

    def _reconfigure(self, config: TrackerConfig, rebuild: bool) -> None:
        if not rebuild:
            self._tracker.config = config  # read by the core when a target is added
            return
        old = self._tracker
        with self._lock:
            newest = self._ring[-1] if self._ring else None
        factory = self._factory
        if factory is None:
            from meta_tracker_ros.core import create_multi_tracker as factory
        self._tracker = factory(config)
        if newest is None:
            return
        frame = self._bgr(newest)
        for tid in list(old.ids):
            last = self._last_results.get(tid)
            if last is None or last.state == TrackState.LOST:
                continue
            try:
                self._tracker.add(tid, frame, last.box)
            except ValueError as exc:
                self.get_logger().warning(f"could not re-initialise '{tid}': {exc}")

    def _bgr(self, entry: _Frame) -> np.ndarray:
        if entry.bgr is None:
            msg = entry.msg
            if isinstance(msg, CompressedImage):
                entry.bgr = conv.compressed_to_bgr(msg)
            else:
                entry.bgr = conv.image_to_bgr(msg)
            if entry.bgr.shape[0] < 2 or entry.bgr.shape[1] < 2:
                raise ValueError(f"image too small ({entry.bgr.shape[1]}x{entry.bgr.shape[0]})")
        return entry.bgr

    def _process(self, entry: _Frame) -> None:
        self._last_frame_time = time.monotonic()
        self._lost_reported = False
        want_debug = self.node_cfg.debug_image and self.pub_debug.get_subscription_count() > 0
        if not self._tracker_ids() and not want_debug:
            return  # nothing to track: do not even decode the frame
        try:
            frame = self._bgr(entry)
        except conv.UnsupportedEncodingError as exc:
            key = getattr(entry.msg, "encoding", "") or getattr(entry.msg, "format", "")
            if key not in self._warned:
                self._warned.add(key)
                self.get_logger().warning(f"{exc}; such frames are skipped")
            return
        t0 = time.perf_counter()
        results: dict[Any, TrackResult] = {}
        if self._tracker_ids() and self._target_size not in (None, frame.shape[:2]):
            h, w = self._target_size or (0, 0)
            self._warn_throttled(
                "size",
                f"{frame.shape[1]}x{frame.shape[0]} frame skipped: targets were set on "
                f"{w}x{h} images (set them again after a resolution change)",
            )
            return
        if self._tracker is not None and self._tracker_ids():
            results = self._tracker.track(frame)
        self._proc_times.append(time.perf_counter() - t0)
        header = entry.msg.header
        self._last_header = header
        by_id = {str(k): v for k, v in results.items()}
        self._last_results.update(by_id)
        if by_id:
            self._publish_tracks(header, frame, by_id)
        now = time.monotonic()
        self._processed_times.append(now)
        latency = self.get_clock().now().nanoseconds - stamp_ns(header.stamp)
        if 0 <= latency < 60e9:  # only meaningful when the stamp uses our clock
            self._latencies.append(latency / 1e9)
        if want_debug:
            self._publish_debug(header, frame, results)

    def _tracker_ids(self) -> list:
        return list(self._tracker.ids) if self._tracker is not None else []

    def _publish_tracks(self, header: Any, frame: np.ndarray, results: dict[str, TrackResult]):
        height, width = frame.shape[:2]
        depth_m, intr = self._depth_for(header, width, height)
        out = TrackedObjectArray()
        out.header = header
        # The union mask is a full-frame pass per target: build it only for a listener.
        want_union = self.node_cfg.publish_mask and self.pub_mask.get_subscription_count() > 0
        union = np.zeros((height, width), np.uint8) if want_union else None
        for tid, res in results.items():
            position = None
            if depth_m is not None and intr is not None and res.state != TrackState.LOST:
                position = target_position(depth_m, res.box, intr, res.mask)
            out.objects.append(
                conv.result_to_msg(tid, res, (width, height), self.node_cfg.mask_as_roi, position)
            )
            if union is not None and res.mask is not None and res.mask.shape == union.shape:
                np.maximum(union, res.mask, out=union)
        self.pub_tracks.publish(out)
        if union is not None:
            self.pub_mask.publish(conv.mask_to_image(union, header))

    def _depth_for(self, header: Any, width: int, height: int):
        """The depth image (metres) closest in time to ``header`` plus intrinsics, if any."""
        info = self._info
        with self._lock:
            depths = list(self._depth)
        if info is None or not depths:
            return None, None
        intr = Intrinsics.from_k(info.k, info.width or width, info.height or height)
        if intr is None:
            return None, None
        intr = intr.scaled_to(width, height)
        want = stamp_ns(header.stamp)
        best = min(depths, key=lambda d: abs(stamp_ns(d.header.stamp) - want))
        if abs(stamp_ns(best.header.stamp) - want) > self.node_cfg.depth_max_delay * 1e9:
            return None, None
        try:
            return conv.depth_to_metres(best), intr
        except ValueError as exc:
            self._warn_throttled("depth", f"depth image ignored: {exc}")
            return None, None

    def _publish_debug(self, header: Any, frame: np.ndarray, results: dict) -> None:
        items = [(str(k), r.box, int(r.state), float(r.score), r.mask) for k, r in results.items()]
        image = draw_tracks(frame, items, fps=self._rate(), text=self.config.runtime.backend)
        self.pub_debug.publish(conv.bgr_to_image(image, "bgr8", header))

    def _images_stale(self) -> bool:
        """Whether images have stopped: none for ``lost_timeout`` s on the staleness clock.

        The clock counts from the later of the last image received and the end of the last
        target initialisation. An initialisation takes the worker off the images for a while
        (hundreds of ms, seconds on a loaded CPU); counting from the last image alone would call
        that pause "images stopped" and report a target LOST before it saw a second frame.
        """
        since = max(self._last_receive, self._last_added)
        return since > 0.0 and time.monotonic() - since >= self.node_cfg.lost_timeout

    def _check_timeout(self) -> None:
        """Report the tracked targets LOST once images stop (see :meth:`_images_stale`).

        One message per stop (the next processed image re-arms it). It holds every target with
        a tracking result, state LOST, score 0, at its last known box; targets still
        INITIALIZING (added but not yet tracked on any image) have no result to go stale and are
        never reported LOST.

        Header: the last image's ``frame_id`` and ``stamp`` = the node clock's now(), when the
        stop was detected. It is deliberately not an image stamp: the report is no result for
        any image, and consumers that pair ``~/tracks`` with images by stamp (``tools.demo``,
        ``tools.latency_bench``) would otherwise replace the last image's real result by LOST
        and count the timeout as its latency. Every other ``~/tracks`` header is copied from its
        image, so a stamp that matches no image marks this report.
        """
        if self._lost_reported or not self._images_stale():
            return
        self._lost_reported = True
        ids = set(self._tracker_ids())
        lost = {
            tid: dataclasses.replace(r, state=TrackState.LOST, mask=None, score=0.0)
            for tid, r in self._last_results.items()
            if tid in ids and r.state != TrackState.INITIALIZING
        }
        if not lost or self._last_header is None:
            return
        self.get_logger().warning(
            f"no image for {self.node_cfg.lost_timeout:g} s: reporting {len(lost)} target(s) LOST"
        )
        out = TrackedObjectArray()
        out.header.frame_id = self._last_header.frame_id
        out.header.stamp = self.get_clock().now().to_msg()
        for tid, r in lost.items():
            out.objects.append(conv.result_to_msg(tid, r, (1, 1), True, None))
            self._last_results[tid] = r
        self.pub_tracks.publish(out)

    # ================================================================== diagnostics
    def _rate(self) -> float:
        times = list(self._processed_times)
        if len(times) < 2 or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / max(1e-6, times[-1] - times[0])

    def _publish_diagnostics(self) -> None:
        lat = np.array(self._latencies) * 1000.0 if self._latencies else np.zeros(0)
        proc = np.array(self._proc_times) * 1000.0 if self._proc_times else np.zeros(0)
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: tracker"
        status.hardware_id = str(getattr(self._tracker, "device", self.config.runtime.device))
        states = {tid: r for tid, r in self._last_results.items() if tid in self._ids}
        tracked = any(r.state != TrackState.INITIALIZING for r in states.values())
        if self._tracker is None and self._ready.is_set():
            status.level, status.message = DiagnosticStatus.ERROR, self._tracker_error
        elif tracked and self._images_stale():
            status.level, status.message = DiagnosticStatus.WARN, "no images: targets LOST"
        elif any(r.state == TrackState.LOST for r in states.values()):
            status.level, status.message = DiagnosticStatus.WARN, "target(s) lost"
        else:
            status.level = DiagnosticStatus.OK
            status.message = f"tracking {len(states)} target(s)" if states else "idle"

        def kv(k: str, v: Any) -> KeyValue:
            return KeyValue(key=k, value=str(v))

        status.values = [
            kv("processing_rate_hz", f"{self._rate():.1f}"),
            kv("latency_p50_ms", f"{np.percentile(lat, 50):.1f}" if lat.size else "n/a"),
            kv("latency_p95_ms", f"{np.percentile(lat, 95):.1f}" if lat.size else "n/a"),
            kv("tracker_ms_mean", f"{proc.mean():.1f}" if proc.size else "n/a"),
            kv("frames_received", self._received),
            kv("frames_dropped", self._dropped),
            kv("backend", self.config.runtime.backend),
            kv("device", status.hardware_id),
            kv("precision", self.config.runtime.precision),
            kv("targets", len(states)),
        ]
        for tid, r in states.items():
            status.values.append(kv(f"target {tid}", f"{TrackState(r.state).name} {r.score:.2f}"))
        out = DiagnosticArray()
        out.header.stamp = self.get_clock().now().to_msg()
        out.status = [status]
        self.pub_diag.publish(out)

    def _warn_throttled(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -math.inf) >= period:
            self._last_warn[key] = now
            self.get_logger().warning(text)

    # ================================================================== life cycle
    def shutdown(self) -> None:
        """Stop the worker thread (call before destroy_node)."""
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``tracker_node`` executable."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = TrackerNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

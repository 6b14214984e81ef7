"""tracker_node: the tracking core behind ROS topics, services, parameters and diagnostics.

The node is an adapter. It converts messages, declares and validates parameters, answers
services and publishes; everything with logic lives in modules without rclpy that unit tests
drive directly:

- :class:`~meta_tracker_ros.ros.worker.TrackerWorker`: the newest-frame ring, the command queue,
  the worker thread that owns the tracker, the images-stopped (LOST) clock and the statistics
  (see that module for the threading and why);
- :meth:`MultiTracker.reconfigure <meta_tracker_ros.core.multi.MultiTracker.reconfigure>`:
  which parameter changes rebuild the tracker, and the re-initialisation of current targets;
- :mod:`meta_tracker_ros.ros.params`: parameter specs, ranges and start-up validation.

Callbacks (``set_target`` replies aside) never raise out of the executor: subscription and timer
callbacks are wrapped so that an exception is logged once per callback and kind, and the node
keeps running. A bad configuration at start-up (a rejected override, an unknown parameter, a
broken ``config_file``) ends the process with status 2 and a message naming the parameter.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.types import TrackResult, TrackState
from meta_tracker_ros.msg import TrackedObjectArray
from meta_tracker_ros.ros import conversions as conv
from meta_tracker_ros.ros.debug_draw import draw_tracks
from meta_tracker_ros.ros.depth import closest_depth, target_position
from meta_tracker_ros.ros.diagnostics import tracker_status
from meta_tracker_ros.ros.node_exit import close_node
from meta_tracker_ros.ros.params import (
    ConfigurationError,
    NodeConfig,
    check_changes,
    check_unknown_overrides,
    declare,
    declare_tracker,
    exit_on_configuration_error,
    from_param_value,
    node_specs,
)
from meta_tracker_ros.ros.qos import SensorSubscriptions
from meta_tracker_ros.ros.worker import Frame, SkipFrameError, TrackerWorker
from meta_tracker_ros.srv import RemoveTarget, SetTarget

RECONFIGURE_WAIT = 30.0  # longest a set_parameters call waits for a tracker rebuild (s)
_MAX_WARNED = 64  # distinct once-only warnings kept (see TrackerNode._warn_once)


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class TrackerNode(Node):
    """ROS 2 node wrapping the multi-target tracker.

    Raises :class:`~meta_tracker_ros.ros.params.ConfigurationError` from the constructor for a
    configuration it refuses (see the module docstring).
    """

    def __init__(self, tracker_factory: Any = None, **kwargs: Any) -> None:
        super().__init__("tracker_node", **kwargs)
        self._node_specs = {s.name: s for s in node_specs()}
        self.node_cfg = NodeConfig(**declare(self, list(self._node_specs.values())))
        # Process-wide. latency_bench, two rounds of 1 ms vs Python's 5 ms: 4 targets p50
        # 125-126 vs 136-137 ms, 1 target 56.5 vs 57.5-77 ms; too few runs to change the
        # default (docs/speed.md), so it stays Python's unless set.
        self._switch_before = sys.getswitchinterval()
        sys.setswitchinterval(self.node_cfg.gil_switch_interval)
        self._tracker_specs, self.config = declare_tracker(self, self.node_cfg.config_file)
        check_unknown_overrides(self, [*sys.argv, *(kwargs.get("cli_args") or [])])
        self._warned: set[str] = set()
        self._info: CameraInfo | None = None
        self._depth: list[Any] = []  # the newest depth images, bounded in _on_depth
        self.worker = TrackerWorker(
            tracker_factory or self._default_factory,
            self.config,
            self.node_cfg,
            decode=self._decode,
            on_results=self._publish_results,
            on_lost=self._publish_lost,
            want_image=self._want_debug,
            log=self._log,
        )

        sensors = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        # Sensor subscriptions: keep-last, reliability matched to the publishers (ros/qos.py),
        # re-checked every second because publishers are discovered late.
        subs = SensorSubscriptions(self, sensors, lambda: self.node_cfg.image_reliability)
        if self.node_cfg.use_compressed:
            subs.add("image/compressed", CompressedImage, self._guard(self._on_image), 1)
        else:
            subs.add("image", Image, self._guard(self._on_image), 1)
        if self.node_cfg.use_depth:
            subs.add("depth", Image, self._guard(self._on_depth), 4)
            subs.add("camera_info", CameraInfo, self._guard(self._on_info), 1)
        self.create_timer(1.0, self._guard(subs.refresh), callback_group=sensors)
        self.pub_tracks = self.create_publisher(TrackedObjectArray, "~/tracks", 10)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", 1)
        self.pub_mask = self.create_publisher(Image, "~/mask", 1)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 1)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetTarget, "~/set_target", self._on_set_target, callback_group=services)
        self.create_service(
            RemoveTarget, "~/remove_target", self._on_remove_target, callback_group=services
        )
        self.create_timer(
            self.node_cfg.diagnostics_period,
            self._guard(self._publish_diagnostics),
            callback_group=timers,
        )
        self.add_on_set_parameters_callback(self._validate_params)
        # Post-set callbacks exist from Iron on; on Humble the validated values are applied at
        # the end of the validating callback instead (same effect, one callback).
        self._post_set = hasattr(self, "add_post_set_parameters_callback")
        if self._post_set:
            self.add_post_set_parameters_callback(self._guard(self._apply_params))
        self.worker.start()
        self.get_logger().info(
            f"tracker_node up: backend={self.config.runtime.backend} "
            f"device={self.config.runtime.device} input={self._image_topic()}"
        )

    def _log(self, level: str, text: str) -> None:
        """Log at ``level`` (info | warning | error), one call site per severity.

        rclpy refuses a second severity from one call site ("Logger severity cannot be changed
        between calls"): a single ``getattr(logger, level)(text)`` line raised in the worker
        thread when it logged a warning after an info, and the worker died with it.
        """
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warning":
            logger.warning(text)
        else:
            logger.info(text)

    def _warn_once(self, key: str, level: str, text: str) -> None:
        """Log ``text`` once per ``key``; at most ``_MAX_WARNED`` keys (they come from input)."""
        if key in self._warned:
            return
        if len(self._warned) >= _MAX_WARNED:
            key, text = "", f"more than {_MAX_WARNED} distinct problems; no longer logging new ones"
            if key in self._warned:
                return
        self._warned.add(key)
        self._log(level, text)

    def _guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        """``callback`` that logs an exception (once per kind) instead of raising out of spin."""

        @functools.wraps(callback)
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:
                self._warn_once(
                    f"{callback.__name__}:{type(exc).__name__}",
                    "error",
                    f"{callback.__name__} failed ({type(exc).__name__}: {exc}); "
                    "the node goes on (logged once)",
                )

        return guarded

    # ================================================================== subscriptions
    def _image_topic(self) -> str:
        name = "image/compressed" if self.node_cfg.use_compressed else "image"
        try:  # resolves remappings (Node.resolve_topic_name is missing on older rclpy)
            return self.resolve_topic_name(name)
        except AttributeError:
            return name

    def _on_image(self, msg: Any) -> None:
        """Keep only the newest frame; never convert or track here (see worker.py)."""
        encoding = getattr(msg, "encoding", None)
        if encoding is not None and encoding.lower() not in conv.COLOR_ENCODINGS:
            # Checked here (a string compare) rather than in the worker, so an unsupported
            # stream is reported even when the worker would have dropped those frames.
            self._warn_once(
                f"encoding:{encoding}",
                "warning",
                f"unsupported image encoding {encoding[:40]!r} on {self._image_topic()} "
                f"(supported: {', '.join(conv.COLOR_ENCODINGS)}); such frames are skipped",
            )
            return
        stamp = stamp_ns(msg.header.stamp)
        # The transport's share of the latency, meaningful when the stamp uses our clock (as
        # latency_bench's client does); the worker drops values outside [0, 60) s.
        self.worker.push_frame(stamp, msg, (self.get_clock().now().nanoseconds - stamp) / 1e9)

    def _on_depth(self, msg: Image) -> None:
        self._depth = [*self._depth[-7:], msg]  # a new list: readers never see it change

    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _decode(self, msg: Any) -> np.ndarray:
        try:
            if isinstance(msg, CompressedImage):
                return conv.compressed_to_bgr(msg)
            return conv.image_to_bgr(msg)
        except conv.UnsupportedEncodingError as exc:
            key = getattr(msg, "encoding", "") or getattr(msg, "format", "")
            self._warn_once(
                f"decode:{key}", "warning", f"{str(exc)[:200]}; such frames are skipped"
            )
            raise SkipFrameError(str(exc)) from exc

    # ================================================================== services
    def _on_set_target(self, req: SetTarget.Request, resp: SetTarget.Response):
        resp.id, resp.success = "", False
        try:
            mask = None
            if req.mask.width > 0 or req.mask.height > 0 or len(req.mask.data) > 0:
                mask = conv.image_to_mask(req.mask)
            box = (req.x, req.y, req.width, req.height)
            resp.id, resp.message = self.worker.request_add(
                req.id, stamp_ns(req.stamp), box, mask, self.node_cfg.set_target_timeout,
                self._image_topic(),
            )  # fmt: skip
            resp.success = True
        except ValueError as exc:
            resp.message = str(exc)
        except Exception as exc:  # garbage must never kill the service thread
            resp.message = f"internal error: {type(exc).__name__}: {exc}"
        if not resp.success:
            self.get_logger().warning(f"set_target rejected: {resp.message}")
        return resp

    def _on_remove_target(self, req: RemoveTarget.Request, resp: RemoveTarget.Response):
        resp.success = False
        try:
            resp.message = self.worker.request_remove(req.id, self.node_cfg.set_target_timeout)
            resp.success = True
            if self.pub_markers.get_subscription_count() > 0:
                # No tracks message may follow (no target left): clear the removed one now.
                self.pub_markers.publish(conv.removal_markers(req.id))
        except ValueError as exc:
            resp.message = str(exc)
        except Exception as exc:
            resp.message = f"internal error: {type(exc).__name__}: {exc}"
        return resp

    # ================================================================== parameters
    def _validate_params(self, params: list) -> SetParametersResult:
        """Check run-time changes, then hand tracker changes to the worker and wait for them.

        A failed tracker rebuild (a missing weights file) answers ``successful=false``, so the
        parameters keep their old values, like the tracker. A rebuild still running after
        :data:`RECONFIGURE_WAIT` s is accepted; if it fails later, only the tracker keeps the
        old values (logged).
        """
        specs = {**self._node_specs, **self._tracker_specs}
        try:  # an exception here would leave the set_parameters service unanswered
            changes = {p.name: p.value for p in params}
            reason = check_changes(specs, self.config, changes) or self._apply_tracker(changes)
        except Exception as exc:
            reason = f"internal error: {type(exc).__name__}: {exc}"
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if not self._post_set and hasattr(self, "worker"):
            self._apply_params(params)
        return SetParametersResult(successful=True)

    def _apply_tracker(self, changes: dict[str, Any]) -> str | None:
        """Reconfigure the tracker for the tracker parameters in ``changes``; why it failed."""
        specs = self._tracker_specs
        overrides = {k: from_param_value(specs[k], v) for k, v in changes.items() if k in specs}
        if not overrides or not hasattr(self, "worker"):
            return None
        config = self.config.with_overrides(overrides)
        try:  # the core decides whether it rebuilds
            self.worker.reconfigure(config).result(timeout=RECONFIGURE_WAIT)
        except FutureTimeout:
            self._log(
                "warning", f"tracker reconfiguration still running after {RECONFIGURE_WAIT} s"
            )
        except Exception as exc:
            return f"tracker not reconfigured, old values kept: {type(exc).__name__}: {exc}"
        self.config = config
        self.get_logger().info(f"tracker parameters changed: {overrides}")
        return None

    def _apply_params(self, params: list) -> None:
        """Apply node-level parameters (tracker ones were applied while validating)."""
        for p in params:
            if p.name in self._node_specs:
                value = from_param_value(self._node_specs[p.name], p.value)
                setattr(self.node_cfg, p.name, value)
                if p.name == "frame_ring_length":
                    self.worker.set_ring_length(int(value))

    # ================================================================== publishing
    def _want_debug(self) -> bool:
        return self.node_cfg.debug_image and self.pub_debug.get_subscription_count() > 0

    def _publish_results(self, entry: Frame, frame: np.ndarray, results: dict) -> None:
        """Worker callback after each processed frame: tracks, mask, debug image, latency."""
        header = entry.msg.header
        if results:
            self._publish_tracks(header, frame, results)
        latency = self.get_clock().now().nanoseconds - entry.stamp
        if 0 <= latency < 60e9:  # only meaningful when the stamp uses our clock
            self.worker.note_latency(latency / 1e9)
        if self._want_debug():
            items = [(k, r.box, int(r.state), float(r.score), r.mask) for k, r in results.items()]
            text = self.config.runtime.backend
            image = draw_tracks(frame, items, fps=self.worker.rate(), text=text)
            self.pub_debug.publish(conv.bgr_to_image(image, "bgr8", header))

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
        self._publish_markers(out, intr.fx if intr is not None else None)

    def _publish_markers(self, tracks: TrackedObjectArray, fx: float | None) -> None:
        """rviz markers of the targets with a position, only while someone listens."""
        if self.pub_markers.get_subscription_count() > 0:
            self.pub_markers.publish(conv.tracks_to_markers(tracks, fx))

    def _depth_for(self, header: Any, width: int, height: int):
        """The depth image (metres) closest in time to ``header`` plus intrinsics, if any."""
        try:
            return closest_depth(
                self._info, self._depth, stamp_ns(header.stamp), (width, height),
                self.node_cfg.depth_max_delay, conv.depth_to_metres,
            )  # fmt: skip
        except ValueError as exc:
            self.worker.warn_throttled("depth", f"depth image ignored: {exc}")
            return None, None

    def _publish_lost(self, last: Frame, lost: dict[str, TrackResult]) -> None:
        """The images-stopped report (see :meth:`TrackerWorker.check_timeout`).

        Header: the last image's ``frame_id``, stamp = now() when the stop was detected, not an
        image's: consumers pairing ``~/tracks`` with images by stamp (``tools.demo``,
        ``tools.latency_bench``) would otherwise take LOST for that image's result. Every other
        ``~/tracks`` header is its image's, so a stamp matching no image marks this report.
        """
        out = TrackedObjectArray()
        out.header.frame_id = last.msg.header.frame_id
        out.header.stamp = self.get_clock().now().to_msg()
        for tid, r in lost.items():
            out.objects.append(conv.result_to_msg(tid, r, (1, 1), True, None))
        self.pub_tracks.publish(out)
        self._publish_markers(out, None)  # no positions: clears the targets in rviz

    # ================================================================== diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.worker.snapshot()  # copies: the worker may change targets meanwhile
        device = str(getattr(self.worker.tracker, "device", self.config.runtime.device))
        out = DiagnosticArray()
        out.header.stamp = self.get_clock().now().to_msg()
        stages = self.worker.stage_means_ms()
        out.status = [
            tracker_status(f"{self.get_name()}: tracker", snap, self.config, device, stages)
        ]
        self.pub_diag.publish(out)

    def _default_factory(self, config: TrackerConfig) -> Any:
        """The core tracker: in a child process (``tracker_process``) or in this one."""
        if self.node_cfg.tracker_process:
            from meta_tracker_ros.core.tracker_process import create_tracker_process

            return create_tracker_process(config)
        from meta_tracker_ros.core import create_multi_tracker

        return create_multi_tracker(config)

    # ================================================================== life cycle
    def shutdown(self) -> None:
        """Stop the worker thread (call before destroy_node); restore the switch interval."""
        self.worker.stop()
        sys.setswitchinterval(self._switch_before)


def make_executor(kind: str, context: Any = None) -> Any:
    """The executor ``tracker_node`` spins in (the ``executor`` parameter).

    ``single_threaded`` (default): callbacks run one after another in the spinning thread.
    ``multi_threaded``: rclpy's MultiThreadedExecutor with 4 threads. Why the default is not
    the latter: its spin loop hands each ready callback to a thread pool and, until a pool
    thread has started it, yields the same pending task again on every pass without waiting
    (rclpy's ``_wait_for_ready_callbacks``), re-submitting it each time. A pool thread needs the
    interpreter lock to start it, which the spinning loop holds, so beside a 30 Hz camera the
    loop took 50-95 % of a core in bursts of seconds (per-thread CPU from /proc, perf: 73 % in
    the Python interpreter), the image callbacks ran late and the node missed half the images.
    With one thread nothing is ever pending. The cost: a blocking service (``set_target`` waits
    for the initialisation, a parameter change for a rebuild) holds up image callbacks
    meanwhile, while the worker is busy with that same command anyway.
    """
    if kind == "multi_threaded":
        return MultiThreadedExecutor(num_threads=4, context=context)
    return SingleThreadedExecutor(context=context)


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``tracker_node`` executable; 2 for a refused configuration."""
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = TrackerNode()
    except ConfigurationError as exc:
        if rclpy.ok():
            rclpy.shutdown()
        return exit_on_configuration_error("tracker_node", exc)
    executor = make_executor(node.node_cfg.executor)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        executor.shutdown()
        close_node(node, "tracker_node")
    return 0


if __name__ == "__main__":
    sys.exit(main())

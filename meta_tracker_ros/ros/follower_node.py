"""follower_node: drive a mobile base towards one tracked target (geometry_msgs/Twist).

Thin ROS wrapper around :class:`~meta_tracker_ros.ros.follower.FollowerController`: it converts
``tracks`` and ``camera_info`` messages, publishes the controller's command on ``cmd_vel`` and
exposes ``~/enable`` (std_srvs/SetBool). It starts disarmed (publishing zero Twists) so that a
freshly launched robot never moves before someone asks it to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time

import rclpy
from geometry_msgs.msg import Twist
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_srvs.srv import SetBool

from meta_tracker_ros.msg import TrackedObjectArray
from meta_tracker_ros.ros.follower import (
    FollowerConfig,
    FollowerController,
    FollowerNodeExtra,
    TargetObservation,
)
from meta_tracker_ros.ros.node_exit import close_node
from meta_tracker_ros.ros.params import (
    ConfigurationError,
    check_unknown_overrides,
    check_value,
    declare,
    exit_on_configuration_error,
    node_specs,
)


class FollowerNode(Node):
    """Subscribes ``tracks`` (+ ``camera_info``), publishes ``cmd_vel``."""

    def __init__(self, **kwargs) -> None:
        super().__init__("follower_node", **kwargs)
        self._specs = {s.name: s for s in node_specs(FollowerConfig())}
        extra = node_specs(FollowerNodeExtra())
        self._specs.update({s.name: s for s in extra})
        values = declare(self, list(self._specs.values()))  # raises ConfigurationError
        check_unknown_overrides(self)
        cfg = FollowerConfig(**{f.name: values[f.name] for f in dataclasses.fields(FollowerConfig)})
        self.controller = FollowerController(cfg)
        self.controller.set_enabled(bool(values["start_enabled"]))
        self._image_width = 640
        self._fx: float | None = None
        self._cx: float | None = None
        self.add_on_set_parameters_callback(self._on_params)

        self._pub = self.create_publisher(Twist, "cmd_vel", 10)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(TrackedObjectArray, "tracks", self._on_tracks, qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_info, 1)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_timer(1.0 / float(values["watchdog_rate"]), self._on_timer)
        self.get_logger().info(
            f"following target '{cfg.target_id or '<first>'}', "
            f"{'armed' if self.controller.enabled else 'disarmed (call ~/enable)'}"
        )

    def _on_params(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            spec = self._specs.get(p.name)
            if spec is None:
                continue
            reason = check_value(spec, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            if hasattr(self.controller.config, p.name):
                value = (
                    float(p.value)
                    if isinstance(p.value, int) and p.name != "target_id"
                    else (p.value)
                )
                setattr(self.controller.config, p.name, value)
        return SetParametersResult(successful=True)

    def _on_info(self, msg: CameraInfo) -> None:
        if msg.k[0] > 0 and msg.width > 0:
            self._fx, self._cx, self._image_width = float(msg.k[0]), float(msg.k[2]), msg.width

    def _on_tracks(self, msg: TrackedObjectArray) -> None:
        targets = [
            TargetObservation(
                id=o.id,
                state=o.state,
                center_x=o.center_x,
                center_y=o.center_y,
                size_x=o.size_x,
                size_y=o.size_y,
                position=(o.position.x, o.position.y, o.position.z) if o.has_position else None,
            )
            for o in msg.objects
        ]
        cmd = self.controller.update(
            targets, time.monotonic(), self._image_width, self._fx, self._cx
        )
        self._publish(cmd.linear_x, cmd.angular_z)

    def _on_timer(self) -> None:
        cmd = self.controller.tick(time.monotonic())
        if cmd is not None:
            self._publish(0.0, 0.0)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        self.controller.set_enabled(bool(request.data))
        if not request.data:
            self._publish(0.0, 0.0)
        response.success = True
        response.message = "armed" if request.data else "disarmed"
        self.get_logger().info(response.message)
        return response

    def _publish(self, linear: float, angular: float) -> None:
        msg = Twist()
        msg.linear.x, msg.angular.z = float(linear), float(angular)
        self._pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``follower_node`` executable."""
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = FollowerNode()
    except ConfigurationError as exc:  # exit 2, the parameter named
        if rclpy.ok():
            rclpy.shutdown()
        return exit_on_configuration_error("follower_node", exc)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        with contextlib.suppress(Exception):
            node._publish(0.0, 0.0)
        close_node(node, "follower_node")
    return 0


if __name__ == "__main__":
    sys.exit(main())

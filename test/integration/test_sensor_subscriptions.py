"""Sensor subscriptions that follow their publishers' reliability (ros/qos.py), real rclpy.

Why: the stress suite's "clean exit" check failed once in a CI run: tracker_node's
``destroy_node`` raised ValueError inside rclpy's destroy_subscription (a subscription without
its event handlers). The likely cause is this timer-driven re-creation running while SIGINT
shut the context down: after shutdown, refresh raised InvalidHandle half-way (this test, before
the fix), and the node's callback guard swallowed it.
"""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")

from rclpy.qos import ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from meta_tracker_ros.ros.qos import SensorSubscriptions  # noqa: E402

pytestmark = pytest.mark.ros


def _reliability(node) -> ReliabilityPolicy:
    (sub,) = list(node.subscriptions)
    return sub.qos_profile.reliability


def test_refresh_recreates_on_a_mode_change_and_does_nothing_after_shutdown():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("sensor_subscriptions_test", context=context)
    try:
        mode = ["best_effort"]
        subs = SensorSubscriptions(node, None, lambda: mode[0])
        subs.add("image", Image, lambda msg: None, 1)
        assert _reliability(node) == ReliabilityPolicy.BEST_EFFORT
        mode[0] = "reliable"
        subs.refresh()
        assert _reliability(node) == ReliabilityPolicy.RELIABLE  # re-created, one left
        rclpy.shutdown(context=context)
        before = list(node.subscriptions)
        mode[0] = "best_effort"
        subs.refresh()  # after shutdown: nothing is destroyed or created
        assert list(node.subscriptions) == before
    finally:
        node.destroy_node()  # must not raise
        if context.ok():
            rclpy.shutdown(context=context)

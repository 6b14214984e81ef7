"""Sensor subscriptions whose reliability matches their publishers (depth-N keep-last).

A best-effort reader matches every writer, but Fast DDS delivers large best-effort samples (a
640x360 bgr8 image is 691 kB) through UDP fragments that a default socket buffer drops: nothing
arrives. A reliable reader recovers the fragments but cannot match best-effort writers. Mode
``auto`` therefore subscribes reliable when every publisher of the topic is reliable and
best-effort otherwise, and :meth:`SensorSubscriptions.refresh` (called from a timer, because
publishers are discovered late) re-creates a subscription whose publishers changed. Keep-last
with a small depth keeps newest-frame-only either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


class SensorSubscriptions:
    """Subscriptions of ``node`` in ``group``; ``mode()`` is auto | reliable | best_effort."""

    def __init__(self, node: Any, group: Any, mode: Callable[[], str]) -> None:
        self._node, self._group, self._mode = node, group, mode
        self._subs: dict[str, list] = {}  # topic -> [type, callback, depth, reliable, sub]

    def wants_reliable(self, topic: str) -> bool:
        """Reliability for ``topic``: the mode, or (auto) all of its publishers reliable."""
        mode = self._mode()
        if mode != "auto":
            return mode == "reliable"
        try:
            infos = self._node.get_publishers_info_by_topic(self._node.resolve_topic_name(topic))
        except Exception:
            return False
        return bool(infos) and all(
            i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos
        )

    def add(self, topic: str, msg_type: Any, callback: Callable[[Any], None], depth: int) -> None:
        reliable = self.wants_reliable(topic)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        sub = self._node.create_subscription(
            msg_type, topic, callback, qos, callback_group=self._group
        )
        self._subs[topic] = [msg_type, callback, depth, reliable, sub]

    def refresh(self) -> None:
        """Re-create each subscription whose publishers changed reliability.

        Not once the context is shutting down: there rclpy's calls raise InvalidHandle part of
        the way through, and rclpy registers a new subscription before its event handlers, so a
        half-made one can be left for ``destroy_node`` to fail on (the likely cause of a failed
        clean-exit check in the stress suite, SIGINT arriving as the camera's publisher left).
        """
        if not self._node.context.ok():
            return
        for topic, (msg_type, callback, depth, reliable, sub) in list(self._subs.items()):
            if self.wants_reliable(topic) != reliable:
                self._node.destroy_subscription(sub)
                self.add(topic, msg_type, callback, depth)
                self._node.get_logger().info(
                    f"{self._node.resolve_topic_name(topic)}: subscribed "
                    f"{'reliable' if not reliable else 'best-effort'} to match its publishers"
                )

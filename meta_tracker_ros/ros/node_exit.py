"""How the package's executables end: destroy the node and shut rclpy down, never raising.

At exit the context may already be shutting down (SIGINT from a launch file or a terminal), and
a callback cut short can leave rclpy's own bookkeeping inconsistent, so ``destroy_node`` can
raise: a fresh-clone CI run saw tracker_node exit with status 1 from a ValueError in rclpy's
``destroy_subscription``. A process that is exiting anyway should report that on stderr and keep
its exit status (launch files and scripts read it), so every ``main`` ends through here.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy


def close_node(node: Any, name: str) -> None:
    """Destroy ``node`` and shut the default context down; a failure is printed, not raised."""
    try:
        node.destroy_node()
    except Exception as exc:  # exiting anyway: say so, and let the caller's status stand
        # The context's shutdown below frees what destroy_node could not.
        print(f"{name}: destroy_node failed at exit: {exc!r}", file=sys.stderr, flush=True)
    if rclpy.ok():
        rclpy.shutdown()

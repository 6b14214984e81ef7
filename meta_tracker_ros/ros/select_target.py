"""select_target: set a target on a running tracker_node, from the command line or by drawing.

``select_target --box x y w h [--id ID]`` calls ``<node>/set_target`` with a zero stamp (the
newest image). Without ``--box`` and with a display, it shows the newest image of ``--image``
in an OpenCV window, lets you drag a box (ENTER/SPACE to confirm, c to cancel) and sends it with
that image's stamp, so the box applies to exactly the frame it was drawn on. ``--remove ID``
(empty: all) calls ``remove_target``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading

import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from meta_tracker_ros.ros import conversions as conv
from meta_tracker_ros.ros.node_exit import close_node
from meta_tracker_ros.srv import RemoveTarget, SetTarget


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the non-ROS arguments (ROS ones after --ros-args are stripped by rclpy)."""
    p = argparse.ArgumentParser(prog="select_target", description=__doc__.split("\n\n")[0])
    p.add_argument("--box", nargs=4, type=float, metavar=("X", "Y", "W", "H"))
    p.add_argument("--id", default="", help="target id ('' = let the tracker assign one)")
    p.add_argument("--node", default="/tracker_node", help="tracker node name")
    p.add_argument("--image", default="image", help="image topic for interactive selection")
    p.add_argument("--remove", default=None, metavar="ID", help="remove a target ('' = all)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the service")
    return p.parse_args(argv)


def call(node: Node, srv_type, name: str, request, timeout: float):
    """Call a service and wait for the answer; raises RuntimeError on timeout."""
    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError(f"service {name} not available after {timeout:g} s")
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        raise RuntimeError(f"no answer from {name} within {timeout:g} s")
    return future.result()


def grab_and_draw(node: Node, topic: str, timeout: float):
    """Show the newest image and let the user draw a box; returns (box, stamp) or None."""
    import cv2

    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        raise RuntimeError("no display: pass --box x y w h instead")
    latest: list[Image] = []
    got = threading.Event()

    def on_image(msg: Image) -> None:
        latest[:] = [msg]
        got.set()

    node.create_subscription(Image, topic, on_image, qos_profile_sensor_data)
    end = node.get_clock().now().nanoseconds + int(timeout * 1e9)
    while not got.is_set() and node.get_clock().now().nanoseconds < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not latest:
        raise RuntimeError(f"no image on {node.resolve_topic_name(topic)} within {timeout:g} s")
    msg = latest[0]
    frame = conv.image_to_bgr(msg)
    try:
        box = cv2.selectROI("select_target: drag a box, ENTER to send", frame, False, False)
    except cv2.error as exc:  # headless OpenCV builds have no GUI
        raise RuntimeError(f"OpenCV has no GUI here ({exc}); pass --box x y w h") from exc
    finally:
        with contextlib.suppress(cv2.error):
            cv2.destroyAllWindows()
    if box[2] <= 0 or box[3] <= 0:
        return None
    return tuple(float(v) for v in box), msg.header.stamp


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``select_target`` executable."""
    argv = args if args is not None else sys.argv
    rclpy.init(args=argv)
    opts = parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    node = rclpy.create_node("select_target")
    try:
        if opts.remove is not None:
            req = RemoveTarget.Request(id=opts.remove)
            res = call(node, RemoveTarget, f"{opts.node}/remove_target", req, opts.timeout)
            print(f"remove_target: success={res.success} {res.message}")
            return 0 if res.success else 1
        req = SetTarget.Request()
        req.id = opts.id
        if opts.box is not None:
            req.x, req.y, req.width, req.height = opts.box
        else:
            picked = grab_and_draw(node, opts.image, opts.timeout)
            if picked is None:
                print("cancelled")
                return 1
            (req.x, req.y, req.width, req.height), req.stamp = picked
        res = call(node, SetTarget, f"{opts.node}/set_target", req, opts.timeout)
        print(f"set_target: success={res.success} id={res.id!r} {res.message}")
        return 0 if res.success else 1
    except RuntimeError as exc:
        print(f"select_target: {exc}", file=sys.stderr)
        return 2
    finally:
        close_node(node, "select_target")


if __name__ == "__main__":
    sys.exit(main())

"""Start the package's nodes as separate processes (what ``ros2 launch`` would do).

``ros2 launch`` is not installable from PyPI, so the demo, the latency benchmark and the
integration tests start the node executables themselves through these helpers. Each run gets
its own ROS domain id unless one is set, so concurrent runs on one machine (CI jobs, several
developers) never see each other's /tracker_node.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def random_domain_id() -> int:
    """A random private ROS_DOMAIN_ID for a test or tool run, in 1..101.

    Why that range: Fast DDS derives its UDP ports from the domain (7400 + 250 * id + ...); on
    Linux, ids above 101 put them inside the ephemeral port range (32768-60999), where an
    OS-assigned port can take them and discovery then fails intermittently. 0 is left to the
    user's own graph.
    """
    return random.randint(1, 101)


def pick_domain_id() -> int:
    """ROS_DOMAIN_ID from the environment, else a random private one (set in os.environ)."""
    if os.environ.get("ROS_DOMAIN_ID"):
        return int(os.environ["ROS_DOMAIN_ID"])
    domain = random_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return domain


def executable(name: str) -> list[str]:
    """Command for a node: the installed executable if present, else ``python -m``."""
    installed = ROOT / "install" / "meta_tracker_ros" / "lib" / "meta_tracker_ros" / name
    if installed.is_file() and os.access(installed, os.X_OK):
        return [sys.executable, str(installed)]
    on_path = shutil.which(name)
    if on_path:
        return [sys.executable, on_path]
    return [sys.executable, "-m", f"meta_tracker_ros.ros.{name}"]


def start_node(
    name: str,
    ros_args: list[str] | None = None,
    log_path: Path | None = None,
    env: dict[str, str | None] | None = None,
) -> subprocess.Popen:
    """Start node executable ``name`` with ``--ros-args`` ``ros_args``; output to ``log_path``.

    ``env`` adds variables to this process's environment for the node; a ``None`` value
    removes one.
    """
    cmd = executable(name) + (["--ros-args", *ros_args] if ros_args else [])
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    node_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            node_env.pop(key, None)
        else:
            node_env[key] = value
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=node_env,
        start_new_session=True,  # SIGINT to the node only, not to us
    )


def stop_node(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGINT (clean rclpy shutdown), then SIGKILL if it does not exit in ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def wait_for_service(node, srv_type, name: str, timeout: float) -> bool:
    """Wait until service ``name`` is available (True) or ``timeout`` passes (False)."""
    client = node.create_client(srv_type, name)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if client.wait_for_service(timeout_sec=0.2):
            node.destroy_client(client)
            return True
    node.destroy_client(client)
    return False

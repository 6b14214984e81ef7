"""Each node a launch file starts also starts here as an executable, with the same parameters
files and remappings, and answers (its service appears, remapped topics are used)."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")
pytest.importorskip("meta_tracker_ros.srv", reason="generated interfaces missing: `make build`")

from meta_tracker_ros.srv import SetTarget  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from meta_tracker_ros.tools import graph  # noqa: E402
from meta_tracker_ros.tools.launch_check import launch_files, parse_launch_file  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

# What answering means for each of our executables: a service under the node's name.
PROBE = {
    "tracker_node": (SetTarget, "set_target"),
    "follower_node": (SetBool, "enable"),
    "image_source": (SetBool, "pause"),
}


def _unique_nodes():
    seen, out = set(), []
    for path in launch_files():
        for node in parse_launch_file(path):
            if node.package != "meta_tracker_ros":
                continue
            key = (node.executable, tuple(node.ros_args()))
            if key not in seen:
                seen.add(key)
                out.append((path.name, node))
    return out


NODES = _unique_nodes()


@pytest.mark.parametrize(
    ("launch_name", "node"), NODES, ids=[f"{n}:{x.executable}" for n, x in NODES]
)
def test_launch_node_starts_and_answers(launch_name, node, tmp_path):
    domain = graph.random_domain_id()
    log = tmp_path / f"{node.executable}.log"
    args = node.ros_args()
    if node.executable == "image_source":
        args += ["-p", "max_frames:=0", "-p", "start_paused:=true"]
    proc = graph.start_node(node.executable, args, log, env={"ROS_DOMAIN_ID": str(domain)})
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    probe = rclpy.create_node("launch_probe", context=context)
    try:
        srv_type, srv = PROBE[node.executable]
        ns = f"/{node.namespace}" if node.namespace else ""
        name = f"{ns}/{node.name or node.executable}/{srv}"
        ok = graph.wait_for_service(probe, srv_type, name, timeout=90.0)
        assert ok, f"{launch_name}: {name} never appeared\n{log.read_text()[-3000:]}"
        assert proc.poll() is None, log.read_text()[-3000:]
        topics = {t for t, _ in probe.get_topic_names_and_types()}
        for _, dst in node.remappings:
            # Subscriptions and publications show up under the remapped names once discovered.
            if not any(t == dst for t in topics):
                import time

                end = time.monotonic() + 10.0
                while time.monotonic() < end and dst not in topics:
                    time.sleep(0.2)
                    topics = {t for t, _ in probe.get_topic_names_and_types()}
            assert dst in topics, f"{node.executable}: remapped topic {dst} not in graph"
    finally:
        probe.destroy_node()
        rclpy.shutdown(context=context)
        assert graph.stop_node(proc) in (0, -2, 130), log.read_text()[-3000:]

"""Launch files parse, and everything they name exists (``launch`` itself is not installable).

Starting each node the way its launch file does is in test/integration/test_launch_nodes.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from meta_tracker_ros.tools.launch_check import (
    launch_environment,
    launch_files,
    parse_launch_file,
)

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "tracker.launch.py",
    "camera_tracker.launch.py",
    "follow_target.launch.py",
    "demo.launch.py",
}
# Topics each of our nodes subscribes or publishes under a relative name (remappable).
NODE_TOPICS = {
    "tracker_node": {"image", "image/compressed", "camera_info", "depth"},
    "follower_node": {"tracks", "camera_info", "cmd_vel"},
    "image_source": {"image", "camera_info"},
}


def test_all_launch_files_exist():
    assert {p.name for p in launch_files()} >= EXPECTED


@pytest.mark.parametrize("path", launch_files(), ids=lambda p: p.name)
def test_launch_file_names_existing_things(path: Path):
    nodes = parse_launch_file(path)
    assert nodes, f"{path.name} starts no node"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    package_xml = (ROOT / "package.xml").read_text()
    for node in nodes:
        if node.package == "meta_tracker_ros":
            assert (ROOT / "scripts" / node.executable).is_file(), node.executable
            assert f"scripts/{node.executable}" in cmake, f"{node.executable} not installed"
            for src, dst in node.remappings:
                assert src in NODE_TOPICS[node.executable], f"{node.executable} has no '{src}'"
                assert dst, f"empty remap target for {src}"
        else:  # external packages must be declared so rosdep installs them
            assert f"<exec_depend>{node.package}</exec_depend>" in package_xml, node.package
        for params_file in node.params_files:
            assert params_file.is_file(), params_file
            data = yaml.safe_load(params_file.read_text())
            assert node.executable in data and "ros__parameters" in data[node.executable]
        for arg in node.arguments:
            if arg.endswith(".rviz"):
                assert Path(arg).is_file(), arg


@pytest.mark.parametrize(
    "name", ["tracker.launch.py", "camera_tracker.launch.py", "demo.launch.py"]
)
def test_launch_files_give_every_node_the_large_message_profile(name: str):
    """Images of 691 kB do not fit Fast DDS's default 512 kB shared-memory segments; the
    publisher's profile decides, so the files that start a camera (or the tracker's own debug
    image publisher) set the shipped profile for every node they start."""
    env = launch_environment(ROOT / "launch" / name)
    profile = Path(str(env["FASTDDS_DEFAULT_PROFILES_FILE"]))
    assert profile.is_file(), profile
    text = profile.read_text()
    assert "<type>SHM</type>" in text and "<segment_size>" in text


def test_rviz_config_shows_the_debug_image_and_the_markers():
    data = yaml.safe_load((ROOT / "config" / "tracker.rviz").read_text())
    displays = data["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if d["Class"].endswith("/Image")}
    assert "/tracker_node/debug_image" in topics
    markers = {d["Topic"]["Value"] for d in displays if d["Class"].endswith("/MarkerArray")}
    assert markers == {"/tracker_node/markers"}


def test_follow_target_remaps_cmd_vel_from_an_argument():
    path = ROOT / "launch" / "follow_target.launch.py"
    text = path.read_text()
    assert re.search(r'\("cmd_vel",\s*LaunchConfiguration\("cmd_vel"\)\)', text)


@pytest.mark.parametrize("path", launch_files(), ids=lambda p: p.name)
def test_every_launch_argument_has_a_description(path):
    """`ros2 launch ... --show-args` is how users discover arguments: none may be blank."""
    import ast

    tree = ast.parse(path.read_text())
    missing = [
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", None) == "DeclareLaunchArgument"
        and not any(k.arg == "description" and k.value.value for k in call.keywords)
    ]
    assert not missing, f"{path.name}: arguments without a description: {missing}"


@pytest.mark.parametrize("path", launch_files(), ids=lambda p: p.name)
def test_launch_arguments_at_their_defaults_keep_the_shipped_tracker_config(path: Path):
    """A launch argument mapped to a tracker parameter must default to the shipped value (a
    `backend` argument defaulting to torch once made every launched robot skip the faster
    runtime the config picks), and its value must be one the node accepts."""
    from meta_tracker_ros.core.config import TrackerConfig
    from meta_tracker_ros.ros.params import TRACKER_CHOICES

    shipped = TrackerConfig().to_dict()
    for node in parse_launch_file(path):
        if node.executable != "tracker_node":
            continue
        for key, value in node.params.items():
            section, _, name = key.partition(".")
            if section not in shipped or name not in shipped[section]:
                continue
            from_file = {}
            for params_file in node.params_files:
                data = yaml.safe_load(params_file.read_text())["tracker_node"]["ros__parameters"]
                from_file.update(data.get(section, {}) if isinstance(data, dict) else {})
            expected = from_file.get(name, shipped[section][name])
            assert value == expected, f"{path.name}: {key} defaults to {value!r}, not {expected!r}"
            if key in TRACKER_CHOICES:
                assert value in TRACKER_CHOICES[key], (key, value)

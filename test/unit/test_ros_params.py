"""Config dataclasses <-> ROS parameter specs, generated params files and docs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import yaml

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.ros.params import (
    NodeConfig,
    check_value,
    node_specs,
    ros_params_yaml,
    shared_only_names,
    tracker_specs,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_tracker_leaf_becomes_a_parameter():
    config = TrackerConfig()
    names = {s.name for s in tracker_specs(config)}
    assert names == set(config.flat())
    assert all(s.description for s in tracker_specs(config))


def test_runtime_and_backbone_are_read_only_others_not():
    for spec in tracker_specs(TrackerConfig()):
        section = spec.name.split(".")[0]
        assert spec.read_only == (section in ("runtime", "backbone")), spec.name


def test_ranges_contain_defaults_and_reject_bad_values():
    specs = {s.name: s for s in node_specs(NodeConfig())}
    ring = specs["frame_ring_length"]
    assert check_value(ring, 30) is None
    assert "outside" in check_value(ring, 0)
    assert "number" in check_value(ring, "x")
    assert check_value(specs["lost_timeout"], float("nan")) is not None
    for spec in tracker_specs(TrackerConfig()):
        assert check_value(spec, spec.default) is None, spec.name


def test_params_yaml_round_trips_to_the_same_config():
    specs = tracker_specs(TrackerConfig())
    data = yaml.safe_load(ros_params_yaml("tracker_node", specs))
    params = data["tracker_node"]["ros__parameters"]
    assert TrackerConfig.from_dict(params) == TrackerConfig()


def test_node_config_fields_all_have_descriptions():
    for f in dataclasses.fields(NodeConfig):
        assert f.metadata.get("description"), f.name


def test_generated_docs_and_params_files_are_up_to_date():
    """docs/nodes.md, config/tracker_node.yaml and config/follower_node.yaml match the code."""
    res = subprocess.run(
        [sys.executable, "-m", "meta_tracker_ros.tools.param_docs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_tracker_node_yaml_repeats_no_tracker_default():
    """The params file sets only node parameters and the deliberate ROS overrides.

    Tracker defaults live in config/tracker.yaml alone; a params file that repeated them would
    silently pin stale values whenever the tracker is retuned.
    """
    data = yaml.safe_load((ROOT / "config" / "tracker_node.yaml").read_text())
    params = dict(data["tracker_node"]["ros__parameters"])
    node_fields = {f.name for f in dataclasses.fields(NodeConfig)}
    tracker_part = {k: v for k, v in params.items() if k not in node_fields}
    from meta_tracker_ros.tools.param_docs import ROS_OVERRIDES

    flat = {}
    for section, values in tracker_part.items():
        assert isinstance(values, dict), f"unexpected top-level parameter {section!r}"
        flat.update({f"{section}.{k}": v for k, v in values.items()})
    assert flat == ROS_OVERRIDES
    # and every override names a real tracker parameter
    TrackerConfig.from_yaml(ROOT / "config" / "tracker.yaml").with_overrides(flat)


def test_run_time_changes_are_refused_with_a_reason():
    from meta_tracker_ros.ros.params import check_changes

    config = TrackerConfig()
    specs = {s.name: s for s in [*node_specs(NodeConfig()), *tracker_specs(config)]}
    assert check_changes(specs, config, {"lost_timeout": 2.0, "memory.size": 20}) is None
    assert "read-only" in check_changes(specs, config, {"runtime.backend": "onnxruntime"})
    assert "outside" in check_changes(specs, config, {"frame_ring_length": 0})
    assert "not one of" in check_changes(specs, config, {"mask.color_space": "cmyk"})
    assert check_changes(specs, config, {"not_a_parameter": 1}) is None  # rclpy's business


def test_tracker_string_choices_contain_their_defaults():
    from meta_tracker_ros.ros.params import TRACKER_CHOICES

    specs = {s.name: s for s in tracker_specs(TrackerConfig())}
    for name, choices in TRACKER_CHOICES.items():
        assert specs[name].choices == choices
        assert specs[name].default in choices, name


def test_wildcard_sections_of_a_shared_params_file_are_other_nodes_parameters(tmp_path):
    """``/**:`` parameters this node does not declare are ignored; its own section's are not."""
    shared = tmp_path / "robot.yaml"
    shared.write_text(
        yaml.safe_dump(
            {
                "/**": {"ros__parameters": {"use_sim_time": False, "base": {"frame": "odom"}}},
                "/robot": {"*": {"ros__parameters": {"wheel_radius": 0.1}}},
                "tracker_node": {"ros__parameters": {"lost_timout": 2.0}},
                "/**/follower_node": {"ros__parameters": {"yaw_gain": 1.0}},
                "/robot/lidar": {"ros__parameters": {"range": 30.0, "base": {"frame": "x"}}},
            }
        )
    )
    argv = ["node", "--ros-args", "--params-file", str(shared), "-p", "wheel_radius:=0.2"]
    assert shared_only_names(argv) == {"use_sim_time"}
    # A name also set in a section naming a node, or with -p, is not "only shared".
    assert shared_only_names(["node", "--ros-args", "--params-file", str(shared)]) == {
        "use_sim_time",
        "wheel_radius",
    }
    assert shared_only_names(["node", "--params-file", str(tmp_path / "missing.yaml")]) == set()

"""Tracker config: YAML round trip, shipped defaults, unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meta_tracker_ros.core.config import TrackerConfig

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"


def test_yaml_round_trip(tmp_path):
    cfg = TrackerConfig().with_overrides(
        {"search.search_area": 5.0, "classifier.feature_levels": ["s16"], "memory.size": 30}
    )
    path = tmp_path / "t.yaml"
    cfg.to_yaml(path)
    assert TrackerConfig.from_yaml(path) == cfg


def test_shipped_yaml_equals_defaults():
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert data == TrackerConfig().to_dict(), "regenerate config/tracker.yaml from TrackerConfig()"
    assert TrackerConfig.from_yaml(SHIPPED) == TrackerConfig()


def test_unknown_keys_raise():
    with pytest.raises(ValueError, match="unknown key"):
        TrackerConfig.from_dict({"classifier": {"no_such_knob": 1}})
    with pytest.raises(ValueError, match="unknown key"):
        TrackerConfig.from_dict({"no_such_section": {}})
    with pytest.raises(ValueError, match="unknown tracker parameter"):
        TrackerConfig().with_overrides({"memory.nope": 3})


def test_wrong_types_raise():
    with pytest.raises(ValueError, match="integer"):
        TrackerConfig.from_dict({"memory": {"size": 2.5}})
    with pytest.raises(ValueError, match="list"):
        TrackerConfig.from_dict({"classifier": {"feature_levels": "s8"}})

"""Per-stage means the node publishes in /diagnostics: the worker's decode/publish + the core's."""

from __future__ import annotations

import numpy as np

from meta_tracker_ros.core import create_multi_tracker
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.timing import CORE_STAGES
from meta_tracker_ros.ros.params import NodeConfig
from meta_tracker_ros.ros.worker import NODE_STAGES, TrackerWorker


def _texture(seed: int = 2, w: int = 320, h: int = 240) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def test_stage_means_cover_node_and_core_stages():
    config = TrackerConfig().with_overrides({"mask.enabled": False})
    published: list[int] = []
    worker = TrackerWorker(
        create_multi_tracker,
        config,
        NodeConfig(lost_timeout=10.0, frame_ring_length=3),
        decode=lambda msg: msg,
        on_results=lambda f, im, r: published.append(f.stamp),
    )
    worker.build()
    assert worker.stage_means_ms() == {}, "no frame processed yet: nothing to report"
    frame = _texture()
    worker.push_frame(1, frame)
    entry = worker.frame_for(1)
    worker.add("a", worker.image(entry), (100, 80, 60, 50), None, entry)
    worker._run_commands()
    for stamp in (2, 3):
        worker.push_frame(stamp, np.roll(frame, 2 * stamp, axis=1))
        worker.step()
    assert published == [2, 3]
    means = worker.stage_means_ms()
    for stage in NODE_STAGES:
        assert means[stage] >= 0.0
    for stage in CORE_STAGES:
        assert f"core_{stage}" in means
    assert means["core_backbone"] > 0.0
    assert means["core_total"] >= means["core_backbone"]

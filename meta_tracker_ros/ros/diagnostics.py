"""The tracker node's /diagnostics status from a worker snapshot (message building only).

Kept apart from the node so the node stays an adapter; the values are strings, as
diagnostic_msgs/KeyValue wants, with "n/a" where nothing has been measured yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.types import TrackState

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}


def tracker_status(
    name: str, snap: Any, config: TrackerConfig, hardware_id: str, stage_ms: dict[str, float]
) -> DiagnosticStatus:
    """One DiagnosticStatus: rates, latency percentiles, counters, runtime, stages, targets."""
    lat = np.array(snap.latencies_s) * 1000.0
    proc = np.array(snap.tracker_s) * 1000.0
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    status.level, status.message = LEVELS[snap.level], snap.message

    def kv(k: str, v: Any) -> KeyValue:
        return KeyValue(key=k, value=str(v))

    status.values = [
        kv("processing_rate_hz", f"{snap.rate_hz:.1f}"),
        kv("latency_p50_ms", f"{np.percentile(lat, 50):.1f}" if lat.size else "n/a"),
        kv("latency_p95_ms", f"{np.percentile(lat, 95):.1f}" if lat.size else "n/a"),
        kv("tracker_ms_mean", f"{proc.mean():.1f}" if proc.size else "n/a"),
        kv("frames_received", snap.received),
        kv("frames_dropped", snap.dropped),
        kv("backend", config.runtime.backend),
        kv("device", hardware_id),
        kv("precision", config.runtime.precision),
        kv("targets", len(snap.results)),
    ]
    for stage, ms in stage_ms.items():
        status.values.append(kv(f"stage_{stage}_ms", f"{ms:.1f}"))
    for tid, r in snap.results.items():
        status.values.append(kv(f"target {tid}", f"{TrackState(r.state).name} {r.score:.2f}"))
    return status

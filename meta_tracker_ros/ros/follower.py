"""Pure follow-the-target controller (no rclpy), used by follower_node and unit-tested alone.

Conventions (REP 103): ``angular_z > 0`` turns left (counter-clockwise seen from above),
``linear_x > 0`` drives forward. A target right of the image centre therefore gives a negative
yaw rate. Stopping is immediate (no acceleration limit on the way to zero when the target is
LOST, stale or disarmed): safety wins over smoothness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from meta_tracker_ros.core.types import TrackState


@dataclass
class FollowerConfig:
    """Gains and limits of the follower; every field is a follower_node parameter."""

    target_id: str = field(
        default="", metadata={"description": "Target to follow ('' = the first in each message)"}
    )
    yaw_gain: float = field(
        default=1.5,
        metadata={"description": "Yaw rate (rad/s) per rad of bearing error", "range": (0.0, 20.0)},
    )
    max_yaw_rate: float = field(
        default=1.0, metadata={"description": "Yaw rate limit (rad/s)", "range": (0.0, 10.0)}
    )
    max_yaw_accel: float = field(
        default=3.0,
        metadata={"description": "Yaw acceleration limit (rad/s^2)", "range": (0.01, 100.0)},
    )
    yaw_deadband: float = field(
        default=0.02,
        metadata={"description": "Bearing error (rad) treated as zero", "range": (0.0, 1.0)},
    )
    horizontal_fov: float = field(
        default=1.0472,
        metadata={
            "description": "Horizontal field of view (rad) used when no camera_info has arrived",
            "range": (0.1, 3.1),
        },
    )
    distance_gain: float = field(
        default=0.8,
        metadata={
            "description": "Forward speed (m/s) per metre of distance error",
            "range": (0.0, 20.0),
        },
    )
    desired_distance: float = field(
        default=1.5,
        metadata={
            "description": "Distance (m) kept to the target when depth is available",
            "range": (0.0, 100.0),
        },
    )
    size_gain: float = field(
        default=1.0,
        metadata={
            "description": "Forward speed (m/s) per unit of relative box size error (no depth)",
            "range": (0.0, 20.0),
        },
    )
    max_forward_speed: float = field(
        default=0.5, metadata={"description": "Forward speed limit (m/s)", "range": (0.0, 10.0)}
    )
    max_backward_speed: float = field(
        default=0.2,
        metadata={"description": "Backward speed limit (m/s, positive)", "range": (0.0, 10.0)},
    )
    max_linear_accel: float = field(
        default=0.5,
        metadata={"description": "Linear acceleration limit (m/s^2)", "range": (0.01, 100.0)},
    )
    uncertain_timeout: float = field(
        default=0.5,
        metadata={
            "description": "Stop after the target is UNCERTAIN this long (s)",
            "range": (0.0, 60.0),
        },
    )
    stale_timeout: float = field(
        default=0.5,
        metadata={
            "description": "Stop when no tracks arrived for this long (s)",
            "range": (0.01, 60.0),
        },
    )


@dataclass
class FollowerNodeExtra:
    """Node-level follower parameters that are not controller gains."""

    start_enabled: bool = field(
        default=False, metadata={"description": "Start armed (else call ~/enable first)"}
    )
    watchdog_rate: float = field(
        default=10.0,
        metadata={
            "description": "Rate (Hz) of the stale-tracks check that publishes zero Twists",
            "range": (0.5, 200.0),
        },
    )


@dataclass
class TargetObservation:
    """What the controller needs from one TrackedObject (decoupled from the message type)."""

    id: str
    state: int
    center_x: float
    center_y: float
    size_x: float
    size_y: float
    position: tuple[float, float, float] | None = None


@dataclass
class Command:
    """Velocity command plus why (for logs and tests)."""

    linear_x: float = 0.0
    angular_z: float = 0.0
    reason: str = "idle"


class FollowerController:
    """Turns target observations into (linear_x, angular_z) with limits and stop conditions."""

    def __init__(self, config: FollowerConfig | None = None) -> None:
        self.config = config or FollowerConfig()
        self.enabled = False
        self._last_cmd = Command()
        self._last_time: float | None = None
        self._last_track_time: float | None = None
        self._uncertain_since: float | None = None
        self._ref_size: dict[str, float] = {}
        self._followed: str | None = None

    def set_enabled(self, enabled: bool) -> None:
        """Arm or disarm; disarming forgets the reference size so re-arming re-selects it."""
        self.enabled = enabled
        if not enabled:
            self._last_cmd = Command(reason="disabled")
            self._ref_size.clear()

    def _pick(self, targets: list[TargetObservation]) -> TargetObservation | None:
        if self.config.target_id:
            return next((t for t in targets if t.id == self.config.target_id), None)
        if self._followed is not None:  # keep following the same one while it exists
            same = next((t for t in targets if t.id == self._followed), None)
            if same is not None:
                return same
        return targets[0] if targets else None

    def update(
        self,
        targets: list[TargetObservation],
        now: float,
        image_width: int,
        fx: float | None = None,
        cx: float | None = None,
    ) -> Command:
        """Process one tracks message received at ``now`` (seconds)."""
        self._last_track_time = now
        # A reference size belongs to one target's life: an id that left the tracks, or that
        # is initialising again, is a new target when it comes back (possibly at another
        # distance), so its old reference must not set the speed.
        ids = {t.id for t in targets}
        self._ref_size = {k: v for k, v in self._ref_size.items() if k in ids}
        for t in targets:
            if t.state == TrackState.INITIALIZING:
                self._ref_size.pop(t.id, None)
        target = self._pick(targets)
        if target is None:
            return self._stop(now, "target not in tracks")
        self._followed = target.id
        if target.state == TrackState.LOST:
            return self._stop(now, "target LOST")
        if target.state == TrackState.UNCERTAIN:
            if self._uncertain_since is None:
                self._uncertain_since = now
            if now - self._uncertain_since > self.config.uncertain_timeout:
                return self._stop(now, "target UNCERTAIN for too long")
        else:
            self._uncertain_since = None
        if target.state == TrackState.INITIALIZING:
            return self._stop(now, "target initialising")
        if not self.enabled:
            return self._stop(now, "disabled")
        bearing = self._bearing(target, image_width, fx, cx)
        yaw = 0.0 if abs(bearing) < self.config.yaw_deadband else -self.config.yaw_gain * bearing
        forward = self._forward(target)
        return self._limited(now, forward, yaw, "following")

    def tick(self, now: float) -> Command | None:
        """Periodic check: returns a stop command when tracks have gone stale, else None.

        Stale tracks also end every target's reference size and the choice of target: the
        tracker may have restarted, and what it tracks when tracks resume is taken afresh.
        """
        if self._last_track_time is None or now - self._last_track_time > self.config.stale_timeout:
            self._ref_size.clear()
            self._followed = None
            return self._stop(now, "tracks stale")
        return None

    # ------------------------------------------------------------------ internals
    def _bearing(
        self, t: TargetObservation, width: int, fx: float | None, cx: float | None
    ) -> float:
        """Horizontal angle of the target, positive to the right of the optical axis."""
        if t.position is not None and t.position[2] > 0:
            return math.atan2(t.position[0], t.position[2])
        if fx is None or fx <= 0:
            fx = (width / 2) / math.tan(self.config.horizontal_fov / 2)
        if cx is None:
            cx = width / 2
        return math.atan2(t.center_x - cx, fx)

    def _forward(self, t: TargetObservation) -> float:
        c = self.config
        if t.position is not None and t.position[2] > 0:
            distance = math.hypot(t.position[0], t.position[2])
            return c.distance_gain * (distance - c.desired_distance)
        size = math.sqrt(max(t.size_x, 0.0) * max(t.size_y, 0.0))
        if size <= 0:
            return 0.0
        ref = self._ref_size.setdefault(t.id, size)
        # Smaller than at selection -> farther away -> drive forward.
        return c.size_gain * (ref - size) / ref

    def _limited(self, now: float, forward: float, yaw: float, reason: str) -> Command:
        c = self.config
        forward = min(max(forward, -c.max_backward_speed), c.max_forward_speed)
        yaw = min(max(yaw, -c.max_yaw_rate), c.max_yaw_rate)
        dt = 0.0 if self._last_time is None else max(0.0, now - self._last_time)
        dt = min(dt, 0.5)  # a long pause must not allow an unbounded jump
        prev = self._last_cmd
        forward = _slew(prev.linear_x, forward, c.max_linear_accel * dt)
        yaw = _slew(prev.angular_z, yaw, c.max_yaw_accel * dt)
        self._last_time = now
        self._last_cmd = Command(forward, yaw, reason)
        return self._last_cmd

    def _stop(self, now: float, reason: str) -> Command:
        self._last_time = now
        self._last_cmd = Command(0.0, 0.0, reason)
        return self._last_cmd


def _slew(previous: float, target: float, max_step: float) -> float:
    return previous + min(max(target - previous, -max_step), max_step)

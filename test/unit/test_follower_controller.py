"""Follower control law: signs, limits and stop conditions (no ROS)."""

from __future__ import annotations

import pytest

from meta_tracker_ros.core.types import TrackState
from meta_tracker_ros.ros.follower import FollowerConfig, FollowerController, TargetObservation


def obs(cx=320.0, size=100.0, state=TrackState.TRACKING, position=None, tid="a"):
    return TargetObservation(tid, int(state), cx, 240.0, size, size, position)


def armed(**cfg) -> FollowerController:
    c = FollowerController(FollowerConfig(max_yaw_accel=100.0, max_linear_accel=100.0, **cfg))
    c.set_enabled(True)
    return c


def test_disabled_outputs_zero():
    c = FollowerController()
    cmd = c.update([obs(cx=600)], 0.0, 640)
    assert (cmd.linear_x, cmd.angular_z) == (0.0, 0.0)


def test_target_right_turns_right_left_turns_left():
    c = armed()
    c.update([obs()], 0.0, 640)
    assert c.update([obs(cx=600)], 0.1, 640).angular_z < 0
    c = armed()
    c.update([obs()], 0.0, 640)
    assert c.update([obs(cx=40)], 0.1, 640).angular_z > 0


def test_camera_info_fx_changes_the_bearing():
    wide, narrow = armed(yaw_gain=1.0), armed(yaw_gain=1.0)
    for c in (wide, narrow):
        c.update([obs()], 0.0, 640)
    a = wide.update([obs(cx=420)], 0.1, 640, fx=200.0, cx=320.0).angular_z
    b = narrow.update([obs(cx=420)], 0.1, 640, fx=2000.0, cx=320.0).angular_z
    assert a < b < 0


def test_forward_from_box_size_relative_to_selection():
    c = armed()
    c.update([obs(size=100)], 0.0, 640)  # reference size
    assert c.update([obs(size=60)], 0.1, 640).linear_x > 0  # smaller: farther: forward
    assert c.update([obs(size=140)], 0.2, 640).linear_x < 0  # bigger: closer: back off


def test_forward_from_depth_position():
    c = armed(desired_distance=1.5)
    assert c.update([obs(position=(0.0, 0.0, 3.0))], 0.0, 640).linear_x == pytest.approx(
        0.0
    )  # first command after arming has dt=0 (acceleration limit)
    assert c.update([obs(position=(0.0, 0.0, 3.0))], 0.1, 640).linear_x > 0
    assert c.update([obs(position=(0.0, 0.0, 1.0))], 0.2, 640).linear_x < 0
    assert c.update([obs(position=(0.5, 0.0, 2.0))], 0.3, 640).angular_z < 0


def test_speed_and_acceleration_limits():
    c = FollowerController(FollowerConfig(max_forward_speed=0.3, max_linear_accel=1.0))
    c.set_enabled(True)
    c.update([obs(size=100)], 0.0, 640)
    cmd = c.update([obs(size=10)], 0.1, 640)
    assert cmd.linear_x == pytest.approx(0.1)  # 1 m/s^2 * 0.1 s
    for k in range(2, 20):
        cmd = c.update([obs(size=10)], 0.1 * k, 640)
    assert cmd.linear_x == pytest.approx(0.3)
    c = armed(max_yaw_rate=0.4)
    c.update([obs()], 0.0, 640)
    assert c.update([obs(cx=639)], 0.1, 640).angular_z == pytest.approx(-0.4)


def test_stops_on_lost_long_uncertain_and_stale():
    c = armed(uncertain_timeout=0.5, stale_timeout=0.5)
    c.update([obs()], 0.0, 640)
    assert c.update([obs(cx=600)], 0.1, 640).angular_z != 0
    lost = c.update([obs(cx=600, state=TrackState.LOST)], 0.2, 640)
    assert (lost.linear_x, lost.angular_z, lost.reason) == (0.0, 0.0, "target LOST")
    assert c.update([obs(cx=600, state=TrackState.UNCERTAIN)], 0.3, 640).angular_z != 0
    late = c.update([obs(cx=600, state=TrackState.UNCERTAIN)], 0.9, 640)
    assert late.angular_z == 0.0 and "UNCERTAIN" in late.reason
    assert c.tick(1.0) is None
    assert c.tick(1.5).reason == "tracks stale"


def test_follows_named_target_and_stops_when_it_is_missing():
    c = armed(target_id="b")
    c.update([obs(tid="a"), obs(tid="b")], 0.0, 640)
    cmd = c.update([obs(tid="a", cx=600), obs(tid="b", cx=40)], 0.1, 640)
    assert cmd.angular_z > 0
    assert c.update([obs(tid="a", cx=600)], 0.2, 640).reason == "target not in tracks"


def test_reference_size_is_taken_afresh_for_a_new_target_life():
    """A stale reference size would drive the robot: after the tracks went stale (a tracker
    restart), after the id left the tracks, or while it initialises again, the size the target
    has when it is followed again is the new reference (no forward speed at that size)."""

    def forward_after(gap) -> float:
        c = armed()
        c.update([obs(size=100)], 0.0, 640)
        assert c.update([obs(size=60)], 0.1, 640).linear_x > 0  # the reference holds
        t = gap(c)
        c.update([obs(size=60)], t, 640)
        return c.update([obs(size=60)], t + 0.1, 640).linear_x

    def stale(c):
        assert c.tick(1.0).reason == "tracks stale"
        return 1.1

    def left(c):
        assert c.update([], 0.2, 640).reason == "target not in tracks"
        return 0.3

    def reinit(c):
        assert c.update([obs(state=TrackState.INITIALIZING)], 0.2, 640).linear_x == 0.0
        return 0.3

    for gap in (stale, left, reinit):
        assert forward_after(gap) == pytest.approx(0.0), gap.__name__
    # Losing the target for a while keeps its reference (the same target, found again).
    c = armed()
    c.update([obs(size=100)], 0.0, 640)
    c.update([obs(size=60, state=TrackState.LOST)], 0.1, 640)
    assert c.update([obs(size=60)], 0.2, 640).linear_x > 0

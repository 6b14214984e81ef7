"""image_source as a process: typed parameters, refused configurations and exit statuses.

The installed executable runs in its own ROS domain, on the procedural clip or on files the test
writes (no data needed). What a launch file or a script sees is the exit status: 0 when the
input ended or the node was stopped, 1 when the input failed while playing, 2 for a refused
configuration with the parameter named on stderr (as tracker_node and follower_node do).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy not importable: run through `make test`")

from meta_tracker_ros.tools import graph

pytestmark = [pytest.mark.ros]

WAIT = 90.0  # generous: the CPU is shared; the process ending ends the wait early


def _run(tmp_path: Path, args: list[str]) -> tuple[int, str]:
    log = tmp_path / "image_source.log"
    proc = graph.start_node(
        "image_source", args, log, env={"ROS_DOMAIN_ID": str(graph.random_domain_id())}
    )
    try:
        rc = proc.wait(timeout=WAIT)
    finally:
        graph.stop_node(proc)
    return rc, log.read_text()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-p", "source:=clip.mp4"], "source"),
        (["-p", "input:={missing}"], "input"),
        (["-p", "input:={empty_dir}"], "input"),
        (["-p", "rate:=-1.0"], "rate"),
        (["-p", "queue_depth:=0"], "queue_depth"),
        (["-p", "width:=wide"], "width"),
    ],
    ids=["unknown-name", "missing-file", "empty-folder", "negative-rate", "zero-depth", "type"],
)
def test_bad_configuration_exits_2_naming_the_parameter(tmp_path, args, named):
    """Before: a misspelt name was ignored (the synthetic clip played), the rest tracebacks."""
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing.mp4", "empty_dir": tmp_path / "empty"}
    rc, out = _run(tmp_path, [a.format(**paths) for a in args])
    assert rc == 2, out[-2000:]
    assert "bad configuration" in out and named in out, out[-2000:]
    assert "Traceback" not in out and "publishing" not in out, out[-2000:]


def test_integer_rate_is_taken_as_a_float_and_a_finite_input_ends_with_0(tmp_path):
    """``ros2 launch ... demo.launch.py rate:=15`` hands the node an integer (a crash before)."""
    rc, out = _run(tmp_path, ["-p", "rate:=15", "-p", "max_frames:=3"])
    assert rc == 0, out[-2000:]
    assert "at 15 Hz" in out and "input finished after 3 frames" in out, out[-2000:]


def test_an_input_that_fails_while_playing_exits_1(tmp_path):
    """A file that exists but does not decode: an error line and status 1 (0 before)."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    rc, out = _run(tmp_path, ["-p", f"input:={broken}"])
    assert rc == 1, out[-2000:]
    assert "image source failed" in out and "Traceback" not in out, out[-2000:]


@pytest.mark.parametrize("rate", ["30.0", "0.0"], ids=["30Hz", "as-fast-as-possible"])
def test_stopped_while_playing_exits_0(tmp_path, rate):
    """SIGINT (a launch file ending) while publishing: a clean exit through close_node.

    At rate 0 the publishing thread is almost always inside ``publish`` when the signal
    invalidates the context; that raised and was reported as a failed input (exit 1).
    """
    log = tmp_path / "image_source.log"
    proc = graph.start_node(
        "image_source",
        ["-p", "loop:=true", "-p", f"rate:={rate}"],
        log,
        env={"ROS_DOMAIN_ID": str(graph.random_domain_id())},
    )
    try:
        deadline = time.monotonic() + WAIT
        while "publishing" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()[-2000:]
    finally:
        rc = graph.stop_node(proc, timeout=30.0)
    out = log.read_text()
    assert rc == 0, out[-2000:]
    assert "Traceback" not in out and "destroy_node failed" not in out, out[-2000:]

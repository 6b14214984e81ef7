"""Reliability suite for tracker_node: soak, fuzz and faults against the real executable.

    python -m meta_tracker_ros.tools.stress [--frames 10000] [--targets 1 4] [--fuzz 3000]
        [--only soak fuzz faults] [--quick] [--log-dir /tmp/stress]

``make stress`` runs the full form (about 12 min of soak at camera rate plus fuzz and faults);
``--quick`` is the reduced form CI runs through ``test/integration/test_stress_quick.py``.

- *Soak* (:func:`soak`): ``--frames`` frames of a real ../shared/data sequence, 640x360 bgr8,
  looped, published at 30 Hz by an rclpy publisher in this process, with 1 and 4 targets. Passes
  when the node's resident memory (``/proc/<pid>/status`` VmRSS, with its tracker process's)
  grows by less than 50 MB
  after warm-up, the p95 image-to-tracks latency of the last window (1,000 processed frames,
  fewer in a short run) is within 20 % of the first window after warm-up, and the node's log
  holds no traceback.
- *Fuzz* (:mod:`.stress_fuzz`): hypothesis-generated hostile requests and images.
- *Faults* (:mod:`.stress_faults`): camera stop/restart, QoS changes, CPU hog, node killed with
  an armed follower, broken weights / ONNX / engine cache.

Every node runs in its own random ROS domain on localhost (``tools/with_env.sh``). Tests wait
on events (a tracks message, a service answer, a log line) with generous time limits, so a
loaded CPU slows them down without failing them; only the soak's latency drift depends on a
quiet machine (say what ran beside it when reporting). A summary is printed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from meta_tracker_ros.tools import graph

WAIT = 120.0  # upper bound of every wait; events end them early
SOAK_SIZE = (640, 360)
SOAK_RATE = 30.0
MEM_LIMIT_MB = 50.0
DRIFT_LIMIT = 0.20
# Extra ``NAME:=VALUE`` tracker_node parameters for every node the suite starts (--param).
EXTRA_PARAMS: list[str] = []
# Lines that mean an exception escaped somewhere in the node (handled, logged ones included).
_BAD_LOG = re.compile(r"Traceback|the node goes on|worker step failed|Segmentation fault")


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def rss_mb(pid: int) -> float:
    """Resident set size in MB of process ``pid`` and its descendants (VmRSS, /proc).

    The descendants count because the node runs its tracker in a child process
    (``tracker_process``): a leak there is the node's leak.
    """
    if "VmRSS" not in _status(pid):
        raise RuntimeError(f"no VmRSS for pid {pid}")
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_status(int(entry.name)).get("PPid", "0"))
            except (OSError, ValueError):
                continue  # ended meanwhile
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for p in tree:
        try:
            total += int(_status(p).get("VmRSS", "0 kB").split()[0]) / 1024.0
        except (OSError, ValueError):
            continue
    return total


def frame_not_held(message: str) -> bool:
    """Whether a refused ``set_target`` says the node does not hold the frame just published.

    Not there yet, replaced unseen by a later one (depth-1 subscription on a busy CPU), or
    lost before the node's subscription matched the publisher (the node's oldest frame is then
    newer: "too old"). The frame was published right before the request, so any of these
    means: publish another and ask again.
    """
    return any(k in message for k in ("yet", "no kept frame", "too old"))


def bad_log_lines(log: Path) -> list[str]:
    """Lines of a node log that show an exception (see ``_BAD_LOG``)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if _BAD_LOG.search(line)]


@dataclasses.dataclass
class Summary:
    """Figures the suite prints at the end; ``failures`` empty means it passed."""

    requests: int = 0
    unanswered: int = 0
    images_hostile: int = 0
    frames: int = 0
    crashes: int = 0
    checks: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    soak: list[dict] = dataclasses.field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        (self.checks if ok else self.failures).append(what)
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        return ok

    def text(self) -> str:
        lines = ["", "=== stress summary ==="]
        lines.append(
            f"requests tried: {self.requests} (unanswered {self.unanswered}), hostile images: "
            f"{self.images_hostile}, frames published: {self.frames}, crashes: {self.crashes}"
        )
        for s in self.soak:
            lines.append(
                f"soak targets={s['targets']}: {s['published']} frames published, "
                f"{s['processed']} processed ({s['rate']:.1f} Hz); RSS {s['rss_warm']:.0f} -> "
                f"{s['rss_end']:.0f} MB (growth {s['growth']:+.1f} MB, peak {s['rss_peak']:.0f}); "
                f"latency p95 first {s['p95_first']:.0f} ms, last {s['p95_last']:.0f} ms "
                f"(drift {s['drift']:+.1%}, windows of {s['window']})"
            )
        lines.append(f"checks passed: {len(self.checks)}, failed: {len(self.failures)}")
        lines.extend(f"  FAILED: {f}" for f in self.failures)
        return "\n".join(lines)


class Rig:
    """A tracker_node process plus client nodes, in a private ROS domain on localhost.

    ``clients`` extra client nodes (each with its own set/remove clients) let fuzz storms call
    the services from several participants at once. One single-threaded executor spins them all:
    callbacks here only store messages, and rclpy's multi-threaded executor busy-waits (see
    tracker_node's ``executor`` parameter), taking CPU from the node under test (quick suite:
    6.8-6.9 s of this process's CPU against 8.3-8.7 s).
    """

    def __init__(
        self,
        log: Path,
        ros_args: list[str] = (),
        clients: int = 1,
        domain: int | None = None,
        image_topic: str = "/cam/image",
    ) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from meta_tracker_ros.msg import TrackedObjectArray
        from meta_tracker_ros.srv import RemoveTarget, SetTarget

        self.log = log
        self.domain = domain or graph.random_domain_id()
        self.ros_args = [
            "--params-file", str(graph.ROOT / "config" / "tracker_node.yaml"),
            "-r", f"image:={image_topic}",
            "-p", "use_depth:=false",
            "-p", "set_target_timeout:=30.0",
            "-p", "diagnostics_period:=0.5",
            *[a for p in EXTRA_PARAMS for a in ("-p", p)],
            *ros_args,
        ]  # fmt: skip
        self.proc = self.start_node()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.nodes = [
            rclpy.create_node(f"stress_client_{k}", context=self.context) for k in range(clients)
        ]
        self.node = self.nodes[0]
        self.executor = SingleThreadedExecutor(context=self.context)
        for n in self.nodes:
            self.executor.add_node(n)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        self.cond = threading.Condition()
        self.tracks: dict[int, tuple[int, Any]] = {}  # stamp ns -> (receive ns, message)
        self.other_tracks: list[Any] = []  # tracks whose stamp is no published image's
        self.diag: list[tuple[int, dict[str, str]]] = []  # (node stamp ns, key -> value)
        self.published: set[int] = set()
        self.image_topic = image_topic
        self.Image = Image
        # The camera is a node of its own that is never spun: a fault test can replace its
        # publisher without racing the executor (rclpy would raise InvalidHandle in spin).
        self.camera = rclpy.create_node("stress_camera", context=self.context)
        self.pub = self.camera.create_publisher(
            Image, image_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.node.create_subscription(TrackedObjectArray, "/tracker_node/tracks", self._on, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.set_clients = [
            n.create_client(SetTarget, "/tracker_node/set_target") for n in self.nodes
        ]
        self.remove_clients = [
            n.create_client(RemoveTarget, "/tracker_node/remove_target") for n in self.nodes
        ]
        self.SetTarget, self.RemoveTarget = SetTarget, RemoveTarget

    # ------------------------------------------------------------------ process
    def start_node(self) -> subprocess.Popen:
        return graph.start_node(
            "tracker_node", self.ros_args, self.log, env={"ROS_DOMAIN_ID": str(self.domain)}
        )

    def restart(self) -> None:
        """Start the node again (after a kill), appending to the same log."""
        self.log = self.log.with_name(self.log.stem + "_restarted.log")
        self.proc = self.start_node()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> int | None:
        import rclpy

        rc = graph.stop_node(self.proc) if self.proc.poll() is None else self.proc.returncode
        self.executor.shutdown()
        self._spin.join(timeout=10.0)
        for n in [*self.nodes, self.camera]:
            n.destroy_node()
        rclpy.shutdown(context=self.context)
        return rc

    # ------------------------------------------------------------------ subscriptions
    def _on(self, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.cond:
            if stamp in self.published:
                self.tracks[stamp] = (time.time_ns(), msg)
            else:
                self.other_tracks.append(msg)
            self.cond.notify_all()

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("tracker_node"):
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                with self.cond:
                    self.diag.append((stamp, {kv.key: kv.value for kv in status.values}))
                    del self.diag[:-20]
                    self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT) -> bool:
        with self.cond:
            return bool(self.cond.wait_for(predicate, timeout=timeout))

    def diag_after(self, t_ns: int) -> dict[str, str] | None:
        """The first diagnostics values the node stamped at or after ``t_ns`` (waits)."""

        def find():
            return next((d for s, d in self.diag if s >= t_ns), None)

        self.wait_for(lambda: find() is not None)
        with self.cond:
            return find()

    def diag_ids(self) -> set[str] | None:
        """Target ids the node reports in a diagnostics message stamped after now."""
        values = self.diag_after(time.time_ns())
        if values is None:
            return None
        return {k[len("target ") :] for k in values if k.startswith("target ")}

    # ------------------------------------------------------------------ publishing
    def wait_subscribed(self, pub: Any = None) -> bool:
        pub = pub or self.pub
        end = time.monotonic() + WAIT
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.02)  # graph discovery has no event to wait on in rclpy
        return pub.get_subscription_count() > 0

    def publish(self, msg: Any, pub: Any = None) -> int:
        """Publish ``msg`` stamped now (wall clock = the node's clock); returns the stamp."""
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10**9)
        msg.header.frame_id = "cam"
        with self.cond:
            self.published.add(now)
        (pub or self.pub).publish(msg)
        return now

    def wait_tracks(self, stamp: int, timeout: float = WAIT) -> Any:
        """The tracks message for the image stamped ``stamp`` (None if it never came)."""
        self.wait_for(lambda: stamp in self.tracks, timeout)
        with self.cond:
            entry = self.tracks.get(stamp)
        return entry[1] if entry else None

    def track_frame(self, msg: Any, tries: int = 40, timeout: float = 3.0) -> Any:
        """Publish ``msg`` until one copy gets its tracks message (frames may be dropped)."""
        for _ in range(tries):
            out = self.wait_tracks(self.publish(msg), timeout)
            if out is not None:
                return out
        return None

    # ------------------------------------------------------------------ services
    def call(self, client: Any, request: Any, timeout: float = WAIT) -> Any:
        """The service answer, or None when none came within ``timeout``."""
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            return None
        return future.result()

    def set_target(self, box, stamp: int = 0, tid: str = "", client: int = 0, mask=None) -> Any:
        req = self.SetTarget.Request(id=tid)
        req.x, req.y, req.width, req.height = (float(v) for v in box)
        req.stamp.sec, req.stamp.nanosec = divmod(int(stamp), 10**9)
        if mask is not None:
            req.mask = mask
        return self.call(self.set_clients[client], req)

    def remove(self, tid: str, client: int = 0) -> Any:
        return self.call(self.remove_clients[client], self.RemoveTarget.Request(id=tid))

    def set_on_frame(self, msg: Any, boxes: list, prefix: str = "t") -> list[str]:
        """Targets ``<prefix>0..`` on ``msg`` (published until the node has it); their ids."""
        ids = []
        for k, box in enumerate(boxes):
            res = self.set_on_frame_or_answer(msg, box, f"{prefix}{k}", retry_unanswered=True)
            if res is None or not res.success:
                raise RuntimeError(f"set_target failed: {res.message if res else 'no answer'}")
            ids.append(res.id)
        return ids

    def set_on_frame_or_answer(
        self, msg: Any, box: tuple, tid: str = "f", retry_unanswered: bool = False
    ) -> Any:
        """``set_target`` on ``msg`` until the node holds the frame (:func:`frame_not_held`).

        A frame the node has not received *yet* is asked for again by the same stamp, after the
        node's next diagnostics: a large image can reach the node after the small request sent
        right behind it, and a new copy each time would always be the one still in flight (seen
        in CI: 100 refusals in a row, each one frame behind). A frame that stays missing for a
        few rounds, or that the node dropped or replaced, is published again.
        ``retry_unanswered``: a request with no answer is sent again too (else returned).
        """
        res, stamp, waits = None, 0, 0
        for _ in range(100):
            if stamp == 0 or waits >= 3:
                stamp, waits = self.publish(msg), 0
            res = self.set_target(box, stamp, tid)
            if res is None and not retry_unanswered:
                return res
            if res is not None and not frame_not_held(res.message):
                return res
            # "no image with stamp ... yet": in flight; "no image received yet": lost unmatched
            held_back = res is not None and "no image with stamp" in res.message
            waits = waits + 1 if held_back else 3  # dropped or unanswered: publish another
            self.diag_after(time.time_ns())  # pace retries by the node's diagnostics
        return res


# ============================================================================== soak
def load_frames(data: Path, sequence: str, count: int) -> tuple[list, list]:
    """``count`` frames of a shared-data sequence at 640x360 and their boxes (for looping)."""
    from meta_tracker_ros.tools.latency_bench import load_sequence

    return load_sequence(data, sequence, SOAK_SIZE, count)


def soak(
    summary: Summary,
    frames: list,
    boxes: list,
    targets: int,
    n_frames: int,
    log: Path,
    check_memory: bool = True,
) -> dict:
    """Publish ``n_frames`` looped frames at 30 Hz to a fresh node tracking ``targets``.

    ``check_memory`` False (the reduced form) reports the RSS growth without checking it: a
    10 s run ends inside the warm-up, where RSS still climbs.
    """
    from meta_tracker_ros.ros.conversions import bgr_to_image
    from meta_tracker_ros.tools.latency_bench import extra_boxes

    print(f"soak: {n_frames} frames at {SOAK_RATE:g} Hz, {targets} target(s)", flush=True)
    rig = Rig(log, ["-p", f"max_targets:={max(targets, 1)}"])
    msgs = [bgr_to_image(f) for f in frames]
    stamps: list[int] = []
    rss: list[tuple[int, float]] = []  # (frame index, MB)
    try:
        if not rig.wait_subscribed():
            raise RuntimeError(f"tracker_node never subscribed; see {log}")
        init_boxes = [boxes[0], *extra_boxes(boxes[0], SOAK_SIZE, targets - 1)]
        rig.set_on_frame(msgs[0], init_boxes)
        period = 1.0 / SOAK_RATE
        start = time.monotonic()
        for i in range(n_frames):
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # camera rate: the publisher's pace, not a wait for the node
            stamps.append(rig.publish(msgs[(i + 1) % len(msgs)]))
            if i % 30 == 0:
                if not rig.alive():
                    break
                rss.append((i, rss_mb(rig.proc.pid)))
        rig.wait_tracks(stamps[-1], timeout=10.0)  # the last one, if it was not dropped
        alive = rig.alive()
        if alive:
            rss.append((n_frames, rss_mb(rig.proc.pid)))
    finally:
        rc = rig.close()
    summary.frames += len(stamps)
    summary.crashes += 0 if alive else 1
    summary.check(alive, f"soak {targets} target(s): node alive after {len(stamps)} frames")
    summary.check(rc == 0, f"soak {targets} target(s): clean exit on SIGINT (rc={rc})")
    bad = bad_log_lines(log)
    summary.check(not bad, f"soak {targets} target(s): no exception in the log {bad[:3]}")
    # Warm-up: the first tenth of the run, or a third of a short one (up to 900 frames, 30 s):
    # resident memory climbs for about 20 s (torch's allocator, glibc arenas of the executor
    # threads, the heads' memories) and then only oscillates by +-30 MB (soak_<n>_rss.csv).
    warm_frame = max(n_frames // 10, min(900, n_frames // 3))
    with rig.cond:
        got = sorted((s, rig.tracks[s][0] - s) for s in stamps if s in rig.tracks)
    after = [v for s, v in got if s >= stamps[min(warm_frame, len(stamps) - 1)]]
    lat = np.array(after) / 1e6
    window = max(1, min(1000, len(lat) // 3))
    first, last = lat[:window], lat[-window:]
    p95_first = float(np.percentile(first, 95)) if first.size else float("nan")
    p95_last = float(np.percentile(last, 95)) if last.size else float("nan")
    rss_after = [mb for i, mb in rss if i >= warm_frame] or [float("nan")]
    (log.parent / f"{log.stem}_rss.csv").write_text(
        "frame,rss_mb\n" + "".join(f"{i},{mb:.1f}\n" for i, mb in rss)
    )
    span = (got[-1][0] - got[0][0]) / 1e9 if len(got) > 1 else 0.0
    result = {
        "targets": targets,
        "published": len(stamps),
        "processed": len(got),
        "rate": (len(got) - 1) / span if span > 0 else 0.0,
        # Medians of a few samples at each end: one sample can catch a transient allocation.
        "rss_warm": float(np.median(rss_after[:5])),
        "rss_end": float(np.median(rss_after[-5:])),
        "rss_peak": max(rss_after),
        "growth": float(np.median(rss_after[-5:]) - np.median(rss_after[:5])),
        "p95_first": p95_first,
        "p95_last": p95_last,
        "drift": p95_last / p95_first - 1.0 if p95_first > 0 else float("nan"),
        "window": window,
    }
    summary.soak.append(result)
    summary.check(len(lat) > 0, f"soak {targets} target(s): {len(got)} frames processed")
    summary.check(
        result["growth"] < MEM_LIMIT_MB or not check_memory,
        f"soak {targets} target(s): RSS growth after warm-up {result['growth']:+.1f} MB "
        f"< {MEM_LIMIT_MB:g} MB{'' if check_memory else ' (reported only)'}",
    )
    return result


def check_drift(summary: Summary) -> None:
    """The latency-creep criterion (only meaningful on a quiet machine; see the README)."""
    for s in summary.soak:
        summary.check(
            s["drift"] <= DRIFT_LIMIT,
            f"soak {s['targets']} target(s): p95 latency drift {s['drift']:+.1%} "
            f"<= {DRIFT_LIMIT:.0%} ({s['p95_first']:.0f} -> {s['p95_last']:.0f} ms)",
        )


# ============================================================================== CPU hog
class CpuHog:
    """``n`` busy processes for at most ``seconds`` (bounded even if we are killed)."""

    def __init__(self, n: int = 2, seconds: float = 300.0) -> None:
        code = f"import time\ne = time.monotonic() + {seconds}\nwhile time.monotonic() < e: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]

    def __enter__(self) -> CpuHog:
        return self

    def __exit__(self, *_: Any) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


# ============================================================================== CLI
def _run_part(part: str, summary: Summary, args: argparse.Namespace) -> None:
    if part == "soak":
        if not args.data.is_dir():
            summary.check(False, f"soak needs {args.data} (the shared data)")
            return
        frames, boxes = load_frames(args.data, args.sequence, min(150, args.frames + 1))
        for n in args.targets:
            log = args.log_dir / f"soak_{n}.log"
            soak(summary, frames, boxes, n, args.frames, log, check_memory=not args.quick)
        if not args.no_drift:
            check_drift(summary)
    elif part == "fuzz":
        from meta_tracker_ros.tools import stress_fuzz

        stress_fuzz.run(summary, args.fuzz, args.storm, args.log_dir, quick=args.quick)
    else:
        from meta_tracker_ros.tools import stress_faults

        stress_faults.run(summary, args.log_dir, quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts, print the summary; 0 when every check passed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=graph.ROOT.parent / "shared" / "data")
    p.add_argument("--sequence", default="uav_person11")
    p.add_argument("--frames", type=int, default=10000, help="soak frames per target count")
    p.add_argument("--targets", type=int, nargs="+", default=[1, 4])
    p.add_argument("--fuzz", type=int, default=3000, help="hypothesis requests (sequential)")
    p.add_argument("--storm", type=int, default=300, help="set/remove calls per storm client")
    p.add_argument("--only", nargs="+", default=["soak", "fuzz", "faults"])
    p.add_argument("--quick", action="store_true", help="the reduced form CI runs")
    p.add_argument("--no-drift", action="store_true", help="report latency drift, do not check")
    p.add_argument("--log-dir", type=Path, default=Path("/tmp/meta_tracker_stress"))
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="extra tracker_node parameter for every node started (repeatable)",
    )
    args = p.parse_args(argv)
    EXTRA_PARAMS[:] = args.param
    if args.quick:
        args.frames, args.targets, args.fuzz, args.storm = 300, [1], 150, 15
        args.no_drift = True
    args.log_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"stress: load average before {load}; logs in {args.log_dir}", flush=True)
    t0 = time.monotonic()
    for part in ("soak", "fuzz", "faults"):
        if part not in args.only:
            continue
        try:  # one part failing must not hide the others' figures
            _run_part(part, summary, args)
        except Exception as exc:
            summary.check(False, f"{part}: {type(exc).__name__}: {exc}")
    print(summary.text())
    print(f"stress: {time.monotonic() - t0:.0f} s; pid {os.getpid()}", flush=True)
    return 0 if not summary.failures else 1


if __name__ == "__main__":
    # Run the imported module's main: stress_fuzz/stress_faults import this module by name, and
    # EXTRA_PARAMS must be the one their Rig reads (not a second copy in __main__).
    from meta_tracker_ros.tools.stress import main as _main

    sys.exit(_main())

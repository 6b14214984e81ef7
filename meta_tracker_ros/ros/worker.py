"""The tracker node's engine, without rclpy: frame ring, command queue, worker loop, LOST clock.

Threading, and why: a tracker step takes tens of milliseconds on a CPU, longer than a 30 Hz
frame period. Running it inside the image callback would let frames queue up in the executor
and every published track would describe an ever older image. Instead:

- :meth:`TrackerWorker.push_frame` (called by the image callback) only stores the newest frame
  and appends it to a short ring used by ``set_target``; a frame that arrives while the worker
  is busy replaces the pending one (it is dropped, never queued);
- one worker thread owns the core tracker: it runs queued commands (add/remove/reconfigure)
  and then tracks the newest frame, so the core is never used from two threads;
- services validate in their own threads, hand the work to the worker as a command and wait on
  the returned future with a bounded timeout.

State shared between those threads (ids, results, counters) is read through :meth:`snapshot`
and the other public methods, which copy it under one lock.

Images stopping is reported, not guessed from the tracker (:meth:`check_timeout`). The node
passes callbacks (decode a message, publish results, report LOST, log) and a clock; unit tests
pass plain arrays and a fake clock and call :meth:`step` instead of starting the thread.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.types import Box, TrackResult, TrackState, validate_box

# Least share of a set_target box's area that must lie inside the image.
MIN_BOX_INSIDE = 0.5


class SkipFrameError(Exception):
    """Raised by a ``decode`` callback for a frame to drop silently (it reported why itself)."""


@dataclasses.dataclass
class Frame:
    """One received image: the raw message, converted lazily (most frames are never used)."""

    stamp: int  # the image's header stamp, integer nanoseconds
    msg: Any
    received: float  # worker clock, seconds
    bgr: np.ndarray | None = None


@dataclasses.dataclass
class Snapshot:
    """A consistent copy of the worker's state for diagnostics (no live references)."""

    ids: list[str]
    results: dict[str, TrackResult]  # last result of each current target
    received: int
    dropped: int
    rate_hz: float
    latencies_s: list[float]
    tracker_s: list[float]
    level: str  # ok | warn | error
    message: str


def check_request_box(box: Any, image_size: tuple[int, int]) -> Box:
    """An initial ``(x, y, w, h)`` box (pixels) checked for a ``(width, height)`` image.

    Beyond :func:`~meta_tracker_ros.core.types.validate_box` (four finite numbers, positive
    size, some overlap), at least :data:`MIN_BOX_INSIDE` of the box's area must lie inside the
    image: a box mostly outside it is a wrong request (a 1e9 px box on a 360x240 image), not a
    target entering the view, and it would cost the node a huge search region. Raises
    ``ValueError`` saying why.
    """
    x, y, w, h = validate_box(box, image_size)
    width, height = image_size
    inside_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, height) - max(y, 0.0))
    share = (inside_w / w) * (inside_h / h)
    if share < MIN_BOX_INSIDE:
        raise ValueError(
            f"box ({x:g}, {y:g}, {w:g}, {h:g}) is mostly outside the {width}x{height} image: "
            f"{share:.1%} of its area inside, at least {MIN_BOX_INSIDE:.0%} needed"
        )
    return (x, y, w, h)


def valid_target_id(raw: Any) -> str:
    """A request's target id, stripped; raises ``ValueError`` for a non-printable or long one."""
    tid = str(raw).strip()
    if len(tid) > 64 or not tid.isprintable():
        raise ValueError("id must be printable and at most 64 characters")
    return tid


# Node-side stages timed by the worker (see TrackerWorker.stage_means_ms): ``wait`` is a
# processed frame's time from its arrival to the start of its processing (the worker was busy
# with the previous one), ``decode`` the message's conversion, ``publish`` the results callback.
# The node adds ``receive`` (stamp to arrival, the transport) when it knows the stamp's clock.
NODE_STAGES = ("wait", "decode", "publish")


def configured_files(config: Any) -> str:
    """`` [files: name=path, ...]`` for the non-empty path parameters of ``config`` ('' if none)."""
    try:
        flat = config.flat()
    except Exception:
        return ""
    files = [
        f"{k}={v}"
        for k, v in flat.items()
        if isinstance(v, str) and v and k.endswith(("weights", "_path", "_dir"))
    ]
    return f" [files: {', '.join(files)}]" if files else ""


def _noop(*_: Any) -> None:
    return None


class TrackerWorker:
    """Owns the tracker and its thread; see the module docstring.

    Args:
        factory: ``TrackerConfig -> tracker`` (``ids``, ``add``, ``remove``, ``track``,
            ``reconfigure``), called on the worker thread.
        config: the tracker configuration.
        settings: a :class:`~meta_tracker_ros.ros.params.NodeConfig`, read live
            (``lost_timeout``, ``frame_ring_length``, ``stamp_tolerance``, ``max_targets``).
        decode: message -> HxWx3 uint8 BGR image; may raise :class:`SkipFrameError`.
        on_results: ``(frame, image, {id: result})`` after each processed frame (results may be
            empty when only ``want_image`` asked for the image).
        on_lost: ``(last processed frame, {id: LOST result})``, once per image stop.
        want_image: whether to decode frames even without targets (a debug image listener).
        log: ``(level, text)`` with level ``info`` | ``warning`` | ``error``.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        factory: Callable[[TrackerConfig], Any],
        config: TrackerConfig,
        settings: Any,
        decode: Callable[[Any], np.ndarray],
        on_results: Callable[[Frame, np.ndarray, dict[str, TrackResult]], None] = _noop,
        on_lost: Callable[[Frame, dict[str, TrackResult]], None] = _noop,
        want_image: Callable[[], bool] = lambda: False,
        log: Callable[[str, str], None] = _noop,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.config = config
        self.settings = settings
        self._decode, self._on_results, self._on_lost = decode, on_results, on_lost
        self._want_image, self._log, self._clock = want_image, log, clock
        self.tracker: Any = None
        self.tracker_error = ""
        self.ready = threading.Event()  # set once the tracker exists (or failed to)

        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._ring: deque[Frame] = deque(maxlen=int(settings.frame_ring_length))
        self._arrivals: deque[float] = deque(maxlen=16)  # recent arrival times: the frame period
        self._commands: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_id = 1
        self._last_warn: dict[str, float] = {}

        # Written by the worker thread, read by others under the lock.
        self._ids: list[str] = []
        self._results: dict[str, TrackResult] = {}
        self._target_size: tuple[int, int] | None = None  # (h, w) the targets were set on
        self._last_frame: Frame | None = None  # last processed (or first added-on) frame
        self._last_receive = 0.0
        self._last_added = 0.0  # clock at the end of the latest target initialisation
        self._lost_reported = False
        self._received = 0
        self._dropped = 0
        self._processed: deque[float] = deque(maxlen=120)
        self._latencies: deque[float] = deque(maxlen=300)
        self._tracker_s: deque[float] = deque(maxlen=120)
        # Node-side stages around the tracker (decode = image conversion, publish = results
        # callback: message building and publishing), for the per-stage diagnostics.
        self._node_s: dict[str, deque[float]] = {
            k: deque(maxlen=120) for k in (*NODE_STAGES, "receive")
        }

    # ================================================================== life cycle
    def start(self) -> None:
        """Create the tracker and run the loop on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="tracker_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then the tracker's own resources (a tracker process, if any)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        close = getattr(self.tracker, "close", None)
        if callable(close):
            close()

    def build(self) -> None:
        """Create the tracker (on the worker thread in :meth:`start`); errors are kept.

        The kept error names the configured files (weights, ONNX, engine cache): the library
        that failed to read one (a corrupt ``.pth`` raises an unpickling error) often does not.
        """
        try:
            self.tracker = self.factory(self.config)
        except Exception as exc:
            self.tracker_error = (
                f"{type(exc).__name__}: {str(exc)[:500]}{configured_files(self.config)}"
            )
            self._log("error", f"could not create the tracker: {self.tracker_error}")
        self.ready.set()

    def _run(self) -> None:
        self.build()
        while not self._stop.is_set():
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            try:
                self.step()
            except Exception as exc:  # a failing callback must not end the worker
                self.warn_throttled("step", f"worker step failed: {type(exc).__name__}: {exc}")

    def step(self) -> None:
        """One loop iteration: queued commands, then the newest frame or the LOST check."""
        self._run_commands()
        wait = self.next_frame_wait()
        if wait > 0.0:
            self._wait_for_newer(wait)
        with self._lock:
            entry, self._latest = self._latest, None
        if entry is None:
            self.check_timeout()
            return
        try:
            self._process(entry)
        except SkipFrameError:
            pass
        except Exception as exc:  # one bad frame must not end the worker
            self.warn_throttled("process", f"frame skipped: {type(exc).__name__}: {exc}")
            self._sync_ids()  # a restarted tracker process has no targets left

    def next_frame_wait(self) -> float:
        """Seconds worth waiting for the next frame instead of tracking the pending one (0: none).

        Why: the worker takes the newest frame when it becomes free, and that frame has been
        waiting for anything up to one frame period. When the tracker's step is close to a
        multiple of the camera period the phase stays put, so a run can see every result one
        period older than it needs to be. If the next frame is due (from the median of the
        recent arrival gaps) within ``settings.next_frame_wait`` and a third of the period,
        tracking it instead gives a result that describes an image at least two thirds of a
        period fresher, at the cost of that wait in this step. Only while targets are
        tracked; 0 when the setting is 0.
        """
        limit = float(getattr(self.settings, "next_frame_wait", 0.0))
        if limit <= 0.0:
            return 0.0
        with self._lock:
            entry, arrivals, tracking = self._latest, list(self._arrivals), bool(self._ids)
        if entry is None or not tracking or len(arrivals) < 5:
            return 0.0
        gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
        period = gaps[len(gaps) // 2]
        due = entry.received + period - self._clock()
        # A third of the period at most: waiting must buy at least twice its length.
        if not 0.0 < due <= min(limit, period / 3.0):
            return 0.0
        return due + 0.25 * limit  # the next arrival's jitter

    def _wait_for_newer(self, timeout: float) -> None:
        """Block until a frame newer than the pending one arrives (or a command, or timeout)."""
        with self._lock:
            pending = self._latest
            self._wake.clear()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._latest is not pending or not self._commands.empty():
                    return
            left = deadline - time.monotonic()
            if left <= 0.0 or self._stop.is_set():
                return
            self._wake.wait(left)
            self._wake.clear()

    # ================================================================== inputs
    def push_frame(self, stamp: int, msg: Any, receive_s: float | None = None) -> None:
        """Keep ``msg`` (stamp in ns) as the newest frame and in the ring; wake the worker.

        ``receive_s``: the message's delay from its stamp to this call, when the caller can
        tell (the node, for stamps on its own clock); kept as the ``receive`` stage.
        """
        frame = Frame(stamp, msg, self._clock())
        with self._lock:
            if receive_s is not None and 0.0 <= receive_s < 60.0:
                self._node_s["receive"].append(receive_s)
            if self._latest is not None:
                self._dropped += 1
            self._latest = frame
            self._arrivals.append(frame.received)
            self._ring.append(frame)
            self._received += 1
            self._last_receive = frame.received
        self._wake.set()

    def set_ring_length(self, length: int) -> None:
        with self._lock:
            self._ring = deque(self._ring, maxlen=int(length))

    def note_latency(self, seconds: float) -> None:
        """Record one image-to-result latency (the node measures it on the ROS clock)."""
        with self._lock:
            self._latencies.append(seconds)

    # ================================================================== requests
    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def new_target_id(self) -> str:
        """A free ``target_<n>`` id for a request without one."""
        with self._lock:
            while f"target_{self._next_id}" in self._ids:
                self._next_id += 1
            tid = f"target_{self._next_id}"
            self._next_id += 1
        return tid

    def frame_for(self, stamp: int, source: str = "image") -> Frame:
        """The ring frame whose stamp (ns) matches ``stamp`` (0: the newest), or a clear error."""
        with self._lock:
            ring = list(self._ring)
            maxlen = self._ring.maxlen
        if not ring:
            raise ValueError(f"no image received yet on '{source}'; publish images first")
        if stamp == 0:
            return ring[-1]
        best = min(ring, key=lambda f: abs(f.stamp - stamp))
        if abs(best.stamp - stamp) <= int(self.settings.stamp_tolerance * 1e9):
            return best
        oldest, newest = ring[0].stamp, ring[-1].stamp
        if stamp < oldest:
            raise ValueError(
                f"stamp {stamp / 1e9:.3f} is too old: the oldest kept frame is "
                f"{oldest / 1e9:.3f} ({(oldest - stamp) / 1e9:.2f} s newer; the ring keeps "
                f"frame_ring_length={maxlen} frames)"
            )
        if stamp > newest:
            raise ValueError(
                f"no image with stamp {stamp / 1e9:.3f} yet (newest is {newest / 1e9:.3f})"
            )
        raise ValueError(
            f"no kept frame has stamp {stamp / 1e9:.3f} (nearest differs by "
            f"{abs(best.stamp - stamp) / 1e6:.1f} ms > stamp_tolerance)"
        )

    def image(self, frame: Frame) -> np.ndarray:
        """``frame`` decoded once (cached); raises ``ValueError`` for an image under 2x2 px."""
        if frame.bgr is None:
            bgr = self._decode(frame.msg)
            if bgr.ndim < 2 or bgr.shape[0] < 2 or bgr.shape[1] < 2:
                raise ValueError(f"image too small ({bgr.shape[1]}x{bgr.shape[0]})")
            frame.bgr = bgr
        return frame.bgr

    def request_add(
        self,
        raw_id: Any,
        stamp: int,
        box: Any,
        mask: np.ndarray | None,
        timeout: float,
        source: str = "image",
    ) -> tuple[str, str]:
        """A ``set_target`` request, checked and run: returns ``(id, message)``.

        Waits at most ``timeout`` s each for the tracker to exist and for the initialisation
        (after that the answer says it is still running). Raises ``ValueError`` with the reason
        for a request it refuses: a bad id, no frame for ``stamp`` (ns, 0 = newest; ``source``
        names the topic in the message), a box refused by :func:`check_request_box`, a mask of
        another size than the image, more than ``settings.max_targets`` targets.
        """
        tid = valid_target_id(raw_id) or self.new_target_id()
        if not self.ready.wait(timeout=timeout):
            raise ValueError("tracker is still starting (backbone loading); retry shortly")
        if self.tracker is None:
            raise ValueError(f"tracker unavailable: {self.tracker_error}")
        entry = self.frame_for(stamp, source)
        image = self.image(entry)
        height, width = image.shape[:2]
        checked = check_request_box(box, (width, height))
        if mask is not None and mask.shape[:2] != (height, width):
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
        known = self.ids()
        limit = int(self.settings.max_targets)
        if tid not in known and len(known) >= limit:
            raise ValueError(
                f"already tracking max_targets={limit} targets; remove one first or raise "
                "max_targets"
            )
        future = self.add(tid, image, checked, mask, entry)
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            return tid, f"'{tid}' accepted; initialisation still running"
        return tid, f"tracking '{tid}' from box {tuple(round(v, 1) for v in checked)}"

    def request_remove(self, raw_id: Any, timeout: float) -> str:
        """A ``remove_target`` request ('' = all): the answer; ``ValueError`` for an unknown id."""
        tid = str(raw_id).strip()
        known = self.ids()
        if tid and tid not in known:
            raise ValueError(f"no target '{tid}' (tracking: {known or 'none'})")
        try:
            self.remove(tid).result(timeout=timeout)
        except FutureTimeout:
            return "removal queued"
        return f"removed '{tid}'" if tid else f"removed all ({len(known)})"

    def add(
        self, tid: str, image: np.ndarray, box: Box, mask: np.ndarray | None, frame: Frame
    ) -> Future:
        return self._submit("add", tid, image, box, mask, frame)

    def remove(self, tid: str) -> Future:
        """Remove target ``tid`` ('' = all)."""
        return self._submit("remove", tid)

    def reconfigure(self, config: TrackerConfig) -> Future:
        """Hand ``config`` to the tracker (the core decides whether it rebuilds).

        :attr:`config` becomes ``config`` only once the tracker took it: a failed rebuild leaves
        tracker and config as they were, and the future holds the exception.
        """
        return self._submit("reconfigure", config)

    def _submit(self, kind: str, *args: Any) -> Future:
        future: Future = Future()
        self._commands.put((kind, args, future))
        self._wake.set()
        return future

    # ================================================================== worker side
    def _run_commands(self) -> None:
        while True:
            try:
                kind, args, future = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if self.tracker is None and kind != "reconfigure":
                    raise RuntimeError(f"tracker unavailable: {self.tracker_error}")
                getattr(self, f"_do_{kind}")(*args)
                self._sync_ids()
                future.set_result(True)
            except Exception as exc:
                self._log("error", f"{kind} failed: {type(exc).__name__}: {exc}")
                future.set_exception(exc)

    def _sync_ids(self) -> None:
        """Take the tracker's ids (after a command, or after a tracker process restarted)."""
        ids = [str(t) for t in self.tracker.ids] if self.tracker is not None else []
        with self._lock:
            self._ids = ids
            if not ids:
                self._target_size = None  # new targets may come at another size
            self._results = {k: v for k, v in self._results.items() if k in ids}

    def _do_add(self, tid: str, image: np.ndarray, box: Box, mask: Any, frame: Frame) -> None:
        self.tracker.add(tid, image, box, mask)
        with self._lock:
            self._last_added = self._clock()  # restarts the images-stopped clock
            self._target_size = image.shape[:2]
            self._results[tid] = TrackResult(box, 1.0, TrackState.INITIALIZING)
            self._last_frame = self._last_frame or frame

    def _do_remove(self, tid: str) -> None:
        for t in [tid] if tid else list(self.tracker.ids):
            if t in self.tracker.ids:
                self.tracker.remove(t)

    def _do_reconfigure(self, config: TrackerConfig) -> None:
        if self.tracker is None:  # a corrected parameter recovers a tracker that failed to build
            self.tracker = self.factory(config)
            self.tracker_error, self.config = "", config
            self._log("info", "tracker created with the new parameters")
            return
        with self._lock:
            newest = self._ring[-1] if self._ring else None
        image = None
        if newest is not None and self.tracker.ids:
            try:
                image = self.image(newest)
            except Exception as exc:
                self._log("warning", f"newest frame unusable for re-initialisation: {exc}")
        dropped = self.tracker.reconfigure(config, image) or {}
        self.config = config
        for tid, reason in dropped.items():
            self._log("warning", f"target '{tid}' dropped by the rebuild: {reason}")

    def _process(self, entry: Frame) -> None:
        ids = list(self.tracker.ids) if self.tracker is not None else []
        with self._lock:
            self._lost_reported = False
        if not ids and not self._want_image():
            return  # nothing to track: do not even decode the frame
        waited = max(0.0, self._clock() - entry.received)
        t0 = time.perf_counter()
        image = self.image(entry)
        decoded = time.perf_counter() - t0
        if ids and self._target_size not in (None, image.shape[:2]):
            h, w = self._target_size or (0, 0)
            self.warn_throttled(
                "size",
                f"{image.shape[1]}x{image.shape[0]} frame skipped: targets were set on "
                f"{w}x{h} images (set them again after a resolution change)",
            )
            return
        t0 = time.perf_counter()
        results = {str(k): v for k, v in self.tracker.track(image).items()} if ids else {}
        elapsed = time.perf_counter() - t0
        with self._lock:
            self._tracker_s.append(elapsed)
            self._results.update({k: v for k, v in results.items() if k in self._ids})
            self._processed.append(self._clock())
            self._last_frame = entry
        t0 = time.perf_counter()
        self._on_results(entry, image, results)
        with self._lock:
            self._node_s["wait"].append(waited)
            self._node_s["decode"].append(decoded)
            self._node_s["publish"].append(time.perf_counter() - t0)

    # ================================================================== images stopping
    def images_stale(self) -> bool:
        """Whether images have stopped: none for ``lost_timeout`` s on the staleness clock.

        The clock counts from the later of the last image received and the end of the last
        target initialisation. An initialisation takes the worker off the images for a while
        (hundreds of ms, seconds on a loaded CPU); counting from the last image alone would call
        that pause "images stopped" and report a target LOST before it saw a second frame.
        """
        with self._lock:
            since = max(self._last_receive, self._last_added)
        return since > 0.0 and self._clock() - since >= self.settings.lost_timeout

    def check_timeout(self) -> dict[str, TrackResult]:
        """Report the tracked targets LOST once images stop (see :meth:`images_stale`).

        One report per stop (the next processed image re-arms it), through ``on_lost`` with the
        last processed frame (the node takes its ``frame_id``) and every target with a tracking
        result, state LOST, score 0, no mask, at its last known box. Targets still INITIALIZING
        (added but not yet tracked on any image) have no result to go stale and are never
        reported LOST. Returns the reported results (empty when nothing was reported).
        """
        if self._lost_reported or not self.images_stale():
            return {}
        with self._lock:
            self._lost_reported = True
            last = self._last_frame
            lost = {
                tid: dataclasses.replace(r, state=TrackState.LOST, mask=None, score=0.0)
                for tid, r in self._results.items()
                if tid in self._ids and r.state != TrackState.INITIALIZING
            }
            if not lost or last is None:
                return {}
            self._results.update(lost)
        self._log(
            "warning",
            f"no image for {self.settings.lost_timeout:g} s: reporting {len(lost)} target(s) LOST",
        )
        self._on_lost(last, lost)
        return lost

    # ================================================================== diagnostics
    def rate(self) -> float:
        """Frames processed per second over the last ones (0 when none for 2 s)."""
        with self._lock:
            times = list(self._processed)
        if len(times) < 2 or self._clock() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / max(1e-6, times[-1] - times[0])

    def stage_means_ms(self) -> dict[str, float]:
        """Mean ms per processed frame of the node stages and the tracker's own stages.

        Node: ``decode`` (message to BGR array), ``publish`` (results callback). Tracker: its
        ``times.means_ms()`` (core/timing.py) when it keeps one, keys prefixed ``core_``.
        """
        with self._lock:
            node = {k: list(v) for k, v in self._node_s.items()}
        out = {k: 1000.0 * sum(v) / len(v) for k, v in node.items() if v}
        times = getattr(self.tracker, "times", None)
        if times is not None and hasattr(times, "means_ms"):
            out.update({f"core_{k}": v for k, v in times.means_ms().items()})
        return out

    def snapshot(self) -> Snapshot:
        """Copies of ids, results and statistics, plus a health level and message."""
        with self._lock:
            ids = list(self._ids)
            results = {k: v for k, v in self._results.items() if k in ids}
            received, dropped = self._received, self._dropped
            latencies, tracker_s = list(self._latencies), list(self._tracker_s)
        tracked = any(r.state != TrackState.INITIALIZING for r in results.values())
        if self.tracker is None and self.ready.is_set():
            level, message = "error", self.tracker_error
        elif tracked and self.images_stale():
            level, message = "warn", "no images: targets LOST"
        elif any(r.state == TrackState.LOST for r in results.values()):
            level, message = "warn", "target(s) lost"
        else:
            level = "ok"
            message = f"tracking {len(results)} target(s)" if results else "idle"
        return Snapshot(
            ids, results, received, dropped, self.rate(), latencies, tracker_s, level, message
        )

    def warn_throttled(self, key: str, text: str, period: float = 5.0) -> None:
        now = self._clock()
        if now - self._last_warn.get(key, -math.inf) >= period:
            self._last_warn[key] = now
            self._log("warning", text)

"""A multi-target tracker in a child process: the same calls, its own interpreter lock.

Why: in ``tracker_node`` the tracker would otherwise share one Python interpreter lock (GIL)
with the node's executor and worker: between library calls (a few hundred per frame: crops,
small convolutions, numpy on score maps) the tracker holds the GIL while the executor waits for
it to take each image, answer services and publish, and the other way round. A child process has
its own interpreter and GIL, and the operating system runs the two on different cores. Measured
(``latency_bench``, docs/speed.md "Fourth round"): with rclpy's multi-threaded executor, 4
targets p50 116-142 ms against 128-152 ms in a thread; with the single-threaded executor now
used, never slower for several targets and 2-3 ms dearer for one. It also keeps torch out of
the node's process (half its memory) and turns a crash in a runtime's native code into a lost
set of targets instead of a dead node.

:class:`TrackerProcess` offers what the node's worker uses of a
:class:`~meta_tracker_ros.core.multi.MultiTracker` (``ids``, ``add``, ``remove``, ``track``,
``reconfigure``, ``times``, ``device``, ``config``) and runs each call in the child, one at a
time. Frames go through a memory-mapped file in ``/dev/shm`` (one copy in, one copy out; a
640x360 frame is 0.7 MB, too much to pickle through a pipe at 30 Hz); commands, results and
exceptions go through a pipe. Masks come back as their non-zero rectangle and are pasted into a
full frame here. The child is a fresh interpreter (``python -m`` this module, given one end of a
socket pair), never a ``fork``: the node's process holds DDS threads and locks that a forked
child would inherit half-taken, and multiprocessing's ``spawn`` would re-run the caller's main
script in the child.

If the child dies (killed, out of memory), the call that noticed raises
:class:`TrackerProcessError` after starting a new child with the same configuration: the
targets are gone and the caller sees ``ids`` empty. The child exits by itself when the parent's
end of the pipe closes, so a killed node leaves no orphan tracker behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Hashable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from meta_tracker_ros.core.config import TrackerConfig, load_config
from meta_tracker_ros.core.timing import StageTimes
from meta_tracker_ros.core.types import Box, TrackResult, validate_frame

# Where frames are shared: a RAM-backed file system when there is one.
SHM_DIR = Path("/dev/shm")


class TrackerProcessError(RuntimeError):
    """The tracker's child process ended during a call (a new one was started)."""


# ====================================================================== frames and masks
def _frame_dir() -> str:
    if SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK):
        return str(SHM_DIR)
    return tempfile.gettempdir()


class FrameChannel:
    """The parent's side of the shared frame: a memory-mapped file, new when the shape changes."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._array: np.ndarray | None = None

    def write(self, frame: np.ndarray) -> tuple[str, tuple[int, ...]]:
        """Copy ``frame`` (uint8) into the file; returns what the child needs to read it."""
        if self._array is None or self._array.shape != frame.shape:
            self.close()
            fd, path = tempfile.mkstemp(prefix="meta_tracker_frame_", dir=_frame_dir())
            try:
                os.ftruncate(fd, max(1, frame.nbytes))
            finally:
                os.close(fd)
            self.path = path
            self._array = np.memmap(path, np.uint8, "r+", shape=frame.shape)
        np.copyto(self._array, frame, casting="no")
        return self.path, tuple(frame.shape)

    def close(self) -> None:
        """Drop the mapping and remove the file (a mapping in the child stays valid)."""
        self._array = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


class FrameReader:
    """The child's side: maps the parent's file and returns a private copy of the frame."""

    def __init__(self) -> None:
        self._key: tuple[str, tuple[int, ...]] | None = None
        self._array: np.ndarray | None = None

    def read(self, ref: tuple[str, tuple[int, ...]]) -> np.ndarray:
        path, shape = ref[0], tuple(ref[1])
        if self._key != (path, shape):
            self._array = np.memmap(path, np.uint8, "r", shape=shape)
            self._key = (path, shape)
            # Both sides have it mapped now: the name can go, so a parent killed without a
            # chance to clean up leaves nothing behind in /dev/shm.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        assert self._array is not None
        # A copy: the tracker may keep views of the frame past the call, and the parent
        # writes the next frame into the same file.
        return np.array(self._array)


def pack_mask(mask: np.ndarray | None) -> Any:
    """A full-frame mask as ``(shape, y0, x0, rectangle)``: only its non-zero part travels."""
    if mask is None:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (mask.shape, 0, 0, np.zeros((0, 0), mask.dtype))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (mask.shape, y0, x0, np.ascontiguousarray(mask[y0:y1, x0:x1]))


def unpack_mask(packed: Any) -> np.ndarray | None:
    """The full-frame mask back from :func:`pack_mask`."""
    if packed is None:
        return None
    shape, y0, x0, rect = packed
    mask = np.zeros(shape, rect.dtype)
    mask[y0 : y0 + rect.shape[0], x0 : x0 + rect.shape[1]] = rect
    return mask


# ====================================================================== the child
def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its type and text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def serve(conn: Any, config: TrackerConfig) -> None:
    """The child's loop: build the tracker, then answer ``(op, args)`` until told or orphaned.

    Each reply is ``(status, value, ids, frame_times)``: status ``ok`` or ``error`` (value is
    then the exception), the ids after the call, and the stage seconds of a ``track`` call.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from meta_tracker_ros.core.multi import MultiTracker

    try:
        tracker = MultiTracker(config)
    except Exception as exc:
        conn.send(("error", _portable(exc), [], None))
        return
    conn.send(("ok", {"device": str(tracker.device)}, [], None))
    frames = FrameReader()
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if op == "close":
            return
        times = None
        try:
            if op == "track":
                out = tracker.track(frames.read(args[0]))
                value = {
                    tid: dataclasses.replace(r, mask=pack_mask(r.mask)) for tid, r in out.items()
                }
                times = tracker.times.latest() if out else None
            elif op == "add":
                tid, ref, box, mask = args
                value = tracker.add(tid, frames.read(ref), box, mask)
            elif op == "remove":
                value = tracker.remove(args[0])
            elif op == "reconfigure":
                new, ref = args
                value = tracker.reconfigure(new, None if ref is None else frames.read(ref))
            else:
                raise ValueError(f"unknown operation {op!r}")
            reply = ("ok", value, list(tracker.ids), times)
        except Exception as exc:
            reply = ("error", _portable(exc), list(tracker.ids), None)
        try:
            conn.send(reply)
        except OSError:
            return  # the parent died during the call


# ====================================================================== the parent
def _stop_child(proc: subprocess.Popen, conn: Connection, frames: FrameChannel) -> None:
    """Ask the child to stop, then make sure it did; remove the frame file."""
    with contextlib.suppress(OSError, ValueError):
        conn.send(("close", ()))
    for stop in (None, proc.terminate, proc.kill):
        if stop is not None:
            stop()
        try:
            proc.wait(timeout=5.0)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(OSError):
        conn.close()
    frames.close()


def _child_env() -> dict[str, str]:
    """The environment for the child: ours, with this package's directory first on the path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _child_main(argv: list[str]) -> int:
    """``python -m meta_tracker_ros.core.tracker_process FD``: serve on the socket ``FD``."""
    conn = Connection(int(argv[1]))
    try:
        config = conn.recv()
    except (EOFError, OSError):
        return 0
    serve(conn, config)
    return 0


class TrackerProcess:
    """A :class:`~meta_tracker_ros.core.multi.MultiTracker` run in a child process.

    Building waits for the child's tracker (backbone loading) and raises its error when that
    fails, as constructing a MultiTracker would. Calls are serialised; ``times`` and
    ``device`` are local copies, safe to read from any thread.
    """

    def __init__(self, config: TrackerConfig | str | None = None) -> None:
        self.config = load_config(config)
        self.times = StageTimes()
        self.device = "unknown"
        self._ids: list[Hashable] = []
        self._lock = threading.Lock()
        self._frames = FrameChannel()
        self._finalizer: Any = None
        self._closed = False
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-m", __spec__.name, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=_child_env(),
            )
        conn = Connection(ours.detach())
        self._conn, self._proc = conn, proc
        self._finalizer = weakref.finalize(self, _stop_child, proc, conn, self._frames)
        try:
            conn.send(self.config)
            status, value, _, _ = conn.recv()
        except (EOFError, OSError) as exc:
            self._finalizer()
            raise TrackerProcessError(
                f"tracker process ended while starting (exit code {proc.returncode})"
            ) from exc
        if status == "error":
            self._finalizer()
            raise value
        self.device = value["device"]
        self._ids = []

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def ids(self) -> list[Hashable]:
        """Ids of the targets the child tracks, as of the last call."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def _ensure_open(self, op: str) -> None:
        """Refuse calls after :meth:`close` (before a frame is written: no file is made)."""
        if self._closed:
            raise TrackerProcessError(f"{op} on a closed tracker process")

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            self._ensure_open(op)
            try:
                self._conn.send((op, args))
                status, value, ids, times = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._finalizer()
                code, lost = self._proc.returncode, list(self._ids)
                self._frames = FrameChannel()
                self._start()
                raise TrackerProcessError(
                    f"tracker process ended during {op} (exit code {code}); a new one was "
                    f"started, targets dropped: {lost or 'none'}"
                ) from exc
            self._ids = list(ids)
            if times is not None:
                self.times.append(times)
        if status == "error":
            raise value
        return value

    def add(
        self, target_id: Hashable, frame: np.ndarray, box: Box, mask: np.ndarray | None = None
    ) -> None:
        """Start tracking ``box`` in ``frame`` (see MultiTracker.add)."""
        self._ensure_open("add")
        frame = validate_frame(frame)  # any layout: the write into the shared file copies it
        self._call("add", target_id, self._frames.write(frame), box, mask)

    def remove(self, target_id: Hashable) -> None:
        """Stop tracking ``target_id``; KeyError if it is unknown (see MultiTracker.remove)."""
        self._call("remove", target_id)

    def track(self, frame: np.ndarray) -> dict[Hashable, TrackResult]:
        """Advance every target by one frame (see MultiTracker.track)."""
        self._ensure_open("track")
        frame = validate_frame(frame)  # any layout: the write into the shared file copies it
        if not self._ids:
            return {}
        out = self._call("track", self._frames.write(frame))
        return {tid: dataclasses.replace(r, mask=unpack_mask(r.mask)) for tid, r in out.items()}

    def reconfigure(
        self, config: TrackerConfig, frame: np.ndarray | None = None
    ) -> dict[Hashable, str]:
        """Apply ``config`` in the child (see MultiTracker.reconfigure); the dropped targets."""
        self._ensure_open("reconfigure")
        ref = None if frame is None else self._frames.write(frame)
        dropped = self._call("reconfigure", config, ref)
        self.config = config
        return dropped

    def close(self) -> None:
        """Stop the child and remove the frame file (also done when this object is collected)."""
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()


def create_tracker_process(config: TrackerConfig | str | None = None) -> TrackerProcess:
    """A multi-target tracker in its own process (see the module docstring)."""
    return TrackerProcess(config)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv))

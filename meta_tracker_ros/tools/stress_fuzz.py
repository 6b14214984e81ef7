"""Fuzz part of the reliability suite: hostile requests and images against a live tracker_node.

Three phases on one node (frames from :mod:`meta_tracker_ros.ros.synthetic` stream at 15 Hz
throughout, so requests race the worker):

1. *requests*: ``n`` hypothesis-generated ``set_target`` / ``remove_target`` calls (NaN, inf,
   huge and negative boxes; empty, printable, non-printable and very long ids; stamps zero,
   current, past, future and random; masks absent, right, wrong-sized, huge, wrong encoding,
   truncated). Generation is derandomized (hypothesis' fixed seed), so every run sends the same
   requests. Each must be answered; the suite keeps a model of the accepted ids (successful
   set_target adds its returned id, successful remove_target removes) and checks it against the
   ids the node reports at the end.
2. *storm*: several client nodes at once, each setting and removing ids of its own namespace
   (so each client's model is exact whatever order the node serves them in).
3. *images*: hostile images on the image topic (zero-size, 1x1, 8000x8000, truncated data, step
   mismatches, every sensor_msgs encoding, big-endian flags); each is followed by a
   ``set_target`` naming its stamp (the decode path runs in the service thread) and by a normal
   frame that must still be tracked.

The node must stay up, answer everything and log no exception.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from meta_tracker_ros.tools.stress import Rig, Summary, bad_log_lines

WIDTH, HEIGHT = 320, 180
MAX_TARGETS = 4

# Every encoding named in sensor_msgs/image_encodings.hpp, plus garbage.
ENCODINGS = [
    "rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16", "mono8", "mono16",
    *[f"{d}C{c}" for d in ("8U", "8S", "16U", "16S", "32S", "32F", "64F") for c in (1, 2, 3, 4)],
    "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
    "bayer_rggb16", "bayer_bggr16", "bayer_gbrg16", "bayer_grbg16",
    "yuv422", "yuv422_yuy2", "uyvy", "yuyv", "nv21", "nv24",
    "", "BGR8", "jpeg", "\x00\x01", "x" * 300,
]  # fmt: skip


def raw_image(width: int, height: int, encoding: str, step: int, data: bytes, big: int = 0):
    """A sensor_msgs/Image with exactly these (possibly inconsistent) fields."""
    from sensor_msgs.msg import Image

    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=big, step=step)
    msg.data = data
    return msg


def hostile_images(quick: bool) -> list[tuple[str, Any]]:
    """``(label, Image)`` cases; the 8000x8000 frame (192 MB) is sent once, not in --quick."""
    rng = np.random.default_rng(0)
    out: list[tuple[str, Any]] = [
        ("zero-size", raw_image(0, 0, "bgr8", 0, b"")),
        ("zero-width", raw_image(0, 10, "bgr8", 0, b"")),
        ("1x1", raw_image(1, 1, "bgr8", 3, b"\x00\x00\x00")),
        ("2x2", raw_image(2, 2, "bgr8", 6, bytes(12))),
        ("truncated", raw_image(WIDTH, HEIGHT, "bgr8", WIDTH * 3, bytes(100))),
        ("no data", raw_image(WIDTH, HEIGHT, "bgr8", WIDTH * 3, b"")),
        ("step too small", raw_image(WIDTH, HEIGHT, "bgr8", WIDTH, bytes(WIDTH * HEIGHT * 3))),
        ("step huge", raw_image(WIDTH, HEIGHT, "bgr8", 2**31 - 1, bytes(WIDTH * HEIGHT * 3))),
        ("step 0", raw_image(WIDTH, HEIGHT, "bgr8", 0, bytes(WIDTH * HEIGHT * 3))),
        ("huge dims, no data", raw_image(2**31 - 1, 2**31 - 1, "bgr8", 2**32 - 1, b"")),
        ("other size", raw_image(64, 48, "bgr8", 64 * 3, rng.bytes(64 * 48 * 3))),
    ]
    for enc in ENCODINGS:
        for big in (0,) if quick else (0, 1):
            data = rng.bytes(WIDTH * HEIGHT * 4)
            out.append(
                (
                    f"encoding {enc[:12]!r} big={big}",
                    raw_image(WIDTH, HEIGHT, enc, WIDTH * 4, data, big),
                )
            )
    size = 2000 if quick else 8000
    out.append((f"{size}x{size}", raw_image(size, size, "bgr8", size * 3, bytes(size * size * 3))))
    return out


def _mask(kind: str, box: tuple, stamp_msg: Any = None) -> Any:
    from meta_tracker_ros.ros import conversions as conv

    if kind == "none":
        return None
    if kind == "ok":
        m = np.zeros((HEIGHT, WIDTH), np.uint8)
        x, y, w, h = (int(v) if np.isfinite(v) and abs(v) < 1e6 else 0 for v in box)
        m[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = 255
        return conv.mask_to_image(m)
    if kind == "small":
        return conv.mask_to_image(np.ones((5, 7), np.uint8))
    if kind == "huge":
        return conv.mask_to_image(np.ones((3000, 3000), np.uint8))
    if kind == "rgb":
        return conv.bgr_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    if kind == "truncated":
        return raw_image(WIDTH, HEIGHT, "mono8", WIDTH, bytes(10))
    if kind == "16UC1":
        return raw_image(WIDTH, HEIGHT, "16UC1", WIDTH * 2, bytes(WIDTH * HEIGHT * 2))
    return raw_image(0, 0, "mono8", 0, b"")  # "empty-declared": a zero-size mask


class Streamer:
    """Publishes synthetic frames at ``rate`` Hz on a thread; remembers the stamps."""

    def __init__(self, rig: Rig, rate: float = 15.0) -> None:
        from meta_tracker_ros.ros import conversions as conv
        from meta_tracker_ros.ros import synthetic

        clip = list(synthetic.clip(n_frames=60, width=WIDTH, height=HEIGHT))
        self.msgs = [conv.bgr_to_image(c[0]) for c in clip]
        self.boxes = [c[1] for c in clip]
        self.rig, self.rate = rig, rate
        self.stamps: list[int] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(1.0 / self.rate):
            stamp = self.rig.publish(self.msgs[i % len(self.msgs)])
            with self.lock:
                self.stamps.append(stamp)
            i += 1

    def latest(self) -> int:
        with self.lock:
            return self.stamps[-1] if self.stamps else 0

    def start(self) -> Streamer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Model:
    """The ids the node should track, from the answers it gave (thread-safe)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.lock = threading.Lock()
        self.accepted = 0  # successful answers

    def apply(self, op: str, tid: str, res: Any) -> None:
        if res is None or not res.success:
            return
        with self.lock:
            self.accepted += 1
            if op == "set":
                self.ids.add(res.id)
            elif tid.strip():
                self.ids.discard(tid.strip())
            else:
                self.ids.clear()


def _requests(summary: Summary, rig: Rig, stream: Streamer, model: Model, n: int) -> None:
    """Phase 1: ``n`` derandomized hypothesis requests, answered and applied to the model."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    hostile = st.sampled_from(
        [float("nan"), float("inf"), -float("inf"), 1e9, -1e9, 1e308, -1e308, 0.0, -0.0, 5e-324]
    )
    coord = st.one_of(st.floats(-WIDTH, 2 * WIDTH, allow_nan=False), hostile)
    good = st.builds(
        lambda x, y, w, h: (x, y, w, h),
        st.floats(0, WIDTH - 40),
        st.floats(0, HEIGHT - 40),
        st.floats(8, 40),
        st.floats(8, 40),
    )
    box = st.one_of(good, good, st.tuples(coord, coord, coord, coord))
    long_id = st.builds(lambda c, k: c * k, st.characters(), st.integers(65, 20000))
    tid = st.one_of(
        st.just(""),
        st.sampled_from(["a", "b", "c", "d", " a ", "target_1"]),
        st.text(max_size=70),
        st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=4),
        long_id,
    )
    stamp = st.sampled_from(["latest", "latest", "zero", "past", "future", "random", "max"])
    mask = st.sampled_from(
        ["none", "none", "none", "ok", "small", "huge", "rgb", "truncated", "16UC1", "empty"]
    )
    op = st.sampled_from(["set"] * 6 + ["remove"] * 3 + ["remove_all"])

    def stamp_ns(kind: str, rnd: int) -> int:
        latest = stream.latest()
        return {
            "latest": latest,
            "zero": 0,
            "past": max(1, latest - 3600 * 10**9),
            "future": latest + 10**9,
            "random": rnd,
            "max": (2**31 - 1) * 10**9 + 999_999_999,
        }[kind]

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(op, tid, box, stamp, st.integers(0, 2**62), mask)
    def one(op_: str, tid_: str, box_: tuple, stamp_: str, rnd: int, mask_: str) -> None:
        summary.requests += 1
        if op_ == "set":
            res = rig.set_target(box_, stamp_ns(stamp_, rnd), tid_, mask=_mask(mask_, box_))
        else:
            res = rig.remove("" if op_ == "remove_all" else tid_)
        if res is None:
            summary.unanswered += 1
        model.apply(op_, "" if op_ == "remove_all" else tid_, res)
        done[0] += 1
        if done[0] % every == 0 and model.ids:  # the state mid-way, while targets exist
            _check_state(summary, rig, model, f"requests ({done[0]})")

    done, every = [0], max(50, n // 6)
    one()


def _storm(summary: Summary, rig: Rig, stream: Streamer, model: Model, per_client: int) -> None:
    """Phase 2: every client node sets/removes ids of its own namespace, all at once."""

    def client(k: int) -> None:
        rng = random.Random(1000 + k)
        for _ in range(per_client):
            tid = f"c{k}_{rng.randrange(2)}"
            if rng.random() < 0.55:
                x, y = rng.uniform(0, WIDTH - 40), rng.uniform(0, HEIGHT - 40)
                res = rig.set_target((x, y, 30, 30), stream.latest(), tid, client=k)
                op = "set"
            else:
                res, op = rig.remove(tid, client=k), "remove"
            with model.lock:
                summary.requests += 1
                summary.unanswered += res is None
            model.apply(op, tid, res)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(rig.nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _check_state(summary: Summary, rig: Rig, model: Model, what: str) -> None:
    """The ids the node reports (diagnostics, tracks) equal the model's."""
    reported = rig.diag_ids()
    summary.check(
        reported == model.ids,
        f"{what}: node tracks exactly the accepted ids ({sorted(model.ids)} vs {reported}; "
        f"{model.accepted} requests accepted so far)",
    )
    if model.ids and reported is not None:
        msg = rig.track_frame(rig_frame(rig))
        got = {o.id for o in msg.objects} if msg is not None else None
        summary.check(got == model.ids, f"{what}: tracks message ids {got}")


def rig_frame(rig: Rig) -> Any:
    from meta_tracker_ros.ros import conversions as conv
    from meta_tracker_ros.ros import synthetic

    frame = next(iter(synthetic.clip(n_frames=1, width=WIDTH, height=HEIGHT)))[0]
    return conv.bgr_to_image(frame)


def _images(summary: Summary, rig: Rig, quick: bool) -> None:
    """Phase 3: hostile images, each followed by a set_target on its stamp and a good frame."""
    good = rig_frame(rig)
    unanswered0 = summary.unanswered
    for label, msg in hostile_images(quick):
        stamp = rig.publish(msg)
        summary.images_hostile += 1
        summary.requests += 1
        res = rig.set_target((float("nan"), 0, 10, 10), stamp, "img")
        if res is None:
            summary.unanswered += 1
            print(f"  no answer after hostile image {label}", flush=True)
        if not rig.alive():
            break
    out = rig.track_frame(good)
    summary.check(
        out is not None and summary.unanswered == unanswered0,
        "images: every set_target on a hostile image answered; a good frame still tracked",
    )


def run(summary: Summary, n: int, per_client: int, log_dir: Path, quick: bool = False) -> None:
    """All three phases on one node; adds to ``summary``."""
    print(f"fuzz: {n} requests, storm {per_client} x 3 clients, hostile images", flush=True)
    log = log_dir / "fuzz.log"
    rig = Rig(log, ["-p", f"max_targets:={MAX_TARGETS}", "-p", "frame_ring_length:=60"], clients=3)
    model = Model()
    t0 = time.monotonic()
    try:
        if not rig.wait_subscribed():
            raise RuntimeError(f"tracker_node never subscribed; see {log}")
        stream = Streamer(rig).start()
        try:
            ready = rig.set_on_frame(stream.msgs[0], [(40, 40, 30, 30)], prefix="seed")
            model.ids.update(ready)
            _requests(summary, rig, stream, model, n)
            _check_state(summary, rig, model, f"requests ({n})")
            rig.remove("")
            model.ids.clear()
            _storm(summary, rig, stream, model, per_client)
            _check_state(summary, rig, model, "storm")
            summary.frames += len(stream.stamps)
        finally:
            stream.stop()
        rig.set_on_frame(rig_frame(rig), [(100, 60, 40, 40)], prefix="img_target")
        _images(summary, rig, quick)
        alive = rig.alive()
    finally:
        rc = rig.close()
    summary.crashes += 0 if alive else 1
    summary.check(alive and rc == 0, f"fuzz: node up to the end, clean exit (rc={rc})")
    summary.check(
        summary.unanswered == 0, f"fuzz: every request answered ({summary.unanswered} not)"
    )
    bad = bad_log_lines(log)
    summary.check(not bad, f"fuzz: no exception in the log {bad[:3]}")
    print(f"fuzz: {time.monotonic() - t0:.0f} s", flush=True)

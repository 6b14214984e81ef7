"""End-to-end tracking: a real sequence, a target leaving and re-entering, several targets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from meta_tracker_ros.core import TrackerConfig, TrackState, create_multi_tracker, create_tracker
from meta_tracker_ros.core.geometry import iou_xywh

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _config(**overrides) -> TrackerConfig:
    return TrackerConfig().with_overrides({"mask.enabled": False, **overrides})


# ---------------------------------------------------------------------------- synthetic scene
def _smooth_noise(rng, h, w, cells, channels=3):
    small = rng.random((cells, cells * w // h, channels)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _scene(width=320, height=240, size=44, seed=3):
    """Background texture, and a distinctive textured square sprite."""
    rng = np.random.default_rng(seed)
    bg = 0.5 * _smooth_noise(rng, height, width, 6) + 0.5 * _smooth_noise(rng, height, width, 24)
    bg = (np.clip(bg, 0, 1) * 160 + 40).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    sprite = np.zeros((size, size, 3), np.uint8)
    sprite[..., 2] = 200 + 55 * ((xx // 6 + yy // 6) % 2)  # red checker
    sprite[..., 1] = (40 + 150 * ((xx // 11) % 2)).astype(np.uint8)  # green stripes
    sprite[..., 0] = (yy * 255 // size).astype(np.uint8)  # blue ramp
    return bg, sprite


def _render(bg, sprite, x, y):
    frame = bg.copy()
    h, w = sprite.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(frame.shape[1], x + w), min(frame.shape[0], y + h)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
    return frame


def test_lost_when_target_leaves_and_reacquired_when_it_returns():
    bg, sprite = _scene()
    s = sprite.shape[0]
    # Right to out of view (x >= 320), 15 frames outside, back in from the right lower down.
    path = [(40 + 12 * i, 100) for i in range(26)]  # ends at x = 340: fully out
    path += [(400, 100)] * 15
    path += [(330 - 8 * i, 140) for i in range(20)]  # re-enters and stays inside
    tracker = create_tracker(_config())
    tracker.initialize(_render(bg, sprite, *path[0]), (path[0][0], path[0][1], s, s))
    states, ious = [], []
    for x, y in path[1:]:
        result = tracker.track(_render(bg, sprite, x, y))
        states.append(result.state)
        ious.append(iou_xywh(result.box, (x, y, s, s)))
        if result.state == TrackState.TRACKING:
            assert result.score >= tracker.config.localization.uncertain_threshold
    out = states[26:40]
    assert TrackState.LOST in out, f"never LOST while the target was out of view: {out}"
    assert TrackState.TRACKING not in states[30:40], "reported TRACKING on an empty scene"
    back = states[-5:]
    assert all(st == TrackState.TRACKING for st in back), f"not re-acquired: {states[40:]}"
    assert min(ious[-5:]) > 0.5, f"re-acquired box is off: {ious[-5:]}"
    assert np.mean(ious[:15]) > 0.6


# ---------------------------------------------------------------------------- several targets
def test_multi_tracker_two_targets_one_backbone_call_per_frame():
    bg, sprite = _scene(width=360, height=240, size=40)
    sprite2 = np.ascontiguousarray(sprite[:, :, ::-1])  # different colours
    tracker = create_multi_tracker(_config())
    # Batching across targets (CPU torch runs one crop per call: test_trackcore_batching.py).
    tracker.backbone.max_crops_per_call = 0
    calls = []
    original = tracker.backbone.extract

    def counting(images):
        calls.append(images.shape[0])
        return original(images)

    tracker.backbone.extract = counting

    def frame_at(i):
        f = _render(bg, sprite, 30 + 5 * i, 40)
        h = sprite2.shape[0]
        f[150 : 150 + h, 280 - 4 * i : 280 - 4 * i + h] = sprite2
        return f

    tracker.add("a", frame_at(0), (30, 40, 40, 40))
    tracker.add(7, frame_at(0), (280, 150, 40, 40))
    assert tracker.ids == ["a", 7]
    calls.clear()
    for i in range(1, 16):
        results = tracker.track(frame_at(i))
        assert set(results) == {"a", 7}
    assert calls == [2] * 15, f"backbone calls per frame: {calls}"
    assert iou_xywh(results["a"].box, (30 + 5 * 15, 40, 40, 40)) > 0.5
    assert iou_xywh(results[7].box, (280 - 4 * 15, 150, 40, 40)) > 0.5
    tracker.remove("a")
    assert tracker.ids == [7]
    assert set(tracker.track(frame_at(16))) == {7}
    with pytest.raises(KeyError):
        tracker.remove("a")


# ---------------------------------------------------------------------------- real data
@pytest.mark.data
def test_real_sequence_first_60_frames():
    seq = DATA / "boxes" / "Car4_first400"
    if not seq.is_dir():
        pytest.skip(f"shared data not found at {DATA} (needs ../shared/data)")
    gt = np.loadtxt(seq / "groundtruth.txt", delimiter=",")
    gt[:, :2] -= 1  # OTB boxes are 1-based
    images = sorted((seq / "img").glob("*.jpg"))[:60]
    tracker = create_tracker(_config())
    tracker.initialize(cv2.imread(str(images[0])), tuple(gt[0]))
    ious = []
    for i, path in enumerate(images[1:], start=1):
        result = tracker.track(cv2.imread(str(path)))
        ious.append(iou_xywh(result.box, tuple(gt[i])))
    assert np.mean(ious) > 0.65, f"mean IoU {np.mean(ious):.3f}"
    assert min(ious) > 0.3, f"lost the car: min IoU {min(ious):.3f}"


def test_mask_output_follows_config():
    bg, sprite = _scene()
    frames = [_render(bg, sprite, 60 + 4 * i, 90) for i in range(4)]
    box = (60, 90, sprite.shape[1], sprite.shape[0])
    with_mask = create_tracker(TrackerConfig().with_overrides({"mask.enabled": True}))
    with_mask.initialize(frames[0], box)
    without = create_tracker(_config())
    without.initialize(frames[0], box)
    for frame in frames[1:]:
        result = with_mask.track(frame)
        assert result.mask is not None
        assert result.mask.shape == frame.shape[:2] and result.mask.dtype == np.uint8
        assert set(np.unique(result.mask)) <= {0, 255}
        assert without.track(frame).mask is None


def test_box_refiner_changes_the_aspect_and_can_be_switched_off():
    """A target that stretches: the scale filter keeps the first aspect, the refiner does not."""
    bg, sprite = _scene()
    box = (100, 90, sprite.shape[1], sprite.shape[0])
    frames = [bg.copy()]
    frames[0][90 : 90 + 44, 100 : 100 + 44] = sprite
    for i in range(1, 13):  # widen the sprite by 4 px a frame, keep its height
        wide = cv2.resize(sprite, (44 + 4 * i, 44), interpolation=cv2.INTER_LINEAR)
        frames.append(_render(bg, wide, 100 - 2 * i, 90))
    aspects = {}
    for enabled in (True, False):
        tracker = create_tracker(_config(**{"box_refine.enabled": enabled}))
        assert (tracker._multi.box_refiner is not None) == enabled
        tracker.initialize(frames[0], box)
        for frame in frames[1:]:
            result = tracker.track(frame)
        aspects[enabled] = result.box[2] / result.box[3]
        refine_ms = tracker._multi.times.means_ms().get("refine", 0.0)
        assert (refine_ms > 0) == enabled
    assert aspects[False] == pytest.approx(1.0, abs=0.02)
    assert aspects[True] > 1.1, aspects


def test_scale_methods_follow_a_growing_target_and_the_mix_reduces_to_the_filter():
    """A target that grows x1.5 in 12 frames. The DSST filter, the learned head alone and the
    shipped mix all follow most of it; with the head's share at 0 the boxes are the filter's,
    to the bit (the head is kept up to date but not asked)."""
    bg, sprite = _scene()
    box = (100, 90, sprite.shape[1], sprite.shape[0])
    frames = [_render(bg, sprite, 100, 90)]
    for i in range(1, 13):  # grow the sprite by 2 px a side per frame about its centre
        big = cv2.resize(sprite, (44 + 2 * i, 44 + 2 * i), interpolation=cv2.INTER_LINEAR)
        frames.append(_render(bg, big, 100 - i, 90 - i))
    true = np.log(68.0 / 44.0)
    runs = {"dsst": ("dsst", 0.3), "head": ("learned", 1.0), "mix": ("learned", 0.3)}
    runs["zero"] = ("learned", 0.0)
    boxes = {}
    for name, (method, weight) in runs.items():
        tracker = create_tracker(
            _config(**{"scale.method": method, "scale.learned_weight": weight})
        )
        assert (tracker._multi.scale_head is not None) == (method == "learned")
        tracker.initialize(frames[0], box)
        boxes[name] = [tracker.track(frame).box for frame in frames[1:]]
    growth = {k: np.log(np.sqrt(b[-1][2] * b[-1][3]) / 44.0) for k, b in boxes.items()}
    for name in ("dsst", "head", "mix"):
        assert 0.6 * true < growth[name] < 1.2 * true, growth
    assert boxes["zero"] == boxes["dsst"]
    assert boxes["mix"] != boxes["dsst"]
    with pytest.raises(ValueError, match=r"scale\.method"):
        create_tracker(_config(**{"scale.method": "iou-net"}))
    with pytest.raises(ValueError, match=r"scale\.learned_weight"):
        create_tracker(_config(**{"scale.method": "learned", "scale.learned_weight": 1.5}))


@pytest.mark.data
@pytest.mark.parametrize("count", [1, 2])
def test_heads_on_two_threads_give_the_same_tracks(count: int):
    """``runtime.head_threads: 2``: one target's memory update runs in a helper thread beside
    its mask head; with several targets, every second target steps in the helper thread. All
    of it is independent work, so boxes, scores and masks must be identical to one thread."""
    seq = DATA / "boxes" / "Car4_first400"
    if not seq.is_dir():
        pytest.skip(f"shared data not found at {DATA} (needs ../shared/data)")
    gt = np.loadtxt(seq / "groundtruth.txt", delimiter=",")
    gt[:, :2] -= 1
    frames = [cv2.imread(str(p)) for p in sorted((seq / "img").glob("*.jpg"))[:25]]
    boxes = {"car": tuple(gt[0]), "other": (gt[0, 0] + 120, gt[0, 1] - 40, gt[0, 2], gt[0, 3])}
    boxes = dict(list(boxes.items())[:count])
    runs = []
    for threads in (1, 2):
        tracker = create_multi_tracker(
            TrackerConfig().with_overrides({"runtime.head_threads": threads})
        )
        assert (tracker._head_pool is not None) == (threads == 2)
        for tid, box in boxes.items():
            tracker.add(tid, frames[0], box)
        runs.append([tracker.track(f) for f in frames[1:]])
    for one, two in zip(*runs, strict=True):
        assert list(one) == list(two) == list(boxes)
        for tid in boxes:
            assert one[tid].box == two[tid].box and one[tid].score == two[tid].score
            assert np.array_equal(one[tid].mask, two[tid].mask)

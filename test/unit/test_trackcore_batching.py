"""Multi-target batching without padding, and the per-stage timing record (issue 11)."""

from __future__ import annotations

import cv2
import numpy as np

from meta_tracker_ros.core import TrackerConfig, create_multi_tracker
from meta_tracker_ros.core.timing import CORE_STAGES, StageTimes


def _config() -> TrackerConfig:
    # Uncapped crops (search.max_crop_size 0): a wide search gets a larger crop, the case
    # where crops of different sizes meet in one frame.
    return TrackerConfig().with_overrides({"mask.enabled": False, "search.max_crop_size": 0})


def _frames(n: int = 4, width: int = 480, height: int = 320) -> list[np.ndarray]:
    """A smooth random texture drifting right by 3 px a frame (real backbone, real crops)."""
    rng = np.random.default_rng(5)
    small = rng.random((24, 36, 3)).astype(np.float32)
    big = cv2.resize(small, (width + 3 * n, height), interpolation=cv2.INTER_CUBIC)
    big = (np.clip(big, 0, 1) * 200 + 20).astype(np.uint8)
    return [np.ascontiguousarray(big[:, 3 * n - 3 * i : 3 * n - 3 * i + width]) for i in range(n)]


def _tracker_with(targets: dict, frame: np.ndarray, wide: set):
    tracker = create_multi_tracker(_config())
    shapes: list[tuple[int, int]] = []
    original = tracker.backbone.extract

    def recording(images):
        shapes.append((int(images.shape[0]), int(images.shape[-1])))
        return original(images)

    tracker.backbone.extract = recording
    for tid, box in targets.items():
        tracker.add(tid, frame, box)
    for tid in wide:
        tracker._targets[tid].search_area = tracker.config.search.max_search_area
    shapes.clear()
    return tracker, shapes


def test_wide_crop_does_not_pad_the_others():
    """A target searching a wider region gets its own backbone call; the others are unpadded.

    Each target's result with the other present equals its result tracked alone (the padding
    used to change the features of the smaller crops near their border).
    """
    frames = _frames()
    boxes = {"a": (60.0, 80.0, 50.0, 40.0), "b": (300.0, 150.0, 40.0, 50.0)}
    both, shapes = _tracker_with(boxes, frames[0], wide={"b"})
    alone_a, _ = _tracker_with({"a": boxes["a"]}, frames[0], wide=set())
    alone_b, _ = _tracker_with({"b": boxes["b"]}, frames[0], wide={"b"})
    together = both.track(frames[1])
    ra = alone_a.track(frames[1])["a"]
    rb = alone_b.track(frames[1])["b"]
    size = both.config.search.crop_size
    assert sorted(shapes) == [(1, size), (1, 2 * size)], shapes
    np.testing.assert_allclose(together["a"].box, ra.box, atol=1e-3)
    np.testing.assert_allclose(together["b"].box, rb.box, atol=1e-3)
    assert abs(together["a"].score - ra.score) < 1e-4


def test_equal_crops_share_backbone_calls_up_to_the_runtime_limit():
    """One call for equal crops, split where the runtime asks (CPU torch: one crop per call)."""
    frames = _frames()
    boxes = {k: (40.0 + 100 * k, 100.0, 50.0, 50.0) for k in range(3)}
    tracker, shapes = _tracker_with(boxes, frames[0], wide=set())
    size = tracker.config.search.crop_size
    assert tracker.backbone.max_crops_per_call == 1, "CPU torch runs one crop per call"
    batched = tracker.track(frames[1])
    assert shapes == [(1, size)] * 3
    again, _ = _tracker_with(boxes, frames[0], wide=set())
    again.backbone.max_crops_per_call = 0  # any number: one call for all three
    shapes.clear()
    again_shapes: list = []
    original = again.backbone.extract
    again.backbone.extract = lambda im: again_shapes.append(tuple(im.shape[:1])) or original(im)
    single = again.track(frames[1])
    assert again_shapes == [(3,)]
    for k in boxes:
        np.testing.assert_allclose(batched[k].box, single[k].box, atol=1e-3)


def test_stage_times_recorded_per_track_call():
    frames = _frames()
    tracker, _ = _tracker_with({"a": (60.0, 80.0, 50.0, 50.0)}, frames[0], wide=set())
    assert tracker.times.means_ms() == {}
    for f in frames[1:]:
        tracker.track(f)
    means = tracker.times.means_ms()
    assert len(tracker.times) == len(frames) - 1
    assert set(CORE_STAGES) <= set(means)
    assert means["backbone"] > 0 and means["classifier"] > 0 and means["crop"] > 0
    assert tracker.times.quantile_ms("total", 1.0) >= tracker.times.quantile_ms("total", 0.0)
    assert tracker.times.quantile_ms("total", 1.0) >= means["total"] - 1e-9
    named = sum(means[k] for k in CORE_STAGES)
    assert abs(named - means["total"]) < 1e-6 * max(1.0, means["total"]) + 1e-9


def test_stage_times_window_and_outside_frame():
    t = StageTimes(window=2)
    t.add("crop", 1.0)  # outside a frame: ignored
    assert len(t) == 0
    for _ in range(3):
        t.begin()
        t.add("backbone", 0.01)
        t.end()
    assert len(t) == 2
    m = t.means_ms()
    assert abs(m["backbone"] - 10.0) < 1e-9
    assert m["total"] >= 0.0 and m["other"] >= 0.0


def test_max_crop_size_resamples_wide_regions_and_skips_learning_from_them():
    """search.max_crop_size: a wide region is cut at the cap (one crop size for all targets),
    and the target neither writes memory nor updates its scale filter from that crop."""
    frames = _frames()
    cfg = _config().with_overrides({"search.max_crop_size": 256})
    tracker = create_multi_tracker(cfg)
    shapes: list[tuple[int, int]] = []
    original = tracker.backbone.extract
    tracker.backbone.extract = lambda im: shapes.append(tuple(im.shape[-2:])) or original(im)
    tracker.add("a", frames[0], (60.0, 80.0, 50.0, 40.0))
    tracker.add("b", frames[0], (300.0, 150.0, 40.0, 50.0))
    target = tracker._targets["b"]
    target.search_area = tracker.config.search.max_search_area
    wide = target.next_crop()
    assert wide.out_size == 256 and wide.side > tracker._targets["a"].next_crop().side
    shapes.clear()
    samples = target.memory.count
    tracker.track(frames[1])
    assert set(shapes) == {(256, 256)}
    assert target._rescaled and not tracker._targets["a"]._rescaled
    assert target.memory.count == samples


def test_targets_refine_their_filters_on_different_frames():
    """Scheduled refinements of targets set on the same frame are spread over the interval
    (slot phases 0, 6, 2 of 10), so no frame pays for all of them; one target keeps phase 0."""
    frames = _frames(13)
    tracker = create_multi_tracker(_config())
    boxes = {"a": (60.0, 80.0, 50.0, 40.0), "b": (300.0, 150.0, 40.0, 50.0)}
    boxes["c"] = (180.0, 60.0, 44.0, 44.0)
    for tid, box in boxes.items():
        tracker.add(tid, frames[0], box)
    interval = tracker.config.memory.update_interval
    assert [tracker._targets[t].update_phase for t in "abc"] == [0, 6, 2]
    steps = tracker.config.memory.update_steps
    refined: dict[str, set[int]] = {t: set() for t in "abc"}
    for tid, target in tracker._targets.items():
        original = target.classifier.refine

        def record(*args, tid=tid, target=target, original=original):
            if args[3] == steps:  # scheduled (a hard negative's immediate refit has its own)
                refined[tid].add(target.frame)
            return original(*args)

        target.classifier.refine = record
    for frame in frames[1:]:
        tracker.track(frame)
    assert refined["a"] == {interval}  # frame 10, as a single target always did
    assert refined["b"] == {4} and refined["c"] == {8}
    # Removing a target frees its slot for the next one; a replaced id keeps its own.
    tracker.remove("b")
    tracker.add("d", frames[0], boxes["b"])
    tracker.add("c", frames[0], boxes["c"])
    assert tracker._targets["d"].update_phase == 6 and tracker._targets["c"].update_phase == 2


def test_crops_to_tensor_layouts_hold_the_same_values():
    """Both layouts equal the plain ``RGB / 255`` conversion; only the memory order differs."""
    import torch

    from meta_tracker_ros.core.geometry import crops_to_tensor

    rng = np.random.default_rng(4)
    crops = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    plain = torch.stack([torch.from_numpy(c[..., ::-1].copy()) for c in crops])
    plain = plain.permute(0, 3, 1, 2).float() / 255.0
    for n in (1, 3):
        view = crops_to_tensor(crops[:n])
        flat = crops_to_tensor(crops[:n], contiguous=True)
        assert torch.equal(view, plain[:n]) and torch.equal(flat, plain[:n])
        assert flat.is_contiguous() and view.stride()[1] == 1  # NCHW / channels-last view

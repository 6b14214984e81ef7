"""The evaluation CLI end to end on a tiny generated sequence, and the runner's error handling."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from meta_tracker_ros.core.types import TrackResult, TrackState
from meta_tracker_ros.evaluation.__main__ import main
from meta_tracker_ros.evaluation.baselines import create_baseline
from meta_tracker_ros.evaluation.datasets import load_sequences
from meta_tracker_ros.evaluation.runner import run_benchmark, summarize_tracker

N_FRAMES = 8
W, H = 96, 72


def _make_data(root: Path) -> None:
    """One box sequence (1-based GT) and one mask sequence: a textured patch moving right."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    patch = rng.integers(150, 255, (20, 16, 3), dtype=np.uint8)
    box_dir, mask_dir = root / "boxes" / "walk", root / "masks" / "blob"
    for d in (box_dir / "img", mask_dir / "img", mask_dir / "ann"):
        d.mkdir(parents=True)
    gt_lines, mask_lines = [], []
    for i in range(N_FRAMES):
        x, y = 20 + 2 * i, 25
        img = background.copy()
        img[y : y + 20, x : x + 16] = patch
        cv2.imwrite(str(box_dir / "img" / f"{i + 1:05d}.jpg"), img)
        cv2.imwrite(str(mask_dir / "img" / f"{i:05d}.jpg"), img)
        m = np.zeros((H, W), np.uint8)
        m[y : y + 20, x : x + 16] = 255
        cv2.imwrite(str(mask_dir / "ann" / f"{i:05d}.png"), m)
        gt_lines.append(f"{x + 1},{y + 1},16,20")
        mask_lines.append(f"{x},{y},16,20")
    (box_dir / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    (mask_dir / "groundtruth_from_mask.txt").write_text("\n".join(mask_lines) + "\n")
    manifest = [
        {"name": "walk", "kind": "box", "coords": "1-based (OTB)", "attributes": "OTB: SV, FM"},
        {"name": "blob", "kind": "mask", "coords": "box-from-mask: 0-based", "attributes": "FM"},
    ]
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    _make_data(tmp_path / "data")
    return tmp_path / "data"


def test_cli_single_tracker_csrt(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, md, plots = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "plots"
    argv = ["--data", str(data), "--tracker", "csrt", "--json", str(out)]
    rc = main([*argv, "--markdown", str(md), "--plots", str(plots), "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["tracker"] == "csrt"
    assert set(res["sequences"]) == {"walk", "blob"}
    walk, blob = res["sequences"]["walk"], res["sequences"]["blob"]
    for key in ("auc", "precision20", "norm_precision", "fps", "init_ms", "frames"):
        assert key in walk and key in res["mean"], key
    assert "mask_J" in blob and "mask_J" not in walk
    assert blob["mask_J_from"] == "box"  # CSRT has no masks: J of its box
    assert walk["frames"] == N_FRAMES and walk["tracked_frames"] == N_FRAMES - 1
    assert walk["auc"] > 0.6  # an easy, rigid, slowly moving patch
    assert res["mean"]["mask_J"] == blob["mask_J"]
    assert res["mean"]["sequences"] == 2 and res["mean"]["errors"] == []
    assert res["mean"]["fps"] > 0
    assert {"cpu_count", "torch_threads", "platform"} <= set(res["machine"])
    assert "--tracker csrt" in res["command"]
    assert res["attributes"]["FM"]["sequences"] == 2
    assert md.read_text().startswith("| Sequence | csrt AUC")
    assert "**mean (2)**" in md.read_text()
    assert {p.name for p in plots.iterdir()} == {"success.png", "precision.png", "attributes.png"}
    assert "csrt" in capsys.readouterr().out


def test_cli_several_trackers_and_subsets(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = ["--data", str(data), "--tracker", "csrt,kcf", "--json", str(out), "--no-progress"]
    assert main([*argv, "--names", "walk", "--max-frames", "4"]) == 0
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"csrt", "kcf"}
    assert {"data", "machine", "command"} <= set(res)
    for run in res["runs"].values():
        assert list(run["sequences"]) == ["walk"]
        assert run["sequences"]["walk"]["frames"] == 4


def test_cli_starts_track_each_sequence_from_several_frames(data: Path, tmp_path: Path) -> None:
    """--starts f0,f3,b0,b2: forward from frames 0 and 3, backward from the last frame and from
    two before it; each variant's ground truth is the original's, sliced or reversed."""
    out = tmp_path / "r.json"
    argv = ["--data", str(data), "--tracker", "csrt", "--json", str(out), "--no-progress"]
    assert main([*argv, "--names", "blob", "--starts", "f0,f3,b0,b2"]) == 0
    seqs = json.loads(out.read_text())["sequences"]
    assert list(seqs) == ["blob@f0", "blob@f3", "blob@b0", "blob@b2"]
    assert [seqs[k]["frames"] for k in seqs] == [N_FRAMES, N_FRAMES - 3, N_FRAMES, N_FRAMES - 2]
    assert all(seqs[k]["mask_J"] is not None for k in seqs)
    _, (blob,) = load_sequences(data, "auto", ["blob"])
    back = blob.from_start(2, reverse=True)
    np.testing.assert_array_equal(back.boxes, blob.boxes[N_FRAMES - 3 :: -1])
    assert back.frames[0] == blob.frames[N_FRAMES - 3] and back.masks[-1] == blob.masks[0]
    with pytest.raises(ValueError, match="fewer than 2 frames"):
        blob.from_start(N_FRAMES - 1)


def test_cli_opencv_threads_sets_the_baselines_threads(data: Path, tmp_path: Path) -> None:
    """Baselines run on their own OpenCV thread count (default every core) and put back the
    process's count after each call, which the tracker sets to runtime.num_threads."""
    out = tmp_path / "r.json"
    argv = ["--data", str(data), "--tracker", "csrt", "--json", str(out), "--no-progress"]
    assert main([*argv, "--names", "walk", "--max-frames", "3", "--opencv-threads", "1"]) == 0
    assert json.loads(out.read_text())["machine"]["baseline_opencv_threads"] == 1
    before = cv2.getNumThreads()
    seen: list[int] = []
    tracker = create_baseline("kcf", 3)
    _, seqs = load_sequences(data, "auto", ["walk"])
    frame, box = seqs[0].frame(0), tuple(seqs[0].boxes[0])
    tracker._create = lambda: _Recorder(seen)
    try:
        cv2.setNumThreads(1)  # what a tracker with runtime.num_threads 1 leaves set
        tracker.initialize(frame, box)
        tracker.track(frame)
        assert seen == [3, 3] and cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
    assert create_baseline("csrt").threads == cv2.getNumberOfCPUs()


class _Recorder:
    """Stands in for an OpenCV tracker and records OpenCV's thread count at each call."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def init(self, frame, rect) -> None:
        self.seen.append(cv2.getNumThreads())

    def update(self, frame):
        self.seen.append(cv2.getNumThreads())
        return True, (1, 1, 2, 2)


@pytest.mark.parametrize(
    "extra",
    [
        ["--tracker", "csrt", "--opencv-threads", "0"],
        ["--tracker", "nope"],
        ["--tracker", "csrt,csrt"],
        ["--tracker", "csrt", "--names", "missing"],
        ["--tracker", "csrt", "--config", "/nonexistent.yaml"],
        ["--tracker", "csrt", "--max-frames", "1"],
        ["--tracker", "csrt", "--starts", "f0,x3"],
        ["--tracker", "csrt", "--starts", f"f{N_FRAMES}"],
    ],
)
def test_cli_usage_errors(data: Path, tmp_path: Path, extra: list[str]) -> None:
    assert main(["--data", str(data), "--json", str(tmp_path / "r.json"), *extra]) == 2


class _Crashes:
    """Tracks two frames, then raises: the run must continue and count the rest as failures."""

    def __init__(self) -> None:
        self.calls = 0

    def initialize(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> None:
        self.box = box

    def track(self, frame: np.ndarray) -> TrackResult:
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("boom")
        return TrackResult(self.box, 1.0, TrackState.TRACKING)


def test_runner_survives_tracker_errors(data: Path) -> None:
    _, seqs = load_sequences(data)
    runs = run_benchmark({"bad": _Crashes, "kcf": lambda: create_baseline("kcf")}, seqs, False)
    bad = summarize_tracker("bad", runs["bad"], seqs)
    assert set(bad["mean"]["errors"]) == {"walk", "blob"}
    walk = bad["sequences"]["walk"]
    assert "boom" in walk["error"] and walk["tracked_frames"] == 2
    # 2 of 7 scored frames tracked (static box on a patch moving 2 px/frame), 5 count as failures
    assert walk["precision20"] == pytest.approx(2 / 7, abs=1e-4)
    assert bad["sequences"]["blob"]["mask_J"] < 0.5
    kcf = summarize_tracker("kcf", runs["kcf"], seqs)
    assert kcf["mean"]["errors"] == []

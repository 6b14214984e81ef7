"""``runtime.backend: auto``: its choice from the recorded accuracy table, and the table writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from meta_tracker_ros.core.backbone import create_backbone, runtime_guard
from meta_tracker_ros.core.backbone.torch_runtime import TorchBackbone
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.export import runtime_guard as writer

LEVELS = ("s4", "s8", "s16")


def _eval_json(auc: float, j: float | None, sequences: int = 31, max_frames=None) -> dict:
    mean = {"auc": auc, "sequences": sequences, "frames": 7473, "fps": 30.0}
    if j is not None:
        mean["mask_J"] = j
    return {"mean": mean, "data": {"max_frames": max_frames}, "command": "python -m ..."}


def _table(ort_auc: float = 0.620, ort_j: float | None = 0.600, sequences: int = 31) -> dict:
    return writer.build_table(
        {
            "torch/fp32": _eval_json(0.625, 0.605),
            "onnxruntime/fp32": _eval_json(ort_auc, ort_j, sequences),
        }
    )


def test_auto_prefers_onnxruntime_when_installed_and_accurate():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert runtime_guard.choose("cpu", _table()) == [("onnxruntime", "fp32"), ("torch", "fp32")]


@pytest.mark.parametrize(
    "table, why",
    [
        (_table(ort_auc=0.600), "AUC 0.025 below the reference"),
        (_table(ort_j=0.580), "J 0.025 below the reference"),
        (_table(ort_j=None), "J not recorded for the candidate"),
        (_table(sequences=8), "evaluated on other sequences"),
        ({}, "no table"),
    ],
)
def test_auto_falls_back_to_torch_when_accuracy_does_not_hold(table, why):
    assert runtime_guard.choose("cpu", table) == [("torch", "fp32")], why


def test_auto_skips_runtimes_that_are_not_installed(monkeypatch):
    monkeypatch.setattr(runtime_guard, "installed", lambda module: False)
    assert runtime_guard.choose("cpu", _table()) == [("torch", "fp32")]
    assert runtime_guard.choose("cuda", _table()) == [("torch", "fp32")]


def test_shipped_table_is_consistent():
    """The shipped table (written by the command) parses and names the reference."""
    if not runtime_guard.TABLE.is_file():
        pytest.skip("no runtime_accuracy.json shipped yet")
    table = json.loads(runtime_guard.TABLE.read_text())
    assert table["reference"] == runtime_guard.REFERENCE
    assert runtime_guard.REFERENCE in table["runtimes"]
    assert table["written_by"].endswith("export.runtime_guard")
    for row in table["runtimes"].values():
        assert row["command"] and row["sequences"] == table["runtimes"]["torch/fp32"]["sequences"]


def test_factory_auto_builds_the_chosen_runtime(tmp_path, monkeypatch):
    """auto -> onnxruntime with a dynamic-size on-demand export: a wider (LOST) crop runs too."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    monkeypatch.setattr(runtime_guard, "load_table", lambda path=None: _table())
    cfg = TrackerConfig()
    cfg.runtime.backend = "auto"
    cfg.runtime.num_threads = 1
    cfg.runtime.onnx_cache_dir = str(tmp_path / "onnx")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backbone = create_backbone(cfg, LEVELS)
        # The heads run on torch: its thread count follows runtime.num_threads here too.
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert backbone.name == "onnxruntime"
    assert backbone.max_crops_per_call == 1
    reference = TorchBackbone(LEVELS, num_threads=1)
    for side in (256, 512):
        images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        got, want = backbone.extract(images), reference.extract(images)
        for lv in LEVELS:
            assert got[lv].shape == want[lv].shape
            assert float((got[lv] - want[lv]).abs().max()) < 1e-3
    monkeypatch.setattr(runtime_guard, "load_table", lambda path=None: {})
    assert create_backbone(cfg, LEVELS).name == "torch"


def test_table_writer_refuses_partial_runs_and_needs_the_reference(tmp_path):
    with pytest.raises(ValueError, match="max-frames"):
        writer.build_table(
            {"torch/fp32": _eval_json(0.6, 0.6, max_frames=50), "x/fp32": _eval_json(0.6, 0.6)}
        )
    with pytest.raises(ValueError, match="reference"):
        writer.build_table({"onnxruntime/fp32": _eval_json(0.6, 0.6)})
    ref, cand = tmp_path / "ref.json", tmp_path / "ort.json"
    ref.write_text(json.dumps(_eval_json(0.625, 0.605)))
    cand.write_text(json.dumps(_eval_json(0.621, 0.603)))
    out = tmp_path / "table.json"
    args = ["--run", f"torch/fp32={ref}", "--run", f"onnxruntime/fp32={cand}", "--out", str(out)]
    assert writer.main(args) == 0
    table = json.loads(Path(out).read_text())
    assert table["runtimes"]["onnxruntime/fp32"]["delta_auc"] == pytest.approx(-0.004)
    assert runtime_guard.accuracy_holds("onnxruntime/fp32", table) == (True, "within tolerance")


def test_default_config_builds_what_the_shipped_table_chooses(tmp_path):
    """The default is ``auto``: a fresh start exports on demand and runs the table's choice."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    cfg = TrackerConfig()
    assert cfg.runtime.backend == "auto"
    cfg.runtime.onnx_cache_dir = str(tmp_path / "empty-cache")
    backbone = create_backbone(cfg, LEVELS)
    assert backbone.name == runtime_guard.choose("cpu")[0][0]
    assert any((tmp_path / "empty-cache").iterdir()) == (backbone.name != "torch")

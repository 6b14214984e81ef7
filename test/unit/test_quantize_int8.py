"""int8 export (ORT static quantisation calibrated on training crops) runs as an onnx_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from meta_tracker_ros.core.backbone import create_backbone
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.export import quantize_int8

TRAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"


@pytest.mark.data
def test_int8_file_loads_through_the_onnxruntime_backend(tmp_path, capsys):
    pytest.importorskip("onnxruntime.quantization", reason="onnxruntime is not installed")
    if not TRAIN.is_dir():
        pytest.skip(f"training data not found at {TRAIN} (needs ../shared/data/train)")
    out = tmp_path / "int8.onnx"
    args = ["--out", str(out), "--train", str(TRAIN), "--calib", "4", "--iters", "2"]
    assert quantize_int8.main(args) == 0
    assert "int8" in capsys.readouterr().out
    cfg = TrackerConfig()
    cfg.runtime.backend = "onnxruntime"
    cfg.runtime.onnx_path = str(out)
    cfg.runtime.num_threads = 1
    backbone = create_backbone(cfg, ("s4", "s8", "s16"))
    assert backbone.name == "onnxruntime"
    feats = backbone.extract(torch.rand(1, 3, 256, 256))
    assert feats["s16"].shape == (1, 112, 16, 16)

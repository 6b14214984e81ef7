"""Alternative backbone runtimes through the factory: onnxruntime parity, TensorRT fallback.

There is no TensorRT and no GPU here, so the TensorRT tests check that the factory falls back
to torch with a warning that names the reason; the engine cache logic is tested separately in
test_runtimes_engine_cache.py.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from meta_tracker_ros.core.backbone import alt_runtimes, create_backbone
from meta_tracker_ros.core.backbone.onnx_export import DEFAULT_ATOL, parity_images
from meta_tracker_ros.core.backbone.torch_runtime import TorchBackbone
from meta_tracker_ros.core.config import TrackerConfig

LEVELS = ("s4", "s8", "s16")
FACTORY_LOG = "meta_tracker_ros.core.backbone.factory"


def config(tmp: Path, **runtime) -> TrackerConfig:
    cfg = TrackerConfig()
    cfg.runtime.onnx_cache_dir = str(tmp / "onnx")
    cfg.runtime.engine_dir = str(tmp / "engines")
    for name, value in runtime.items():
        setattr(cfg.runtime, name, value)
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runtimes")


@pytest.fixture(scope="module")
def ort_backbone(cache):
    """onnxruntime backbone created through the factory; exports on demand into ``cache``."""
    return create_backbone(config(cache, backend="onnxruntime"), LEVELS)


def test_onnxruntime_through_factory_matches_torch(ort_backbone):
    assert isinstance(ort_backbone, alt_runtimes.ONNXRuntimeBackbone)
    images = parity_images(2, 256, seed=5)
    got = ort_backbone.extract(images)
    ref = TorchBackbone(LEVELS).extract(images)
    assert list(got) == list(LEVELS)
    for lv in LEVELS:
        assert got[lv].dtype == torch.float32 and got[lv].shape == ref[lv].shape
        assert (got[lv] - ref[lv]).abs().max().item() < DEFAULT_ATOL


def test_on_demand_export_is_reused(cache, ort_backbone, monkeypatch):
    import meta_tracker_ros.core.backbone.onnx_export as onnx_export

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cached file matches")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = create_backbone(config(cache, backend="onnx"), LEVELS)
    assert again.onnx_path == ort_backbone.onnx_path
    assert ort_backbone.onnx_path.parent == cache / "onnx"


def test_on_demand_cpu_export_takes_wider_crops_and_a_fixed_file_refuses_them(
    cache, ort_backbone, tmp_path
):
    """A LOST target's wider crop runs on the CPU on-demand export (symbolic H, W); a fixed-size
    file named by runtime.onnx_path still refuses other sizes with a clear error."""
    from meta_tracker_ros.core.backbone.onnx_export import export_onnx

    feats = ort_backbone.extract(torch.rand(1, 3, 288, 288))
    assert feats["s16"].shape[-2:] == (18, 18)
    fixed = tmp_path / "fixed.onnx"
    export_onnx(fixed, LEVELS, 256, verify=False)
    backbone = create_backbone(config(cache, backend="onnx", onnx_path=str(fixed)), LEVELS)
    assert backbone.name == "onnxruntime"
    with pytest.raises(ValueError, match="256x256 crops, got 288x288"):
        backbone.extract(torch.rand(1, 3, 288, 288))


def test_mismatched_file_falls_back_to_torch_with_reason(cache, ort_backbone, caplog):
    cfg = config(cache, backend="onnxruntime", onnx_path=str(ort_backbone.onnx_path))
    cfg.backbone.mean = (0.485, 0.456, 0.406)
    with caplog.at_level(logging.WARNING, logger=FACTORY_LOG):
        backbone = create_backbone(cfg, LEVELS)
    assert isinstance(backbone, TorchBackbone)
    assert "does not match the config" in caplog.text and "mean" in caplog.text


def test_missing_onnx_path_falls_back(cache, caplog):
    cfg = config(cache, backend="onnxruntime", onnx_path=str(cache / "nope.onnx"))
    with caplog.at_level(logging.WARNING, logger=FACTORY_LOG):
        backbone = create_backbone(cfg, ("s8",))
    assert isinstance(backbone, TorchBackbone)
    assert "does not exist" in caplog.text


def test_tensorrt_falls_back_to_torch_with_warning(cache, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # absent, even where it is installed
    with caplog.at_level(logging.WARNING, logger=FACTORY_LOG):
        backbone = create_backbone(config(cache, backend="tensorrt", device="cuda"), ("s8",))
    assert isinstance(backbone, TorchBackbone)
    assert "backend 'tensorrt' could not start" in caplog.text
    assert "'tensorrt' Python module is not installed" in caplog.text
    assert not (cache / "engines").exists()  # nothing was built or exported


def test_tensorrt_without_cuda_names_cuda(cache, caplog, monkeypatch):
    fake = types.ModuleType("tensorrt")
    fake.Builder = object  # looks like the full TensorRT; the CUDA check must still refuse
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=FACTORY_LOG):
        backbone = create_backbone(config(cache, backend="tensorrt"), ("s8",))
    assert isinstance(backbone, TorchBackbone)
    assert "TensorRT needs a CUDA device" in caplog.text


def test_unknown_backend_falls_back(cache, caplog):
    with caplog.at_level(logging.WARNING, logger=FACTORY_LOG):
        backbone = create_backbone(config(cache, backend="tvm"), ("s8",))
    assert isinstance(backbone, TorchBackbone)
    assert "unknown runtime.backend 'tvm'" in caplog.text


def _needs_openvino() -> None:
    """Skip without OpenVINO; never ``import openvino`` here (that would send its telemetry)."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_through_factory_matches_torch(cache, precision):
    """fp32 within the export's parity tolerance; bf16 (where the CPU computes in it) within a
    few percent of each level's range, which the accuracy table then has to justify."""
    _needs_openvino()
    backbone = create_backbone(config(cache, backend="openvino", precision=precision), LEVELS)
    assert isinstance(backbone, alt_runtimes.OpenVINOBackbone)
    assert backbone.max_crops_per_call == 1
    images = parity_images(2, 256, seed=6)
    wide = parity_images(1, 384, seed=7)  # the on-demand export takes a LOST target's crop
    for batch in (images, wide):
        got = backbone.extract(batch)
        ref = TorchBackbone(LEVELS).extract(batch)
        assert list(got) == list(LEVELS)
        for lv in LEVELS:
            assert got[lv].dtype == torch.float32 and got[lv].shape == ref[lv].shape
            err = (got[lv] - ref[lv]).abs().max().item()
            if backbone.precision == "f32":
                assert err < DEFAULT_ATOL
            else:
                assert err < 0.1 * ref[lv].abs().max().item()
    assert backbone.precision in backbone.describe()
    if precision == "fp32":
        assert backbone.precision == "f32"


def test_openvino_refuses_an_unknown_precision(cache, caplog):
    _needs_openvino()
    with caplog.at_level(logging.WARNING, logger=FACTORY_LOG):
        backbone = create_backbone(config(cache, backend="openvino", precision="fp16"), ("s8",))
    assert isinstance(backbone, TorchBackbone)
    assert "choose fp32 or bf16" in caplog.text


def test_provider_choice():
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert alt_runtimes.choose_ort_providers("cpu", avail, "fp32", "/c") == ["CPUExecutionProvider"]
    chosen = alt_runtimes.choose_ort_providers("cuda:1", avail, "fp16", "/c")
    assert [p[0] if isinstance(p, tuple) else p for p in chosen] == avail
    assert chosen[0][1]["trt_fp16_enable"] is True and chosen[0][1]["device_id"] == 1
    cpu_only = alt_runtimes.choose_ort_providers("cuda", ["CPUExecutionProvider"], "fp16", "/c")
    assert cpu_only == ["CPUExecutionProvider"]


def test_openvino_is_imported_without_its_telemetry():
    """``import openvino`` sends a usage event unless its telemetry package is unimportable;
    the runtime's import goes through :func:`alt_runtimes.import_openvino`, which makes it so.
    Run in a fresh interpreter: this test process may have imported OpenVINO already."""
    _needs_openvino()
    code = (
        "import sys\n"
        "from meta_tracker_ros.core.backbone.alt_runtimes import import_openvino\n"
        "import_openvino()\n"
        "from openvino.tools.ovc import telemetry_utils\n"
        "print(telemetry_utils.tm.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().endswith("telemetry_stub"), out.stdout + out.stderr

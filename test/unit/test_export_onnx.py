"""ONNX export: parity with the torch runtime, metadata round trip, mismatches refused.

One export per module (about 3 s on two cores) through the command-line entry point, so the
CLI is covered too. A real search-region crop from ../shared/data is used when available.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from meta_tracker_ros.core.backbone.onnx_export import (
    DEFAULT_ATOL,
    export_onnx,
    ort_session,
    parity_images,
)
from meta_tracker_ros.core.backbone.onnx_metadata import (
    OnnxMetadata,
    OnnxMetadataError,
    check_metadata,
    read_metadata,
)
from meta_tracker_ros.core.backbone.torch_runtime import TorchBackbone

LEVELS = ("s4", "s8", "s16")
SIZE = 256
REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    return Path(os.environ.get("MTR_DATA", REPO.parent / "shared" / "data"))


def real_crop(size: int = SIZE) -> torch.Tensor | None:
    """Search region (4x the target's sqrt-area) around frame 1 of OTB Crossing, or None."""
    seq = data_dir() / "boxes" / "Crossing"
    if not (seq / "groundtruth.txt").is_file():
        return None
    import cv2

    from meta_tracker_ros.core.geometry import crop_image, crops_to_tensor, search_crop

    x, y, w, h = (float(v) for v in (seq / "groundtruth.txt").read_text().split()[0].split(","))
    frame = cv2.imread(str(seq / "img" / "00001.jpg"), cv2.IMREAD_COLOR)
    crop = search_crop((x - 1 + w / 2, y - 1 + h / 2), (w, h), 4.0, size)  # OTB is 1-based
    return crops_to_tensor([crop_image(frame, crop)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from meta_tracker_ros.export.__main__ import main

    out = tmp_path_factory.mktemp("onnx")
    rc = main(["--levels", ",".join(LEVELS), "--size", str(SIZE), "--output", str(out)])
    assert rc == 0
    path = out / "efficientnet-lite0_s4-s8-s16_256.onnx"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def torch_backbone() -> TorchBackbone:
    return TorchBackbone(LEVELS)


def _max_diffs(path: Path, backbone: TorchBackbone, images: torch.Tensor) -> dict[str, float]:
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"image": images.numpy()}), strict=True))
    ref = backbone.extract(images)
    return {lv: float(np.abs(got[lv] - ref[lv].numpy()).max()) for lv in LEVELS}


@pytest.mark.data
def test_parity_with_torch_runtime_on_real_crop(exported, torch_backbone):
    images = real_crop()
    if images is None:
        pytest.skip("../shared/data not available")
    diffs = _max_diffs(exported, torch_backbone, images)
    print("ONNX vs TorchBackbone, real crop, max abs diff:", diffs)
    assert max(diffs.values()) < DEFAULT_ATOL
    # The features are not trivially small, so the tolerance means something.
    assert torch_backbone.extract(images)["s16"].abs().max() > 1.0


def test_parity_with_torch_runtime_batch_of_four(exported, torch_backbone):
    images = parity_images(4, SIZE, seed=3)
    diffs = _max_diffs(exported, torch_backbone, images)
    assert max(diffs.values()) < DEFAULT_ATOL  # dynamic batch axis works beyond the traced 1


def test_metadata_round_trip(exported):
    meta = read_metadata(exported)
    assert meta.spec.levels == LEVELS
    assert meta.spec.strides == (4, 8, 16)
    assert meta.spec.channels == (24, 40, 112)
    assert meta.spec.mean == (0.5, 0.5, 0.5) and meta.spec.std == (0.5, 0.5, 0.5)
    assert meta.input_size == (SIZE, SIZE)
    assert meta.normalisation == "in_graph"
    assert len(meta.weights_sha256) == 64
    assert meta.package_version
    assert OnnxMetadata.from_props(meta.to_props()) == meta
    check_metadata(meta, LEVELS, (0.5,) * 3, (0.5,) * 3, SIZE)  # accepted
    check_metadata(meta, ("s8",), (0.5,) * 3, (0.5,) * 3)  # a subset of the levels is fine


@pytest.mark.parametrize(
    ("levels", "mean", "std", "size", "weights", "words"),
    [
        (("s4", "s32"), (0.5,) * 3, (0.5,) * 3, None, None, "levels"),
        (LEVELS, (0.485, 0.456, 0.406), (0.5,) * 3, None, None, "mean"),
        (LEVELS, (0.5,) * 3, (0.229, 0.224, 0.225), None, None, "std"),
        (LEVELS, (0.5,) * 3, (0.5,) * 3, 288, None, "input size"),
        (LEVELS, (0.5,) * 3, (0.5,) * 3, None, "0" * 64, "weights"),
    ],
)
def test_metadata_mismatch_refused(exported, levels, mean, std, size, weights, words):
    meta = read_metadata(exported)
    with pytest.raises(OnnxMetadataError, match=words):
        check_metadata(meta, levels, mean, std, size, weights_sha256=weights)


def test_file_without_metadata_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["image"], ["s8"])
    graph = helper.make_graph(
        [node],
        "bare",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("s8", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = tmp_path / "bare.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(OnnxMetadataError, match="no meta_tracker_ros metadata"):
        read_metadata(path)


def test_bad_size_and_levels_rejected(tmp_path):
    with pytest.raises(ValueError, match="multiple of 16"):
        export_onnx(tmp_path / "x.onnx", LEVELS, size=250)
    with pytest.raises(ValueError, match="bad levels"):
        export_onnx(tmp_path / "x.onnx", ("s5",), size=256)

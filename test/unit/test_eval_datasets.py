"""Dataset loaders on tiny fixtures made in tmp_path, plus one check on the real shared data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from meta_tracker_ros.evaluation import datasets as D


def _images(folder: Path, n: int, names: str = "{:08d}.jpg", size: tuple[int, int] = (32, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        cv2.imwrite(str(folder / names.format(i + 1)), np.full((h, w, 3), 40 * i, np.uint8))


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_shared_layout_uses_manifest_offsets_and_attributes(tmp_path: Path) -> None:
    _images(tmp_path / "boxes" / "otb" / "img", 3, "{:05d}.jpg")
    _write(
        tmp_path / "boxes" / "otb" / "groundtruth.txt", ["11,21,5,6", "12\t22\t5\t6", "13,23,5,6"]
    )
    _images(tmp_path / "boxes" / "uav" / "img", 2, "{:05d}.jpg")
    _write(tmp_path / "boxes" / "uav" / "groundtruth.txt", ["10,10,4,4", "10,10,4,4"])
    _images(tmp_path / "boxes" / "vot" / "img", 2, "{:05d}.jpg")
    _write(tmp_path / "boxes" / "vot" / "groundtruth.txt", ["3,4,5,6", "3,4,5,6"])
    ann = tmp_path / "masks" / "dav" / "ann"
    _images(tmp_path / "masks" / "dav" / "img", 2, "{:05d}.jpg")
    ann.mkdir(parents=True)
    for i in range(2):
        m = np.zeros((24, 32), np.uint8)
        m[5:10, 3:9] = 255
        cv2.imwrite(str(ann / f"{i + 1:05d}.png"), m)
    _write(tmp_path / "masks" / "dav" / "groundtruth_from_mask.txt", ["3,5,6,5", "3,5,6,5"])
    uav_coords = "UAV123 x,y,w,h (1-based MATLAB source) scaled x0.5"
    manifest = [
        {"name": "otb", "kind": "box", "coords": "1-based (OTB)", "attributes": "OTB: SV, DEF"},
        {"name": "uav", "kind": "box", "coords": uav_coords, "attributes": "observed: aerial, "
         "SV(12x), spray/BC"},
        {"name": "vot", "kind": "box", "coords": "VOT region coords (origin not stated)"},
        {"name": "dav", "kind": "mask", "coords": "masks: pixel-aligned; box-from-mask: 0-based"},
        {"name": "demo", "kind": "demo"},
    ]  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert D.detect_format(tmp_path) == "shared"
    fmt, seqs = D.load_sequences(tmp_path)
    by = {s.name: s for s in seqs}
    assert fmt == "shared" and set(by) == {"otb", "uav", "vot", "dav"}
    np.testing.assert_allclose(by["otb"].boxes[0], [10, 20, 5, 6])  # 1-based -> 0-based
    np.testing.assert_allclose(by["otb"].boxes[1], [11, 21, 5, 6])  # tab-separated line
    np.testing.assert_allclose(by["uav"].boxes[0], [9.5, 9.5, 4, 4])  # 1-based, scaled 0.5
    np.testing.assert_allclose(by["vot"].boxes[0], [3, 4, 5, 6])  # VOT: 0-based
    np.testing.assert_allclose(by["dav"].boxes[0], [3, 5, 6, 5])
    assert by["otb"].attributes == ["SV", "DEF"]
    assert by["uav"].attributes == ["aerial", "SV", "BC"]
    assert by["dav"].has_masks and not by["otb"].has_masks
    mask = by["dav"].mask(1)
    assert mask is not None and mask.dtype == bool and mask.sum() == 30
    assert D.mask_to_box(mask) == (3.0, 5.0, 6.0, 5.0)
    assert by["otb"].frame(0).shape == (24, 32, 3)
    # --names keeps the given order and rejects typos
    _, two = D.load_sequences(tmp_path, names=["vot", "otb"])
    assert [s.name for s in two] == ["vot", "otb"]
    with pytest.raises(KeyError):
        D.load_sequences(tmp_path, names=["nope"])
    assert len(by["otb"].truncated(2)) == 2 and by["otb"].truncated(2).boxes.shape == (2, 4)


def test_got10k_zero_based_with_absence(tmp_path: Path) -> None:
    seq = tmp_path / "GOT-10k_Val_000001"
    _images(seq, 3)
    _write(seq / "groundtruth.txt", ["1.5,2,10,12", "2,3,10,12", "3,4,10,12"])
    _write(seq / "absence.label", ["0", "1", "0"])
    _write(tmp_path / "list.txt", ["GOT-10k_Val_000001"])
    assert D.detect_format(tmp_path) == "got10k"
    fmt, (s,) = D.load_sequences(tmp_path)
    assert fmt == "got10k" and len(s) == 3
    np.testing.assert_allclose(s.boxes[0], [1.5, 2, 10, 12])
    assert np.isnan(s.boxes[1]).all()
    np.testing.assert_allclose(s.boxes[2], [3, 4, 10, 12])


def test_got10k_partial_gt_is_padded(tmp_path: Path) -> None:
    seq = tmp_path / "test_seq"
    _images(seq, 3)
    _write(seq / "groundtruth.txt", ["1,2,10,12"])  # GOT-10k test: first frame only
    _, (s,) = D.load_sequences(tmp_path, fmt="got10k")
    assert s.boxes.shape == (3, 4) and np.isnan(s.boxes[1:]).all()
    assert s.meta["warnings"]


def test_lasot_one_based_with_occlusion_flags(tmp_path: Path) -> None:
    seq = tmp_path / "airplane" / "airplane-1"
    _images(seq / "img", 3)
    _write(seq / "groundtruth.txt", ["1,1,10,10", "2,2,10,10", "3,3,10,10"])
    _write(seq / "full_occlusion.txt", ["0,0,1"])
    _write(seq / "out_of_view.txt", ["0,1,0"])
    assert D.detect_format(tmp_path) == "lasot"
    fmt, (s,) = D.load_sequences(tmp_path)
    assert fmt == "lasot" and s.name == "airplane-1" and s.attributes == ["airplane"]
    np.testing.assert_allclose(s.boxes[0], [0, 0, 10, 10])
    assert np.isnan(s.boxes[1:]).all()


def test_vot_polygons_color_folder_and_list(tmp_path: Path) -> None:
    seq = tmp_path / "ball"
    _images(seq / "color", 3)
    _write(
        seq / "groundtruth.txt",
        [
            "10,20,30,20,30,40,10,40",  # axis-aligned square as a polygon
            "5.5,10,15,0,25,10,15,20",  # diamond
            "nan,nan,nan,nan",
        ],
    )
    _write(seq / "occlusion.tag", ["0", "1", "0"])
    _images(tmp_path / "unlisted" / "color", 1)
    _write(tmp_path / "unlisted" / "groundtruth.txt", ["1,1,2,2"])
    _write(tmp_path / "list.txt", ["ball"])
    assert D.detect_format(tmp_path) == "vot"
    fmt, seqs = D.load_sequences(tmp_path)
    assert fmt == "vot" and [s.name for s in seqs] == ["ball"]  # list.txt decides
    s = seqs[0]
    np.testing.assert_allclose(s.boxes[0], [10, 20, 20, 20])
    np.testing.assert_allclose(s.boxes[1], [5.5, 0, 19.5, 20])
    assert np.isnan(s.boxes[2]).all()
    assert s.attributes == ["occlusion"]


def test_vot_images_in_folder_detected_by_polygons(tmp_path: Path) -> None:
    seq = tmp_path / "bag"
    _images(seq, 2)
    _write(seq / "groundtruth.txt", ["0,0,4,0,4,4,0,4", "m1,2,3,4,0,12"])
    assert D.detect_format(tmp_path) == "vot"
    _, (s,) = D.load_sequences(tmp_path)
    np.testing.assert_allclose(s.boxes, [[0, 0, 4, 4], [1, 2, 3, 4]])


def test_davis_mask_to_box_object_one(tmp_path: Path) -> None:
    from PIL import Image

    name = "cows"
    _images(tmp_path / "JPEGImages" / "480p" / name, 3, "{:05d}.jpg")
    ann = tmp_path / "Annotations" / "480p" / name
    ann.mkdir(parents=True)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)
    for i in range(3):
        m = np.zeros((24, 32), np.uint8)
        if i < 2:
            m[2:6, 4:10] = 1  # object 1
        m[10:20, 20:30] = 2  # object 2 is ignored
        img = Image.fromarray(m, mode="P")
        img.putpalette(palette)
        img.save(ann / f"{i + 1:05d}.png")
    assert D.detect_format(tmp_path) == "davis"
    fmt, (s,) = D.load_sequences(tmp_path)
    assert fmt == "davis" and s.has_masks
    np.testing.assert_allclose(s.boxes[0], [4, 2, 6, 4])  # tight, w = xmax - xmin + 1
    assert np.isnan(s.boxes[2]).all()  # object 1 absent
    m1 = s.mask(1)
    assert m1 is not None and m1.sum() == 24


def test_region_and_attribute_parsing() -> None:
    assert D.region_to_box(["0"]) == pytest.approx([np.nan] * 4, nan_ok=True)
    assert D.region_to_box(["1", "2", "3"]) == pytest.approx([np.nan] * 4, nan_ok=True)
    assert D.normalise_attributes("OTB(full seq): IV, OPR, SV") == ["IV", "OPR", "SV"]
    assert D.normalise_attributes("observed: heavy DEF, similar distractors (group)") == [
        "DEF",
        "similar distractor",
    ]
    assert D.manifest_offset("TLP x,y,w,h (base not stated in source) scaled x0.5", 0.0) == 0.5
    assert D.manifest_offset(None, 1.0) == 1.0


def test_unknown_layout_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        D.load_sequences(tmp_path)
    with pytest.raises(FileNotFoundError):
        D.load_sequences(tmp_path / "missing")


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.data
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
def test_real_shared_data_loads_all_sequences() -> None:
    fmt, seqs = D.load_sequences(SHARED)
    assert fmt == "shared"
    assert len(seqs) == 31, [s.name for s in seqs]
    for s in seqs:
        assert len(s.frames) == len(s.boxes) > 0, s.name
        assert np.isfinite(s.boxes).all(), s.name
        h, w = s.frame(0).shape[:2]
        tol = 2.0  # manifest: within 1 px, plus the VOT ±1 px origin uncertainty
        b = s.boxes
        assert (b[:, 0] >= -tol).all() and (b[:, 1] >= -tol).all(), s.name
        assert (b[:, 0] + b[:, 2] <= w + tol).all(), s.name
        assert (b[:, 1] + b[:, 3] <= h + tol).all(), s.name
        if s.meta["kind"] == "mask":
            assert s.masks is not None and all(m is not None for m in s.masks), s.name

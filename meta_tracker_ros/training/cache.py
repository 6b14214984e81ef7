"""Backbone features of the training clips, computed once and memory-mapped from disk.

Why: the backbone is frozen, so running it inside every training episode would spend almost all
of the time recomputing the same features. Two kinds of entries are stored, both cut with the
tracker's own crop code so training sees exactly what tracking sees:

* **init** entries: at every ``init_stride``-th frame, the tracker's first-frame search crop
  around the ground-truth box and all of its first-frame augmentations (flip, shifts, blur,
  rotations: ``core.augment``), exactly as ``MultiTracker.add`` makes them;
* **search** entries: at every frame with a target, a crop ``WIDE`` times wider than the search
  region, centred on the ground truth, from which episodes cut jittered search regions in
  feature space (bilinear resampling, the CPU equivalent of ``roi_align``).

Features are fp16 ``.npy`` memmaps under a directory named by a key of everything that changes
them (backbone, levels, crop geometry, augmentations, data): a changed input gives a new key and
so a rebuild, an unchanged one reuses the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from meta_tracker_ros.core.augment import augmentation_list, augmented_crops
from meta_tracker_ros.core.backbone import LITE0_LEVELS, create_backbone
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import crop_image, crops_to_tensor, search_crop
from meta_tracker_ros.evaluation.datasets import Sequence
from meta_tracker_ros.training.data import data_key, present

log = logging.getLogger(__name__)

WIDE = 1.5  # search-entry crop side / the tracker's search region side
CACHE_VERSION = 1


def reference_runtime(cfg: TrackerConfig) -> TrackerConfig:
    """``cfg`` with the backbone on torch fp32, the reference runtime, wherever it runs.

    Why: the learned parts are trained on the reference's features; every faster runtime is
    judged against that same reference in the recorded accuracy table (runtime_guard). The
    tracker's default ``backend: auto`` may pick ONNX Runtime, whose features differ in the
    fifth decimal, and the caches' keys do not name the runtime.
    """
    rt = dataclasses.replace(cfg.runtime, backend="torch", precision="fp32")
    return dataclasses.replace(cfg, runtime=rt)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "meta_tracker_ros" / "train_features"


def augmentations(cfg: TrackerConfig) -> list[tuple[str, tuple[float, ...]]]:
    """The tracker's first-frame augmentations for ``cfg`` (empty when augment is off)."""
    c = cfg.classifier
    return (
        augmentation_list(c.augment_shift, c.augment_blur, c.augment_rotations) if c.augment else []
    )


def cache_key(cfg: TrackerConfig, levels: list[str], init_stride: int, dkey: str) -> str:
    """Hash of every input that changes the cached features."""
    s, c = cfg.search, cfg.classifier
    desc = {
        "version": CACHE_VERSION,
        "backbone": [
            cfg.backbone.name,
            cfg.backbone.weights,
            list(cfg.backbone.mean),
            list(cfg.backbone.std),
        ],
        "levels": levels,
        "crop": [s.search_area, s.crop_size, s.min_side, WIDE],
        "augment": [c.augment, c.augment_shift, c.augment_blur, list(c.augment_rotations)],
        "init_stride": init_stride,
        "data": dkey,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FeatureCache:
    """Memory-mapped features plus the index that says which clip/frame/crop each row is."""

    root: Path
    levels: list[str]
    index: dict
    init: dict[str, np.ndarray]  # level -> (N_init, A, C, h, w) fp16
    search: dict[str, np.ndarray]  # level -> (N_search, C, h, w) fp16

    @property
    def clips(self) -> dict[str, dict]:
        return self.index["clips"]


def _open(root: Path, levels: list[str], index: dict) -> FeatureCache:
    init = {lv: np.load(root / f"init_{lv}.npy", mmap_mode="r") for lv in levels}
    search = {lv: np.load(root / f"search_{lv}.npy", mmap_mode="r") for lv in levels}
    return FeatureCache(root, levels, index, init, search)


def build_or_load(
    cfg: TrackerConfig,
    clips: list[Sequence],
    data_root: Path,
    cache_dir: Path | None = None,
    init_stride: int = 6,
    progress: bool = True,
) -> FeatureCache:
    """Open the cache for these inputs, building it first when its key is not on disk."""
    levels = sorted(cfg.classifier.feature_levels, key=lambda lv: LITE0_LEVELS[lv][1])
    key = cache_key(cfg, levels, init_stride, data_key(data_root, clips))
    root = (cache_dir or default_cache_dir()) / key
    done = root / "index.json"
    if done.is_file():
        log.info("feature cache %s reused", root)
        return _open(root, levels, json.loads(done.read_text()))
    log.info("building feature cache %s", root)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _build(cfg, clips, levels, tmp, init_stride, progress)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return _open(root, levels, json.loads(done.read_text()))


def _plan(clips: list[Sequence], init_stride: int) -> tuple[list, list]:
    inits, searches = [], []
    for s in clips:
        ok = present(s.boxes)
        idx = np.flatnonzero(ok)
        last = int(idx[-1])
        for j in idx:
            searches.append((s.name, int(j)))
            if j % init_stride == 0 and j < last:
                inits.append((s.name, int(j)))
    return inits, searches


@torch.no_grad()
def _build(
    cfg: TrackerConfig,
    clips: list[Sequence],
    levels: list[str],
    out: Path,
    init_stride: int,
    progress: bool,
) -> None:
    s = cfg.search
    backbone = create_backbone(reference_runtime(cfg), levels)
    augs = augmentations(cfg)
    n_aug = 1 + len(augs)
    by_name = {c.name: c for c in clips}
    inits, searches = _plan(clips, init_stride)
    wide_size = round(s.crop_size * WIDE / 16.0) * 16
    init_arr, search_arr = {}, {}
    for lv in levels:
        stride, ch = LITE0_LEVELS[lv][1], LITE0_LEVELS[lv][2]
        n = s.crop_size // stride
        init_arr[lv] = np.lib.format.open_memmap(
            out / f"init_{lv}.npy", "w+", np.float16, (len(inits), n_aug, ch, n, n)
        )
        n = wide_size // stride
        search_arr[lv] = np.lib.format.open_memmap(
            out / f"search_{lv}.npy", "w+", np.float16, (len(searches), ch, n, n)
        )
    index: dict = {
        "levels": levels,
        "crop_size": s.crop_size,
        "wide_size": wide_size,
        "n_aug": n_aug,
        "clips": {},
    }
    for c in clips:
        index["clips"][c.name] = {
            "frames": len(c),
            "boxes": np.nan_to_num(c.boxes, nan=0.0).tolist(),
            "present": present(c.boxes).tolist(),
            "init": {},
            "search": {},
        }
    bar = _bar(len(inits) + len(searches), progress, "feature cache")
    frames: dict[tuple[str, int], np.ndarray] = {}

    def frame(name: str, j: int) -> np.ndarray:
        if (name, j) not in frames:
            frames.clear()
            frames[(name, j)] = by_name[name].frame(j)
        return frames[(name, j)]

    for row, (name, j) in enumerate(inits):
        x, y, w, h = by_name[name].boxes[j]
        crop = search_crop((x + w / 2, y + h / 2), (w, h), s.search_area, s.crop_size, s.min_side)
        images, centres = augmented_crops(frame(name, j), crop, augs)
        feats = backbone.extract(crops_to_tensor(images, backbone.device))
        for lv in levels:
            init_arr[lv][row] = feats[lv].cpu().numpy().astype(np.float16)
        index["clips"][name]["init"][str(j)] = {
            "row": row,
            "crop": [crop.cx, crop.cy, crop.side, crop.out_size],
            "centres": [list(map(float, c)) for c in centres],
        }
        bar.update(1)
    batch: list[tuple[int, str, int]] = []

    def flush() -> None:
        if not batch:
            return
        images = []
        for row, name, j in batch:
            x, y, w, h = by_name[name].boxes[j]
            crop = search_crop(
                (x + w / 2, y + h / 2), (w, h), s.search_area * WIDE, wide_size, s.min_side * WIDE
            )
            images.append(crop_image(frame(name, j), crop))
            index["clips"][name]["search"][str(j)] = {
                "row": row,
                "crop": [crop.cx, crop.cy, crop.side, crop.out_size],
            }
        feats = backbone.extract(crops_to_tensor(images, backbone.device))
        rows = [b[0] for b in batch]
        for lv in levels:
            search_arr[lv][rows[0] : rows[-1] + 1] = feats[lv].cpu().numpy().astype(np.float16)
        bar.update(len(batch))
        batch.clear()

    for row, (name, j) in enumerate(searches):
        batch.append((row, name, j))
        if len(batch) == 8:
            flush()
    flush()
    bar.close()
    for arr in (*init_arr.values(), *search_arr.values()):
        arr.flush()
    (out / "index.json").write_text(json.dumps(index))


def _bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="crop", dynamic_ncols=True)

"""Training clips and their split by source video.

Why by video: ``_a`` / ``_b`` windows of one video (and DAVIS clips of one scene) share
appearance, so a split by clip would leak the validation targets into training. The split is a
fixed function of the clip names, the manifest's ``source_video`` and a seed, so every run and
every process agrees on it without passing it around.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meta_tracker_ros.evaluation.datasets import Sequence, load_sequences


@dataclass
class Split:
    """Clip names for training and for validation (early stopping, model selection)."""

    train: list[str]
    val: list[str]


def present(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: frames whose ground-truth box exists (absent frames are NaN or 0,0,0,0)."""
    ok = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (boxes[:, 2] > 1.0) & (boxes[:, 3] > 1.0)
    return ok


def source_videos(root: Path) -> dict[str, str]:
    """Clip name -> source video, from manifest.json (the clip's own name when unknown)."""
    manifest = root / "manifest.json"
    out: dict[str, str] = {}
    if manifest.is_file():
        for entry in json.loads(manifest.read_text()):
            video = entry.get("source_video") or entry["name"]
            out[entry["name"]] = f"{entry.get('dataset', '').split()[0]}:{video}"
    return out


def split_clips(
    names: list[str], videos: dict[str, str], val_fraction: float = 0.15, seed: int = 0
) -> Split:
    """Split clip names by source video: about ``val_fraction`` of the videos go to validation."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(videos.get(name, name), []).append(name)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_val = max(1, round(val_fraction * len(keys))) if len(keys) > 1 else 0
    val = sorted(n for k in keys[:n_val] for n in groups[k])
    train = sorted(n for k in keys[n_val:] for n in groups[k])
    return Split(train, val)


def load_clips(root: str | Path) -> list[Sequence]:
    """Every clip under ``root`` (shared/data layout) with at least two frames with a target."""
    _, seqs = load_sequences(Path(root), "shared")
    return [s for s in seqs if int(present(s.boxes).sum()) >= 2]


MIRROR_SUFFIX = "~mirror"


@dataclass
class MirroredClip(Sequence):
    """A training clip played left-right mirrored: frames flipped, boxes reflected.

    Why real flipped images rather than flipped feature maps: the backbone is not
    flip-equivariant (the cosine between the flipped s8 features of an image and the s8
    features of the flipped image measured 0.66-0.70 on six training frames; README), so a
    mirror in feature space would train the projection on features the tracker never sees. A
    mirrored video is a new, valid video of a target moving the other way, which is what a
    training set of 60 clips is short of.
    """

    width: int = 0

    def frame(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(super().frame(index)[:, ::-1])


def mirrored(clip: Sequence) -> MirroredClip:
    """``clip`` mirrored left-right; a box ``x`` maps to ``width - x - w`` (pixel edges)."""
    width = int(clip.frame(0).shape[1])
    boxes = clip.boxes.copy()
    boxes[:, 0] = width - boxes[:, 0] - boxes[:, 2]
    return MirroredClip(
        name=clip.name + MIRROR_SUFFIX,
        frames=list(clip.frames),
        boxes=boxes,
        masks=None,
        attributes=list(clip.attributes),
        meta={**clip.meta, "mirrored_from": clip.name},
        width=width,
    )


def data_key(root: str | Path, clips: list[Sequence]) -> str:
    """Short hash of the manifest and of every clip's frame count and ground truth."""
    h = hashlib.sha256()
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for s in clips:
        h.update(s.name.encode())
        h.update(str(len(s)).encode())
        h.update(np.nan_to_num(s.boxes, nan=-1.0).astype(np.float32).tobytes())
    return h.hexdigest()[:16]

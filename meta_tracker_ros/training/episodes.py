"""Training episodes that mirror the tracker's online procedure.

An episode is what one target goes through: the first frame's augmented search crops (the
*train* samples the classifier is initialised on), optionally a few later frames written to the
memory as the tracker writes confident frames (for the online-update step), and *test* frames
1..``max_gap`` frames later, cut as the tracker would cut them: around the previous frame's
position and size, with centre and scale jitter, because the tracker never sees a perfectly
centred target. Test crops are resampled from the cache's wide crops in feature space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from meta_tracker_ros.core.backbone import LITE0_LEVELS
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import Crop, search_crop
from meta_tracker_ros.core.target import crop_cells, to_cell
from meta_tracker_ros.training.cache import FeatureCache


@dataclass
class EpisodeConfig:
    """How episodes are drawn (defaults sized for this CPU and short training clips)."""

    test_frames: int = 3  # test frames per episode
    max_gap: int = 50  # test frames come from the next max_gap frames
    center_jitter: float = 0.1  # sigma of the crop-centre error, x sqrt(target area)
    scale_jitter: float = 0.08  # sigma of log(crop size error)
    far_prob: float = 0.15  # share of test crops with 5x the centre jitter (re-detection)
    memory_prob: float = 0.5  # share of episodes that also train the online update
    memory_frames: int = 3  # memory frames written between init and test
    memory_weight: tuple[float, float] = (0.2, 0.65)  # range of the memory's share of weight
    # Share of episodes played backwards in time (test and memory frames before the init
    # frame, each crop cut around the following frame's box): tracking is symmetric in time,
    # so this doubles the appearance changes sixty short clips offer.
    reverse_prob: float = 0.0


@dataclass
class View:
    """Features of crops of one clip and where the target is in each (cells, level 0 grid)."""

    feats: dict[str, torch.Tensor]  # level -> (N, C, h, w) float32
    centers: torch.Tensor  # (N, 2) target (row, col) cells
    dims: list[tuple[float, float]]  # target (h, w) cells per crop


@dataclass
class Episode:
    clip: str
    init: View  # the first-frame augmentations (sample 0 is the plain crop)
    test: View
    memory: View | None = None
    memory_weight: float = 0.0
    meta: dict = field(default_factory=dict)


class EpisodeSampler:
    """Draw episodes from a :class:`FeatureCache` for a list of clips (one rng per sampler)."""

    def __init__(
        self,
        cache: FeatureCache,
        cfg: TrackerConfig,
        clips: list[str],
        ecfg: EpisodeConfig,
        seed: int,
    ) -> None:
        self.cache = cache
        self.cfg = cfg
        self.ecfg = ecfg
        self.rng = np.random.default_rng(seed)
        self.levels = cache.levels
        self.stride = LITE0_LEVELS[cfg.classifier.feature_levels[0]][1]
        # Init frames with at least one present frame after them, per clip.
        self.starts: list[tuple[str, int]] = []
        for name in clips:
            info = cache.clips.get(name)
            if info is None:
                continue
            for j in sorted(int(k) for k in info["init"]):
                if self._later(name, j):
                    self.starts.append((name, j))
        if not self.starts:
            raise ValueError("no episodes can be drawn from these clips")

    def _later(self, name: str, j: int) -> list[int]:
        info = self.cache.clips[name]
        hi = min(info["frames"], j + 1 + self.ecfg.max_gap)
        return [t for t in range(j + 1, hi) if info["present"][t] and str(t) in info["search"]]

    def _earlier(self, name: str, j: int) -> list[int]:
        """Frames before ``j`` usable as test frames, nearest first (backward tracking order)."""
        info = self.cache.clips[name]
        lo = max(0, j - self.ecfg.max_gap)
        frames = range(j - 1, lo - 1, -1)
        return [t for t in frames if info["present"][t] and str(t) in info["search"]]

    # ------------------------------------------------------------------ pieces
    def _init_view(self, name: str, j: int) -> View:
        info = self.cache.clips[name]
        entry = info["init"][str(j)]
        row = entry["row"]
        feats = {
            lv: torch.from_numpy(np.asarray(self.cache.init[lv][row], np.float32))
            for lv in self.levels
        }
        crop = Crop(*entry["crop"][:3], int(entry["crop"][3]))
        x, y, w, h = info["boxes"][j]
        _, dims = crop_cells(self.stride, crop, (x + w / 2, y + h / 2), (w, h))
        s = self.stride
        centers = torch.tensor(
            [[to_cell(v, s), to_cell(u, s)] for u, v in entry["centres"]],
            dtype=torch.float32,
        )
        return View(feats, centers, [dims] * centers.shape[0])

    def _crop_view(self, name: str, frames: list[int], prev: list[int]) -> View:
        """Search crops at ``frames``, centred on the box of ``prev`` (jittered)."""
        info = self.cache.clips[name]
        s, e = self.cfg.search, self.ecfg
        per_level: dict[str, list[torch.Tensor]] = {lv: [] for lv in self.levels}
        centers, dims_all = [], []
        for t, p in zip(frames, prev, strict=True):
            x, y, w, h = info["boxes"][p]
            size = math.sqrt(w * h)
            jit = e.center_jitter * (5.0 if self.rng.random() < e.far_prob else 1.0)
            cx = x + w / 2 + self.rng.normal() * jit * size
            cy = y + h / 2 + self.rng.normal() * jit * size
            f = math.exp(self.rng.normal() * e.scale_jitter)
            crop = search_crop((cx, cy), (w * f, h * f), s.search_area, s.crop_size, s.min_side)
            entry = info["search"][str(t)]
            wide = Crop(*entry["crop"][:3], int(entry["crop"][3]))
            for lv in self.levels:
                arr = torch.from_numpy(np.asarray(self.cache.search[lv][entry["row"]], np.float32))
                per_level[lv].append(resample(arr, wide, crop, LITE0_LEVELS[lv][1]))
            gx, gy, gw, gh = info["boxes"][t]
            pos, dims = crop_cells(self.stride, crop, (gx + gw / 2, gy + gh / 2), (gw, gh))
            centers.append(pos)
            dims_all.append(dims)
        feats = {lv: torch.stack(v) for lv, v in per_level.items()}
        return View(feats, torch.tensor(centers, dtype=torch.float32), dims_all)

    def _previous(self, name: str, t: int) -> int:
        info = self.cache.clips[name]
        p = t - 1
        while p >= 0 and not info["present"][p]:
            p -= 1
        return max(p, 0)

    def _following(self, name: str, t: int) -> int:
        """The previous frame of backward tracking: the next present frame after ``t``."""
        info = self.cache.clips[name]
        n = info["frames"]
        p = t + 1
        while p < n and not info["present"][p]:
            p += 1
        return min(p, n - 1)

    # ------------------------------------------------------------------ episodes
    def sample(self) -> Episode:
        """One episode: forward in time, or backward with probability ``reverse_prob``.

        ``order`` lists the candidate test frames in tracking order (nearest first) and
        ``before`` gives each frame's predecessor in that order, whose box cuts its crop.
        Frames are drawn by position in ``order``: forward, the same draws as by value.
        """
        name, j = self.starts[int(self.rng.integers(len(self.starts)))]
        e = self.ecfg
        order, before, backward = self._later(name, j), self._previous, False
        if e.reverse_prob > 0 and self.rng.random() < e.reverse_prob:
            earlier = self._earlier(name, j)
            if earlier:
                order, before, backward = earlier, self._following, True
        k = min(e.test_frames, len(order))
        idx = sorted(self.rng.choice(len(order), size=k, replace=False).tolist())
        test = [order[i] for i in idx]
        memory = None
        weight = 0.0
        if self.rng.random() < e.memory_prob and len(order) > 1:
            # Memory frames come before the last test frame (the tracker only writes the past).
            pool = order[: idx[-1]] or order[:1]
            m = min(e.memory_frames, len(pool))
            picks = sorted(self.rng.choice(len(pool), size=m, replace=False).tolist())
            mem = [pool[i] for i in picks]
            memory = self._crop_view(name, mem, [before(name, t) for t in mem])
            weight = float(self.rng.uniform(*e.memory_weight))
        meta = {"init_frame": j, "test_frames": test}
        if backward:
            meta["backward"] = True
        return Episode(
            clip=name,
            init=self._init_view(name, j),
            test=self._crop_view(name, test, [before(name, t) for t in test]),
            memory=memory,
            memory_weight=weight,
            meta=meta,
        )


def resample(feat: torch.Tensor, wide: Crop, crop: Crop, stride: int) -> torch.Tensor:
    """Features of ``crop`` bilinearly resampled from features (C, h, w) of the ``wide`` crop.

    Cell (r, c) of the output covers crop pixel ``c * stride + (stride - 1) / 2``; that point is
    mapped to image coordinates, then into the wide crop's pixels and cells (the CPU equivalent
    of ``roi_align`` with one sample per cell). Outside the wide crop the features are zero.
    """
    n = crop.out_size // stride
    idx = torch.arange(n, dtype=torch.float32) * stride + (stride - 1) / 2.0
    ox, oy = crop.origin
    wx, wy = wide.origin
    px = (idx / crop.scale + ox - wx) * wide.scale  # wide-crop pixels
    py = (idx / crop.scale + oy - wy) * wide.scale
    cx = (px - (stride - 1) / 2.0) / stride  # wide-crop cells
    cy = (py - (stride - 1) / 2.0) / stride
    h, w = feat.shape[-2:]
    gx = ((2.0 * cx + 1.0) / w - 1.0).view(1, n).expand(n, n)
    gy = ((2.0 * cy + 1.0) / h - 1.0).view(n, 1).expand(n, n)
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0)
    return F.grid_sample(
        feat.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[0]

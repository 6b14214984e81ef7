"""Several targets tracked with one backbone pass per frame.

Why: the backbone is most of the cost (about 20 ms per 256 px crop on a small CPU), and running
it once per target in a Python loop would also forgo batching. Each frame, every target's search
crop is cut, crops of equal size are stacked into one batch, the backbone runs once per crop
size (once in the common case where no target is searching a wider region), and each
:class:`TargetTrack` gets its slice of the features. Crops are never padded to the largest: a
LOST target's wider crop (up to twice the side) made every other target's crop up to four
times as expensive (issue 11: 4 targets with some LOST took 438 ms). The single-target
:class:`~meta_tracker_ros.core.tracker.Tracker` is this class with one target.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from meta_tracker_ros.core.augment import augmentation_list, augmented_crops
from meta_tracker_ros.core.backbone import LITE0_LEVELS, Backbone, create_backbone
from meta_tracker_ros.core.config import TrackerConfig, head_threads, load_config
from meta_tracker_ros.core.geometry import crop_image, crops_to_tensor, search_crop
from meta_tracker_ros.core.heads.box_refiner import LEVELS as REFINER_LEVELS
from meta_tracker_ros.core.heads.box_refiner import SHIPPED as SHIPPED_REFINER
from meta_tracker_ros.core.heads.box_refiner import BoxRefinerFile, load_refiner
from meta_tracker_ros.core.heads.learned import SHIPPED, LearnedClassifier, load_learned
from meta_tracker_ros.core.heads.mask_decoder import SHIPPED as SHIPPED_DECODER
from meta_tracker_ros.core.heads.mask_decoder import MaskDecoderFile, load_decoder
from meta_tracker_ros.core.heads.mask_head import MaskHead
from meta_tracker_ros.core.heads.scale_head import LEVELS as SCALE_HEAD_LEVELS
from meta_tracker_ros.core.heads.scale_head import SHIPPED as SHIPPED_SCALE_HEAD
from meta_tracker_ros.core.heads.scale_head import ScaleHeadFile, load_head
from meta_tracker_ros.core.target import TargetTrack, crop_size_for
from meta_tracker_ros.core.timing import StageTimes
from meta_tracker_ros.core.types import Box, TrackResult, TrackState, validate_box, validate_frame

log = logging.getLogger(__name__)

# Config fields the tracker reads once, when it is built (backbone levels, heads, the learned
# classifier file), not per target: changing one needs a rebuilt tracker (see
# :meth:`MultiTracker.reconfigure`). Any "*.feature_levels" counts too, so levels added to new
# sections are covered; mask.feature_weight decides whether the mask head's levels are computed
# at all; the learned classifier file is loaded (and checked against proj_dim) once per tracker.
STRUCTURAL_FIELDS = frozenset(
    {
        "mask.enabled",
        "mask.feature_weight",
        "mask.learned",
        "mask.weights_path",
        "mask.ridge_levels",
        "scale.enabled",
        "scale.method",
        "scale.weights_path",
        "box_refine.enabled",
        "box_refine.weights_path",
        "search.crop_size",
        "classifier.learned",
        "classifier.weights_path",
        "classifier.proj_dim",
    }
)


def is_structural(name: str) -> bool:
    """Whether changing config field ``name`` ("section.field") needs a rebuilt tracker."""
    return name in STRUCTURAL_FIELDS or name.endswith("feature_levels")


def structural_changes(old: TrackerConfig, new: TrackerConfig) -> list[str]:
    """Names of the structural fields whose values differ between ``old`` and ``new``."""
    a, b = old.flat(), new.flat()
    return sorted(k for k in b if is_structural(k) and a.get(k) != b[k])


def load_classifier(cfg: TrackerConfig, device: torch.device) -> LearnedClassifier | None:
    """The learned classifier file of ``cfg`` checked against it (None when learned is off)."""
    c = cfg.classifier
    if not c.learned:
        return None
    learned = load_learned(c.weights_path or SHIPPED, device)
    channels = [LITE0_LEVELS[lv][2] for lv in c.feature_levels]
    learned.check(cfg.backbone.name, c.feature_levels, channels, c.proj_dim)
    return learned


def load_mask_decoder(cfg: TrackerConfig) -> MaskDecoderFile | None:
    """The learned mask decoder of ``cfg`` checked against it (None when off)."""
    m = cfg.mask
    if not (m.enabled and m.learned):
        return None
    dec = load_decoder(m.weights_path or SHIPPED_DECODER)
    dec.check(
        cfg.backbone.name,
        dec.meta.get("levels", []),
        m.work_size,
        m.context,
        m.ridge_levels,
        m.ridge_reg,
    )
    levels = dec.meta["levels"]
    channels = [LITE0_LEVELS[lv][2] for lv in levels if lv in LITE0_LEVELS]
    if channels != dec.decoder.channels:
        raise ValueError(f"mask decoder file {dec.meta['path']}: levels {levels} do not match")
    return dec


def load_box_refiner(cfg: TrackerConfig) -> BoxRefinerFile | None:
    """The learned box refiner of ``cfg`` checked against it (None when off)."""
    b = cfg.box_refine
    if not b.enabled:
        return None
    ref = load_refiner(b.weights_path or SHIPPED_REFINER)
    ref.check(cfg.backbone.name)
    return ref


def load_scale_head(cfg: TrackerConfig) -> ScaleHeadFile | None:
    """The learned scale head of ``cfg`` checked against it (None for the DSST filter or off)."""
    sc = cfg.scale
    if sc.method not in ("dsst", "learned"):
        raise ValueError(f"scale.method must be 'dsst' or 'learned', got {sc.method!r}")
    if not 0.0 <= sc.learned_weight <= 1.0:
        raise ValueError(f"scale.learned_weight must be in [0, 1], got {sc.learned_weight}")
    if not sc.enabled or sc.method != "learned":
        return None
    head = load_head(sc.weights_path or SHIPPED_SCALE_HEAD)
    head.check(cfg.backbone.name)
    return head


class MultiTracker:
    """Track any number of targets, keyed by hashable ids, sharing one backbone pass per frame."""

    def __init__(self, config: TrackerConfig | str | None = None) -> None:
        self.config = load_config(config)
        cfg = self.config
        # Levels are computed only for the heads that read them: the classifier, the scale
        # filter, and the mask head's feature-matching term when it is on.
        levels = set(cfg.classifier.feature_levels)
        if cfg.scale.enabled:
            levels |= {lv for lv in cfg.scale.feature_levels if lv != "projected"}
        self.scale_head = load_scale_head(cfg)
        if self.scale_head is not None:
            levels |= set(SCALE_HEAD_LEVELS)
        if cfg.mask.enabled and cfg.mask.feature_weight > 0:
            levels |= set(cfg.mask.feature_levels)
        self.mask_decoder = load_mask_decoder(cfg)
        if self.mask_decoder is not None:
            levels |= set(self.mask_decoder.meta["levels"])
            if "ridge" in self.mask_decoder.decoder.cues:
                levels |= set(cfg.mask.ridge_levels)
        self.box_refiner = load_box_refiner(cfg)
        if self.box_refiner is not None:
            levels |= set(REFINER_LEVELS)
        unknown = sorted(lv for lv in levels if lv not in LITE0_LEVELS)
        if unknown:
            raise ValueError(f"unknown feature level(s) {unknown}; known: {list(LITE0_LEVELS)}")
        if cfg.search.crop_size % 16 != 0:
            raise ValueError(
                f"search.crop_size must be a multiple of 16, got {cfg.search.crop_size}"
            )
        if cfg.search.max_crop_size < 0 or cfg.search.max_crop_size % 16 != 0:
            raise ValueError(
                "search.max_crop_size must be 0 or a multiple of 16, "
                f"got {cfg.search.max_crop_size}"
            )
        self.levels = sorted(levels, key=lambda lv: LITE0_LEVELS[lv][1])
        self.backbone: Backbone = create_backbone(cfg, self.levels)
        self.device = self.backbone.device
        if self.box_refiner is not None:
            self.box_refiner.refiner.to(self.device)
        if self.scale_head is not None:
            self.scale_head.head.to(self.device)
        self.learned = load_classifier(cfg, self.device)
        self._targets: dict[Hashable, TargetTrack] = {}
        self.frames = 0
        self.times = StageTimes()  # per-stage times of recent track() calls (timing.py)
        if cfg.runtime.head_threads < 0:
            raise ValueError(f"runtime.head_threads must be >= 0, got {cfg.runtime.head_threads}")
        threads = head_threads(cfg.runtime.head_threads, cfg.runtime.num_threads)
        # One helper thread is all there is work for: track() hands it at most one job at a
        # time (one target's update, or every second target), so more threads would idle.
        self._head_pool = ThreadPoolExecutor(1, thread_name_prefix="heads") if threads > 1 else None

    @property
    def ids(self) -> list[Hashable]:
        """Ids of the targets currently tracked, in insertion order."""
        return list(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def _extract(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Features of equally sized crops: one backbone call, or several of at most
        ``backbone.max_crops_per_call`` crops where the runtime batches badly (CPU torch)."""
        step = self.backbone.max_crops_per_call or len(images)
        parts = []
        for k in range(0, len(images), step):
            with self.times.measure("to_tensor"):
                batch = crops_to_tensor(
                    images[k : k + step], self.device, self.backbone.contiguous_input
                )
            with self.times.measure("backbone"):
                parts.append(self.backbone.extract(batch))
        if len(parts) == 1:
            return parts[0]
        return {lv: torch.cat([p[lv] for p in parts]) for lv in parts[0]}

    def _extract_each(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """Features per crop: one backbone call per distinct crop size, no padding."""
        groups: dict[int, list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[0], []).append(i)
        out: list[dict[str, torch.Tensor]] = [{} for _ in images]
        for idx in groups.values():
            feats = self._extract([images[i] for i in idx])
            for j, i in enumerate(idx):
                out[i] = {lv: f[j : j + 1] for lv, f in feats.items()}
        return out

    @torch.no_grad()
    def add(
        self, target_id: Hashable, frame: np.ndarray, box: Box, mask: np.ndarray | None = None
    ) -> None:
        """Start tracking ``box`` (x, y, w, h, 0-based) in ``frame``; replaces an existing id."""
        frame = validate_frame(frame)
        box = validate_box(box, (frame.shape[1], frame.shape[0]))
        if mask is not None and mask.shape[:2] != frame.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match frame {frame.shape[:2]}")
        cfg = self.config
        dec = self.mask_decoder
        head = (
            MaskHead(
                cfg.mask,
                self.device,
                dec.decoder if dec else None,
                dec.meta["levels"] if dec else None,
            )
            if cfg.mask.enabled
            else None
        )
        refiner = self.box_refiner.refiner if self.box_refiner else None
        scale_head = self.scale_head.head if self.scale_head else None
        target = TargetTrack(cfg, self.device, head, self.learned, refiner, scale_head)
        target.times = self.times
        target.slot = self._free_slot(target_id)
        cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        s = cfg.search
        crop = search_crop((cx, cy), box[2:], s.search_area, s.crop_size, s.min_side)
        c = cfg.classifier
        augs = (
            augmentation_list(c.augment_shift, c.augment_blur, c.augment_rotations)
            if c.augment
            else []
        )
        images, centres = augmented_crops(frame, crop, augs)
        feats = self._extract(images)
        target.initialize(frame, box, crop, centres, feats, mask)
        self._targets[target_id] = target

    def _free_slot(self, target_id: Hashable) -> int:
        """Smallest slot no other target holds (a replaced id gives its slot back)."""
        taken = {t.slot for tid, t in self._targets.items() if tid != target_id}
        return next(i for i in range(len(taken) + 1) if i not in taken)

    def remove(self, target_id: Hashable) -> None:
        """Stop tracking ``target_id``; raises KeyError if it is unknown."""
        if target_id not in self._targets:
            raise KeyError(f"no target with id {target_id!r}")
        del self._targets[target_id]

    def clear(self) -> None:
        self._targets.clear()

    def reconfigure(
        self, config: TrackerConfig, frame: np.ndarray | None = None
    ) -> dict[Hashable, str]:
        """Apply a changed ``config``; rebuild the tracker when a structural field changed.

        Without a structural change (:func:`structural_changes`) the new config only applies to
        targets added from now on. With one, the backbone and heads are built anew from
        ``config`` (a failure raises and leaves this tracker unchanged), and every current
        target that is not LOST is re-initialised on ``frame`` (BGR uint8, normally the newest
        image) at its last box (x, y, w, h); the others are dropped.

        Returns ``{target_id: reason}`` for the targets dropped (empty when all were kept).
        """
        changed = structural_changes(self.config, config)
        if not changed:
            self.config = config  # current targets keep the config they were initialised with
            return {}
        fresh = type(self)(config)
        dropped: dict[Hashable, str] = {}
        for tid, target in self._targets.items():
            if frame is None:
                dropped[tid] = "no frame to re-initialise on"
            elif target.states.state == TrackState.LOST:
                dropped[tid] = "lost"
            else:
                try:
                    fresh.add(tid, frame, target.box())
                except ValueError as exc:
                    dropped[tid] = str(exc)
        log.info("tracker rebuilt for %s; dropped targets: %s", changed, dropped or "none")
        vars(self).clear()
        vars(self).update(vars(fresh))
        return dropped

    @staticmethod
    @torch.no_grad()  # grad mode is per thread
    def _step_all(frame: np.ndarray, jobs: list) -> dict[Hashable, TrackResult]:
        return {tid: target.step(frame, mine, crop) for (tid, target), crop, mine in jobs}

    @torch.no_grad()
    def track(self, frame: np.ndarray) -> dict[Hashable, TrackResult]:
        """Advance every target by one frame: one backbone call for all of them."""
        frame = validate_frame(frame)
        if not self._targets:
            return {}
        self.times.begin()
        try:
            targets = list(self._targets.items())
            with self.times.measure("crop"):
                crops = [t.next_crop() for _, t in targets]
                images = [crop_image(frame, c) for c in crops]
            feats = self._extract_each(images)
            jobs = list(zip(targets, crops, feats, strict=True))
            results: dict[Hashable, TrackResult] = {}
            pool = self._head_pool
            if pool is not None and len(jobs) > 1:
                # Several targets: every second one steps on the helper thread (targets share
                # no state), each of them in turn inside its thread.
                helper = pool.submit(self._step_all, frame, jobs[1::2])
                results.update(self._step_all(frame, jobs[0::2]))
                results.update(helper.result())
                results = {tid: results[tid] for tid, _ in targets}  # insertion order
            else:
                for (tid, target), crop, mine in jobs:
                    results[tid] = target.step(frame, mine, crop, pool)
            self.frames += 1
        finally:
            self.times.end()
        return results


def create_multi_tracker(config: TrackerConfig | str | None = None) -> MultiTracker:
    """A multi-target tracker from a TrackerConfig, a YAML path, or None (shipped defaults)."""
    return MultiTracker(config)


__all__ = [
    "STRUCTURAL_FIELDS",
    "MultiTracker",
    "create_multi_tracker",
    "crop_size_for",
    "is_structural",
    "structural_changes",
]

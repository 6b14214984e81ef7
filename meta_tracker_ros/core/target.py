"""Everything the tracker knows about one target, and its per-frame update given features.

Why a separate object: the multi-target tracker runs the backbone once per frame on a batch of
all targets' search crops, then hands each target its slice of the features. Keeping all
per-target state (position, size, classifier, memory, scale filter, state machine, mask head)
here means the single-target tracker is just the multi-target one with one target: one code
path for both.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from meta_tracker_ros.core.backbone.base import LITE0_LEVELS
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import Crop, clamp_box, iou_xywh, iround, search_crop
from meta_tracker_ros.core.heads.box_refiner import LEVELS as REFINER_LEVELS
from meta_tracker_ros.core.heads.box_refiner import BoxRefiner, Reference, fit_reference
from meta_tracker_ros.core.heads.classifier import FeatureProjector, FilterClassifier
from meta_tracker_ros.core.heads.learned import LearnedClassifier
from meta_tracker_ros.core.heads.mask_head import MaskEstimate
from meta_tracker_ros.core.heads.scale_head import LEVELS as SCALE_HEAD_LEVELS
from meta_tracker_ros.core.heads.scale_head import LearnedScale, ScaleHead
from meta_tracker_ros.core.heads.solver import SolverParams, sample_energy
from meta_tracker_ros.core.localization import (
    PeakKind,
    StateMachine,
    find_peak,
    hann2d,
)
from meta_tracker_ros.core.memory import SampleMemory
from meta_tracker_ros.core.scale import ScaleFilter, smooth_size
from meta_tracker_ros.core.timing import StageTimes
from meta_tracker_ros.core.types import Box, TrackResult, TrackState

log = logging.getLogger(__name__)

# Largest offset of the mask extent's centre from the classifier centre, in box sides: the
# classifier owns the position; the mask may only say where the target's bulk lies around it.
_MAX_MASK_OFFSET = 0.5


@dataclass(frozen=True)
class BoxConvention:
    """How the user's first box relates to the tight box of the first frame's mask.

    Why: box from mask replaces the classifier's box with the mask's tight box, but the box a
    person or a detector draws is not always that box (an annotator's box around a singer or a
    dog may leave out an arm or a tail, or include a held object). Measured on training clips
    the decoder never saw (box-annotated OTB / VOT / DTB clips): the raw mask box lost AUC on
    them (5 runs better, 12 worse), the mask box mapped through the first frame's relation
    was level (6 / 10, mean -0.002). The first frame is the one frame where both are known, so
    every later mask box is mapped through the same relation: centre offset in mask-box sides,
    size ratio per axis (clipped to ``MAX_RATIO``, so a failed first mask cannot run away).
    """

    dx: float = 0.0  # (box centre - mask box centre) / mask box width
    dy: float = 0.0
    rw: float = 1.0  # box width / mask box width
    rh: float = 1.0

    MAX_RATIO = 1.5

    @classmethod
    def fit(cls, box: Box, mask_box: Box) -> BoxConvention:
        r = cls.MAX_RATIO
        return cls(
            dx=(box[0] + box[2] / 2.0 - mask_box[0] - mask_box[2] / 2.0) / mask_box[2],
            dy=(box[1] + box[3] / 2.0 - mask_box[1] - mask_box[3] / 2.0) / mask_box[3],
            rw=float(np.clip(box[2] / mask_box[2], 1.0 / r, r)),
            rh=float(np.clip(box[3] / mask_box[3], 1.0 / r, r)),
        )

    def apply(self, mask_box: Box) -> Box:
        """The box the user would have drawn around a target with this mask box."""
        x, y, w, h = mask_box
        cx = x + w / 2.0 + self.dx * w
        cy = y + h / 2.0 + self.dy * h
        bw, bh = w * self.rw, h * self.rh
        return (cx - bw / 2.0, cy - bh / 2.0, bw, bh)


def _size_towards(
    size: tuple[float, float], box: Box, weight: float, max_change: float
) -> tuple[float, float]:
    """Move ``size`` towards ``box``'s size per axis: ratio clipped to ``max_change``, ^weight."""
    lo, hi = 1.0 / max_change, max_change
    fw = float(np.clip(box[2] / size[0], lo, hi)) ** weight
    fh = float(np.clip(box[3] / size[1], lo, hi)) ** weight
    return (size[0] * fw, size[1] * fh)


def to_cell(u: float, stride: int) -> float:
    """Crop pixel coordinate -> feature cell coordinate at ``stride`` (cell centres)."""
    return (u - (stride - 1) / 2.0) / stride


def crop_cells(
    stride: int, crop: Crop, center: tuple[float, float], size: tuple[float, float]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Target (row, col) centre and (h, w) size in feature cells of ``crop``."""
    u, v = crop.to_crop_point(*center)
    pos = (to_cell(v, stride), to_cell(u, stride))
    dims = (size[1] * crop.scale / stride, size[0] * crop.scale / stride)
    return pos, dims


def crop_size_for(config: TrackerConfig, search_area: float, capped: bool = True) -> int:
    """Crop side in pixels that keeps the target's pixel size when the search area grows.

    With ``capped``, at most ``search.max_crop_size`` (when set; never below ``crop_size``): a
    wider region is then resampled to fewer pixels (backbone cost grows with the side squared).
    """
    s = config.search
    size = max(16, iround(s.crop_size * search_area / s.search_area / 16.0) * 16)
    if capped and s.max_crop_size > 0:
        size = min(size, max(s.max_crop_size, s.crop_size))
    return size


def moved_estimate(est: MaskEstimate, old: Box, new: Box) -> MaskEstimate:
    """``est`` carried from box ``old`` to box ``new``: shifted with the centre, scaled with the
    width (the box keeps its aspect ratio). What ``mask.interval`` shows between segmentations.
    """
    a = new[2] / old[2] if old[2] > 0 else 1.0
    ocx, ocy = old[0] + old[2] / 2.0, old[1] + old[3] / 2.0
    ncx, ncy = new[0] + new[2] / 2.0, new[1] + new[3] / 2.0
    ox, oy = est.origin
    origin = (ncx + a * (ox - ocx), ncy + a * (oy - ocy))
    return MaskEstimate.covering(est.prob, origin, est.scale / a, est.confidence, est.min_pixels)


def refinement_phase(slot: int, interval: int) -> int:
    """Frame offset of the scheduled filter refinement for the target in ``slot``.

    Why: every target refines its filter every ``memory.update_interval`` frames, and targets
    set on the same frame would all refine on the same frames; with 4 targets that frame cost
    4 refinements at once (stage_bench: per-frame p95 157 ms against a 103 ms mean). Offsets of
    ``slot`` times the golden ratio, modulo the interval, spread any number of targets evenly
    (0, 6, 2, 8, 4, ... for an interval of 10). Slot 0 keeps offset 0, so a single target
    refines exactly as before.
    """
    if interval <= 0:
        return 0
    return int(slot * 0.6180339887 * interval) % interval


class TargetTrack:
    """State of one tracked target. Call :meth:`initialize` once, then :meth:`step` per frame."""

    def __init__(
        self,
        config: TrackerConfig,
        device: torch.device,
        mask_head=None,
        learned: LearnedClassifier | None = None,
        refiner: BoxRefiner | None = None,
        scale_head: ScaleHead | None = None,
    ) -> None:
        self.cfg = config
        self.device = device
        self.stride = LITE0_LEVELS[config.classifier.feature_levels[0]][1]
        c = config.classifier
        if learned is not None:
            self.projector = FeatureProjector(
                c.feature_levels, c.proj_dim, learned.proj_weight, learned.proj_bias
            )
            self.solver: SolverParams | None = learned.solver
        else:  # hand-set: the classifier builds the solver constants from the config
            self.projector = FeatureProjector(c.feature_levels, c.proj_dim)
            self.solver = None
        self.classifier: FilterClassifier | None = None
        self.memory = SampleMemory(config.memory.size, config.memory.init_weight_floor)
        # Size estimators: the DSST filter, and the learned scale head when one is given (their
        # estimates are mixed in log space, scale.learned_weight being the head's share).
        self.scale = ScaleFilter(config.scale)
        self.scale_head = (
            LearnedScale(
                scale_head,
                [LITE0_LEVELS[lv][1] for lv in SCALE_HEAD_LEVELS],
                config.scale.learning_rate,
            )
            if scale_head is not None
            else None
        )
        self.states = StateMachine(config.localization)
        self.mask_head = mask_head
        self.refiner = refiner
        self._refiner_strides = [LITE0_LEVELS[lv][1] for lv in REFINER_LEVELS]
        self._reference: Reference | None = None
        self.center = (0.0, 0.0)
        self.size = (1.0, 1.0)
        self.search_area = config.search.search_area
        self.reference = 1.0
        self.frame = 0
        self.slot = 0  # this target's index among the MultiTracker's (see update_phase)
        self.image_size = (1, 1)
        self._windows: dict[tuple[int, int], np.ndarray] = {}
        self._mask_size = (1.0, 1.0)  # the mask head's own extent (mask_fusion.extent_*)
        self._mask_offset = (0.0, 0.0)  # its centre minus the classifier centre, in box sides
        self._convention = BoxConvention()  # user's box vs mask box (mask_fusion, box from mask)
        # The last segmented estimate and the box it was cut around (mask.interval > 1 moves it
        # with the box on the frames in between).
        self._last_mask: tuple[MaskEstimate, Box] | None = None
        # Whether the current frame's crop was resampled below the target's usual pixel size
        # (search.max_crop_size): its features are at another scale, so neither the scale
        # filter nor the sample memory learns from them.
        self._rescaled = False
        self.times = StageTimes()  # the MultiTracker shares its own (per-stage timings)

    @property
    def update_phase(self) -> int:
        """Frames by which the scheduled filter refinement is shifted (from :attr:`slot`).

        Derived, not stored, so it follows a reconfigured ``memory.update_interval``.
        """
        return refinement_phase(self.slot, self.cfg.memory.update_interval)

    # ------------------------------------------------------------------ geometry helpers
    def next_crop(self) -> Crop:
        """Search region for the coming frame (wider while the target is missing)."""
        s = self.cfg.search
        return search_crop(
            self.center,
            self.size,
            self.search_area,
            crop_size_for(self.cfg, self.search_area),
            s.min_side * self.search_area / s.search_area,
        )

    def _to_cell(self, u: float) -> float:
        return to_cell(u, self.stride)

    def _to_px(self, cell: float) -> float:
        return cell * self.stride + (self.stride - 1) / 2.0

    def _cells(self, crop: Crop, center: tuple[float, float], size: tuple[float, float]):
        return crop_cells(self.stride, crop, center, size)

    def box(self) -> Box:
        cx, cy = self.center
        w, h = self.size
        return clamp_box((cx - w / 2, cy - h / 2, w, h), self.image_size, 1.0)

    # ------------------------------------------------------------------ first frame
    def initialize(
        self,
        frame: np.ndarray,
        box: Box,
        crop: Crop,
        centres: list[tuple[float, float]],
        feats: dict[str, torch.Tensor],
        init_mask: np.ndarray | None,
    ) -> None:
        """Fit projection, classifier, memory and scale filter on the augmented first crops."""
        self.image_size = (frame.shape[1], frame.shape[0])
        x0, y0, w, h = box
        self.center = (x0 + w / 2.0, y0 + h / 2.0)
        self.size = (w, h)
        self._mask_size = (w, h)
        self._mask_offset = (0.0, 0.0)
        self.projector.fit(feats)
        x = self.projector(feats)
        _, dims = self._cells(crop, self.center, self.size)
        shape = tuple(x.shape[-2:])
        positions = [(self._to_cell(v), self._to_cell(u)) for u, v in centres]
        m = self.cfg.memory
        self.classifier = FilterClassifier(
            self.cfg.classifier,
            x.shape[1],
            self.device,
            self.solver,
            update_steps=max(m.update_steps, m.hard_negative_steps, 1),
        )
        y = self.classifier.targets(shape, positions, dims)
        n = x.shape[0]
        weights = torch.full((n,), 1.0 / n, device=self.device)
        xf, scores = self.classifier.initialize(x, y, weights, positions[0], dims)
        self.memory.initialize(xf, y, sample_energy(x))
        self.memory.set_scores(scores)  # the first refinement need not score them again
        first = self.classifier.scores(x[0:1])[0, 0]
        self.reference = max(float(first.max()), self.cfg.localization.score_reference_floor)
        if self.cfg.scale.enabled:
            self._scale_initialize(x[0:1], feats, positions[0], dims, crop, 0)
        if self.refiner is not None:
            self._reference = fit_reference(
                [feats[lv][0:1] for lv in REFINER_LEVELS],
                self._refiner_strides,
                self._crop_xyxy(crop),
            )
        if self.mask_head is not None:
            fm = {lv: f[0:1] for lv, f in feats.items()}
            score = first.cpu().numpy() / self.reference  # the decoder's score channel, if any
            self.mask_head.initialize(frame, box, fm, crop, init_mask, score)
            self._convention = BoxConvention()
            if self._box_from_mask:  # one decoder pass: how the user draws boxes
                first_box = self.mask_head.segment(frame, box, fm, crop, score).box()
                if first_box is not None:
                    self._convention = BoxConvention.fit(box, first_box)
        self.frame = 0
        self._last_mask = None

    # ------------------------------------------------------------------ per frame
    def _window(self, shape: tuple[int, int]) -> np.ndarray:
        if shape not in self._windows:
            self._windows[shape] = hann2d(*shape)
        return self._windows[shape]

    def step(
        self,
        frame: np.ndarray,
        feats: dict[str, torch.Tensor],
        crop: Crop,
        pool: ThreadPoolExecutor | None = None,
    ) -> TrackResult:
        """Localise, rescale, update state / memory / filter, run the mask head.

        ``pool``: a helper thread for the memory update beside the mask head (MultiTracker
        passes one with ``runtime.head_threads`` > 1 and a single target); None: in turn.
        """
        assert self.classifier is not None
        cfg = self.cfg
        self.frame += 1
        self.image_size = (frame.shape[1], frame.shape[0])
        was_lost = self.states.state == TrackState.LOST
        self._rescaled = crop.out_size < crop_size_for(cfg, self.search_area, capped=False)
        t0 = time.perf_counter()
        x = self.projector(feats)
        hw = (int(x.shape[2]), int(x.shape[3]))
        xf = self.classifier.spectra(x)
        score_map = self.classifier.scores_from_spectra(xf, hw)
        score = score_map[0, 0].cpu().numpy()
        prev_pos, dims = self._cells(crop, self.center, self.size)
        use_window = not was_lost and self.states.misses == 0
        peak = find_peak(
            score,
            self.reference,
            prev_pos,
            dims,
            self._window(score.shape) if use_window else None,
            cfg.classifier.window_influence,
            cfg.localization,
            gate=not was_lost,
        )
        self.times.add("classifier", time.perf_counter() - t0)
        state = self.states.step(peak)
        found = state != TrackState.LOST and peak.kind != PeakKind.NOT_FOUND
        if found:
            u, v = self._to_px(peak.col), self._to_px(peak.row)
            self.center = crop.to_image_point(u, v)
            pos = (peak.row, peak.col)
            if cfg.scale.enabled and peak.value >= cfg.scale.min_score and not self._rescaled:
                with self.times.measure("scale"):
                    factor = self._scale_estimate(x, feats, pos, dims, crop)
                self.size = smooth_size(self.size, factor, cfg.scale.damping, cfg.scale.max_change)
            if (
                self.refiner is not None
                and peak.value >= cfg.box_refine.min_score
                and min(self.size) * crop.scale >= cfg.box_refine.min_side
                and not self._rescaled
            ):
                with self.times.measure("refine"):
                    self._refine(feats, crop)
            self.search_area = cfg.search.search_area
        else:
            pos = prev_pos
            self.search_area = min(
                self.search_area * cfg.search.lost_growth, cfg.search.max_search_area
            )
        self._clamp_state()

        mask = None
        learning = None
        if state == TrackState.TRACKING:
            learning = partial(self._learn_timed, x, xf, feats, crop, peak, score_map)
            # The update reads the box and writes the classifier, memory and scale filter; the
            # mask head reads the box and writes its own models: independent, unless the mask
            # moves the box (mask_fusion box or centre weight > 0), which the update must see first.
            if pool is not None and cfg.mask.enabled and not self._box_from_mask:
                learning = pool.submit(learning).result
        if cfg.mask.enabled:
            with self.times.measure("mask"):
                mask = self._run_mask(frame, feats, crop, state, score / self.reference)
        if learning is not None:
            learning()  # the update itself, or waiting for (and re-raising from) its thread
        box = self.box()
        return TrackResult(
            box=box,
            score=float(np.clip(peak.value, 0.0, 1.0)),
            state=state,
            mask=mask,
            frames_since_seen=self.states.frames_since_seen,
        )

    def _crop_xyxy(self, crop: Crop) -> torch.Tensor:
        """The current box in ``crop`` pixels as a (1, 4) x0, y0, x1, y1 tensor."""
        u, v, w, h = crop.box_to_crop(
            (self.center[0] - self.size[0] / 2, self.center[1] - self.size[1] / 2, *self.size)
        )
        return torch.tensor([[u, v, u + w, v + h]], dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def _refine(self, feats: dict[str, torch.Tensor], crop: Crop) -> None:
        """Move the box's edges where the learned refiner puts them (damped and clipped)."""
        assert self.refiner is not None and self._reference is not None
        b = self.cfg.box_refine
        out, _ = self.refiner(
            [feats[lv] for lv in REFINER_LEVELS],
            self._refiner_strides,
            self._crop_xyxy(crop),
            self._reference,
        )
        x0, y0, x1, y1 = (float(c) for c in out[0].cpu())
        refined = crop.box_to_image((x0, y0, x1 - x0, y1 - y0))
        w, h = self.size
        cx, cy = refined[0] + refined[2] / 2.0, refined[1] + refined[3] / 2.0
        dx = float(np.clip(cx - self.center[0], -b.max_shift * w, b.max_shift * w))
        dy = float(np.clip(cy - self.center[1], -b.max_shift * h, b.max_shift * h))
        self.center = (self.center[0] + b.weight * dx, self.center[1] + b.weight * dy)
        self.size = _size_towards(self.size, refined, b.weight, b.max_change)

    def _clamp_state(self) -> None:
        s = self.cfg.search
        w, h = self.size
        width, height = self.image_size
        w = float(np.clip(w, s.min_target_size, width))
        h = float(np.clip(h, s.min_target_size, height))
        x, y, w, h = clamp_box(
            (self.center[0] - w / 2, self.center[1] - h / 2, w, h), self.image_size, 1.0
        )
        self.center = (x + w / 2, y + h / 2)
        self.size = (w, h)

    def _head_input(self, feats, crop: Crop, index: int = 0):
        """The learned scale head's levels and the current box in ``crop`` pixels."""
        return [feats[lv][index : index + 1] for lv in SCALE_HEAD_LEVELS], self._crop_xyxy(crop)

    def _scale_initialize(self, x, feats, pos, dims, crop: Crop, index: int = 0) -> None:
        self.scale.initialize(*self._scale_input(x, feats, pos, dims, index))
        if self.scale_head is not None:
            self.scale_head.initialize(*self._head_input(feats, crop, index))

    def _scale_update(self, x, feats, pos, dims, crop: Crop) -> None:
        self.scale.update(*self._scale_input(x, feats, pos, dims))
        if self.scale_head is not None:
            self.scale_head.update(*self._head_input(feats, crop))

    def _scale_estimate(self, x, feats, pos, dims, crop: Crop) -> float:
        """The size factor: the DSST filter's, the head's, or their mix in log space.

        Why a mix: on held-out training clips the filter is steady but returns a third of a
        size change, the head follows most of it but is noisier per frame; averaging the two
        logs beat either alone (docs/design.md, "Learned scale head").
        """
        w = self.cfg.scale.learned_weight if self.scale_head is not None else 0.0
        log_f = 0.0
        if w < 1.0:
            log_f += (1.0 - w) * np.log(
                self.scale.estimate(*self._scale_input(x, feats, pos, dims))
            )
        if w > 0.0:
            assert self.scale_head is not None
            log_f += w * np.log(self.scale_head.estimate(*self._head_input(feats, crop)))
        return float(np.exp(log_f))

    def _scale_input(self, x, feats, pos, dims, index: int = 0):
        """Feature maps with centre and size in each map's cells, for the DSST filter."""
        out = []
        s0 = self.stride
        for level in self.cfg.scale.feature_levels:
            if level == "projected":
                out.append((x[index : index + 1], pos, dims))
                continue
            s1 = LITE0_LEVELS[level][1]
            conv = [(c * s0 + (s0 - 1) / 2.0 - (s1 - 1) / 2.0) / s1 for c in pos]
            size = (dims[0] * s0 / s1, dims[1] * s0 / s1)
            out.append((feats[level][index : index + 1], (conv[0], conv[1]), size))
        return (out,)

    @torch.no_grad()  # grad mode is per thread: the helper thread starts with it on
    def _learn_timed(self, *args) -> None:
        with self.times.measure("update"):
            self._learn(*args)

    def _learn(self, x: torch.Tensor, xf: torch.Tensor, feats, crop: Crop, peak, score_map) -> None:
        """Confidence-gated memory write and the scheduled / immediate filter refinement.

        ``score_map`` is this frame's (1, 1, H, W) score under the current filter: stored with
        the sample, so refinements reuse the memory's scores instead of recomputing them.
        """
        cfg = self.cfg
        m = cfg.memory
        assert self.classifier is not None and self.memory.labels is not None
        if peak.value < m.min_score or peak.kind == PeakKind.AMBIGUOUS:
            return
        # Label at the (possibly rescaled) target in this crop.
        pos, dims = self._cells(crop, self.center, self.size)
        hard = peak.kind == PeakKind.HARD_NEGATIVE
        if self._rescaled:
            return
        if tuple(x.shape[-2:]) == tuple(self.memory.labels.shape[-2:]):
            label = self.classifier.targets(tuple(x.shape[-2:]), [pos], dims)
            lr = m.hard_negative_learning_rate if hard else m.learning_rate
            self.memory.add(xf, label, lr, sample_energy(x), score_map)
        if cfg.scale.enabled:
            self._scale_update(x, feats, pos, dims, crop)
        steps = 0
        if hard:
            steps = m.hard_negative_steps
        elif m.update_interval > 0 and (self.frame + self.update_phase) % m.update_interval == 0:
            steps = m.update_steps
        if steps > 0:
            mem = self.memory
            scores = self.classifier.refine(*mem.samples(), steps, mem.energies(), mem.scores_now())
            mem.set_scores(scores)

    def _run_mask(self, frame, feats, crop, state: TrackState, score: np.ndarray):
        """Mask head (RTS-style): box from a confident mask, classifier box as the fallback.

        ``score``: this frame's score map over ``crop`` / the reference peak (decoder input).
        """
        h, w = frame.shape[:2]
        if state == TrackState.LOST:
            self._last_mask = None
            return np.zeros((h, w), np.uint8)
        if self.mask_head is None:  # no head available: the box as a mask
            mask = np.zeros((h, w), np.uint8)
            x0, y0, bw, bh = self.box()
            mask[
                max(0, iround(y0)) : max(0, iround(y0 + bh)),
                max(0, iround(x0)) : max(0, iround(x0 + bw)),
            ] = 255
            return mask
        mf = self.cfg.mask_fusion
        box = self.box()
        work = self._mask_extent_box() if mf.extent_weight > 0 else box
        interval = max(1, int(self.cfg.mask.interval))
        if self._last_mask is not None and (self.frame + self.slot) % interval:
            return moved_estimate(*self._last_mask, work).full_mask((w, h))
        est = self.mask_head.segment(frame, work, feats, crop, score)
        self._last_mask = (est, work)
        mbox = est.box()
        if (
            state == TrackState.TRACKING
            and mf.extent_weight > 0
            and mbox is not None
            and est.confidence >= mf.extent_min_confidence
        ):
            self._follow_mask_extent(mbox)
        if (
            state == TrackState.TRACKING
            and self._box_from_mask
            and mbox is not None
            and est.confidence >= mf.box_min_confidence
            and min(self.size) >= mf.box_min_side
            and iou_xywh(user_box := self._convention.apply(mbox), box) >= mf.box_min_iou
        ):
            # Blend centres linearly and sizes geometrically, clipping the size change.
            c = mf.center_weight
            mx, my = user_box[0] + user_box[2] / 2.0, user_box[1] + user_box[3] / 2.0
            self.center = (
                (1 - c) * self.center[0] + c * mx,
                (1 - c) * self.center[1] + c * my,
            )
            self.size = _size_towards(self.size, user_box, mf.box_weight, mf.max_scale_change)
            self._clamp_state()
        if state == TrackState.TRACKING and est.confidence >= mf.update_min_confidence:
            self.mask_head.update(frame, est, work)
        return est.full_mask((w, h))

    @property
    def _box_from_mask(self) -> bool:
        """Whether the mask may move the box: weights set, and a learned decoder's masks.

        The training-free heads' masks bleed into same-coloured background (31-sequence AUC
        0.616 -> 0.510 with the colour head), so ``mask.learned: false`` keeps the classifier's
        box whatever ``mask_fusion`` says.
        """
        return (
            self.cfg.mask_fusion.moves_box
            and self.mask_head is not None
            and self.mask_head.decoder is not None
        )

    def _mask_extent_box(self) -> Box:
        """The mask head's window box: classifier centre + mask offset, the mask's own size.

        The stored size is clipped here, where the classifier's current size is known, so the
        next :meth:`_follow_mask_extent` starts from a size within ``extent_max_ratio``.
        """
        r = self.cfg.mask_fusion.extent_max_ratio
        w = float(np.clip(self._mask_size[0], self.size[0] / r, self.size[0] * r))
        h = float(np.clip(self._mask_size[1], self.size[1] / r, self.size[1] * r))
        self._mask_size = (w, h)
        cx = self.center[0] + self._mask_offset[0] * self.size[0]
        cy = self.center[1] + self._mask_offset[1] * self.size[1]
        return (cx - w / 2.0, cy - h / 2.0, w, h)

    def _follow_mask_extent(self, mbox: Box) -> None:
        """Move the mask extent towards a confident mask's box (sizes geometric, clipped)."""
        mf = self.cfg.mask_fusion
        a = mf.extent_weight
        self._mask_size = _size_towards(self._mask_size, mbox, a, mf.max_scale_change)
        ox = (mbox[0] + mbox[2] / 2.0 - self.center[0]) / self.size[0]
        oy = (mbox[1] + mbox[3] / 2.0 - self.center[1]) / self.size[1]
        lim = _MAX_MASK_OFFSET
        self._mask_offset = (
            (1 - a) * self._mask_offset[0] + a * float(np.clip(ox, -lim, lim)),
            (1 - a) * self._mask_offset[1] + a * float(np.clip(oy, -lim, lim)),
        )

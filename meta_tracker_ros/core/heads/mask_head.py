"""Training-free target segmentation from a box: colour, backbone features, a box prior, edges.

Why this design: there is no offline segmentation training data, and a per-pixel linear model on
stride-8 backbone features seeded from the box scores below simply filling the box (notes §7).
Object boundaries need full-resolution cues, so the head works on a small window of *frame
pixels* around the box (about twice the box, long side ``work_size``); the backbone's stride-4
features add the semantics that colours lack (step 5):

1. **Colour model** (notes §4.3): foreground/background colour histograms, learned at init from
   the box interior vs. the ring around it, then refined GrabCut-style by re-estimating them from
   the head's own segmentation of the first frame. The first-frame histograms are kept as an
   anchor; confident frames blend in recent statistics.
2. **Spatial prior** from the box (notes §4.1 stand-in for TrackMLP's soft label): a logit that
   falls off with the signed distance to the box edge, so pixels far outside the box cannot win on
   colour alone and pixels deep inside get a mild push towards foreground.
3. **Shape memory**: a running mean of recent masks in box-normalised coordinates, resampled into
   the current box, adds a weak shape prior (notes §4.5 mask memory, first frame kept).
4. **Edge-aware refinement** (notes §4.4): a guided filter on the grey window snaps the soft
   probability to image edges before thresholding.
5. **Feature matching** (D3S's fg/bg model, notes §4.2, no training): hypercolumns sampled on a
   coarse grid over the window are compared by cosine similarity with first-frame target and
   background hypercolumns (mean of the top k); the difference joins the logit. At a box-only
   init the target set is the in-box cells *least* like anything outside the box, which drops
   the wall or water that every box holds and that the colour model alone keeps (DAVIS
   blackswan J 0.53 -> 0.81). Stride 4 only: the coarser levels blur thin parts into their
   surroundings.

All steps are vectorised numpy/OpenCV on at most ``work_size``² pixels, which keeps
``segment`` + ``update`` to a few milliseconds on one CPU core.

6. **Learned decoder** (optional, ``mask.learned``, issue 9): steps 1-5 are the per-target
   model, fitted online; a small offline-trained conv decoder (``mask_decoder.py``) takes their
   cue maps, the window's colours and the backbone's stride-4/8/16 features and outputs the
   mask in place of the fixed sum of step 1-5 logits. The updates above then learn from the
   decoder's masks, and a box-only first frame can be fitted a second time with the decoder's
   own mask of it as the label (``mask.box_init_passes``, see :meth:`MaskHead.initialize`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from meta_tracker_ros.core.config import MaskConfig
from meta_tracker_ros.core.geometry import Crop, iou_xywh
from meta_tracker_ros.core.heads.mask_decoder import (
    CUES,
    LOGIT_SCALE,
    POOL,
    RIDGE_RANGE,
    SCORE_CUES,
    SCORE_RANGE,
    MaskDecoder,
)
from meta_tracker_ros.core.types import Box

_EPS = 1e-6
# Long side (pixels) of the grid MaskEstimate.box() finds components on, at most.
BOX_GRID = 512


@dataclass
class MaskEstimate:
    """A soft target mask over a region of interest of the frame.

    The probability stays at the resolution it was computed at (the head's working window) with
    its mapping to image pixels, so that what follows (the mask's box, the head's update) costs
    the same for a target of 50 or 1,000 pixels. Upsampling it to image pixels first made a
    1000x1000 px target in a 1080p frame cost about 60 ms a frame (connected components of a 4
    Mpx roi, its warps); only :meth:`full_mask` works at image resolution, over the image.

    Attributes:
        roi: (x0, y0, x1, y1) in image pixels, exclusive end; may extend past the image border.
        prob: float32 target probability; its pixel (u, v) is centred on image point
            (origin[0] + (u + 0.5) / scale, origin[1] + (v + 0.5) / scale).
        confidence: 0..1, how trustworthy the mask is (used for box-from-mask and for updates).
        min_pixels: fewer foreground image pixels than this: box() is None.
        origin: image point of ``prob``'s top-left corner (None: the roi's).
        scale: ``prob`` pixels per image pixel (1: one per image pixel, spanning the roi).
    """

    roi: tuple[int, int, int, int]
    prob: np.ndarray
    confidence: float
    min_pixels: int = 16
    origin: tuple[float, float] | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = (float(self.roi[0]), float(self.roi[1]))

    @classmethod
    def covering(
        cls,
        prob: np.ndarray,
        origin: tuple[float, float],
        scale: float,
        confidence: float,
        min_pixels: int = 16,
    ) -> MaskEstimate:
        """An estimate whose roi is the image pixels ``prob`` covers from ``origin``."""
        h, w = prob.shape
        ox, oy = float(origin[0]), float(origin[1])
        roi = (
            int(np.floor(ox)),
            int(np.floor(oy)),
            int(np.ceil(ox + w / scale)),
            int(np.ceil(oy + h / scale)),
        )
        return cls(roi, prob, confidence, min_pixels, (ox, oy), float(scale))

    def full_mask(self, image_size: tuple[int, int]) -> np.ndarray:
        """``prob > 0.5`` at image resolution in an empty (height, width) uint8 0/255 image.

        ``image_size`` is (width, height) like OpenCV; parts of the roi outside the image are
        dropped. ``prob`` is interpolated bilinearly at the centre of every image pixel of the
        roi that lies in the image (none other is computed).
        """
        width, height = int(image_size[0]), int(image_size[1])
        out = np.zeros((height, width), dtype=np.uint8)
        x0, y0, x1, y1 = self.roi
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x1, width), min(y1, height)
        if ix1 <= ix0 or iy1 <= iy0:
            return out
        ox, oy = self.origin
        s = float(self.scale)
        # image pixel centre (x + 0.5) -> prob coordinate (x + 0.5 - ox) * s - 0.5
        m = np.array(
            [[s, 0.0, (ix0 + 0.5 - ox) * s - 0.5], [0.0, s, (iy0 + 0.5 - oy) * s - 0.5]],
            dtype=np.float64,
        )
        sub = cv2.warpAffine(
            np.ascontiguousarray(self.prob, dtype=np.float32),
            m,
            (ix1 - ix0, iy1 - iy0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        out[iy0:iy1, ix0:ix1] = cv2.compare(sub, 0.5, cv2.CMP_GT)
        return out

    def box(self) -> Box | None:
        """Tight (x, y, w, h) image box of the largest connected component of ``prob > 0.5``.

        The largest component (plus any component at least a fifth of its size) rather than all
        pixels: stray background blobs would otherwise inflate the box that the tracker may adopt.
        Returns None when fewer than ``min_pixels`` image pixels are foreground.

        Components are found at image resolution when the roi's long side is at most
        ``BOX_GRID`` pixels (as on the upsampled mask before; on ``prob`` itself where that is
        finer, for targets smaller than the working window), else on a grid of that size: thin
        parts (legs, a tail) join or split differently on the head's coarse working grid, and
        that moved the box by a tenth of the target. Where a grid pixel spans several image
        pixels, each edge is placed where ``prob`` crosses 0.5 between the component's outermost
        pixels and their outside neighbours (linear interpolation) instead of on the grid.
        """
        prob, s, (ox, oy) = self._box_grid()
        binary = (prob > 0.5).astype(np.uint8)
        pixel_area = 1.0 / s**2  # image pixels per grid pixel
        if int(binary.sum()) * pixel_area < self.min_pixels:
            return None
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        if n <= 1:
            return None
        areas = stats[1:, cv2.CC_STAT_AREA]
        ids = np.flatnonzero(areas >= 0.2 * areas.max()) + 1
        keep = stats[ids]
        if int(keep[:, cv2.CC_STAT_AREA].sum()) * pixel_area < self.min_pixels:
            return None
        bx0 = float(keep[:, cv2.CC_STAT_LEFT].min())
        by0 = float(keep[:, cv2.CC_STAT_TOP].min())
        bx1 = float((keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max())
        by1 = float((keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max())
        if s < 1.0:
            kept = np.isin(labels, ids) if len(ids) < n - 1 else labels > 0
            bx0, bx1 = _crossings(prob, kept)
            by0, by1 = _crossings(prob.T, kept.T)
        return (ox + bx0 / s, oy + by0 / s, (bx1 - bx0) / s, (by1 - by0) / s)

    def _box_grid(self) -> tuple[np.ndarray, float, tuple[float, float]]:
        """``prob`` resampled for :meth:`box`: (grid, grid pixels per image pixel, origin)."""
        x0, y0, x1, y1 = self.roi
        r = min(1.0, BOX_GRID / max(x1 - x0, y1 - y0, 1))
        if r <= self.scale:
            return self.prob, float(self.scale), self.origin
        ox, oy = self.origin
        s = float(self.scale)
        size = (max(1, int(np.ceil((x1 - x0) * r))), max(1, int(np.ceil((y1 - y0) * r))))
        # grid pixel centre (g + 0.5) -> image x0 + (g + 0.5) / r -> prob coordinate
        m = np.array(
            [
                [s / r, 0.0, (x0 + 0.5 / r - ox) * s - 0.5],
                [0.0, s / r, (y0 + 0.5 / r - oy) * s - 0.5],
            ],
            dtype=np.float64,
        )
        grid = cv2.warpAffine(
            np.ascontiguousarray(self.prob, dtype=np.float32),
            m,
            size,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        return grid, r, (float(x0), float(y0))


def _crossings(prob: np.ndarray, kept: np.ndarray) -> tuple[float, float]:
    """Where ``prob`` falls to 0.5 left of the leftmost and right of the rightmost kept pixel.

    In ``prob``'s pixel-edge coordinates (pixel u spans [u, u + 1)); outside the array counts
    as 0, as in the image-resolution mask.
    """
    cols = np.flatnonzero(kept.any(axis=0))
    edges = []
    for col, step in ((int(cols[0]), -1), (int(cols[-1]), 1)):
        rows = np.flatnonzero(kept[:, col])
        inner = prob[rows, col]
        out = col + step
        outer = prob[rows, out] if 0 <= out < prob.shape[1] else np.zeros_like(inner)
        reach = np.clip((inner - 0.5) / np.maximum(inner - outer, 1e-6), 0.0, 1.0).max()
        edges.append(col + 0.5 + step * float(reach))
    return edges[0], edges[1]


@dataclass
class _Window:
    """A window of the frame around the box, resampled to working resolution.

    Working pixel (u, v) is image point (x0 + u / s, y0 + v / s).
    """

    x0: float
    y0: float
    scale: float
    size: tuple[int, int]  # (width, height) in working pixels
    image: np.ndarray  # BGR uint8 working-resolution window
    valid: np.ndarray  # bool, True where the window lies inside the frame
    box: tuple[float, float, float, float]  # (x, y, w, h) of the box in working pixels


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1.0 - 1e-4)
    return np.log(p / (1.0 - p))


def _crop_grid(win: _Window, crop: Crop, us: np.ndarray, vs: np.ndarray) -> torch.Tensor:
    """(1, len(vs), len(us), 2) ``grid_sample`` grid of working-window points in the crop.

    Working pixels ``us`` (columns) and ``vs`` (rows) -> image points -> crop pixels -> [-1, 1];
    shared by the feature matching (step 5) and the decoder's feature sampling.
    """
    ox, oy = crop.origin
    xs = ((win.x0 + us / win.scale - ox) * crop.scale) / crop.out_size * 2.0 - 1.0
    ys = ((win.y0 + vs / win.scale - oy) * crop.scale) / crop.out_size * 2.0 - 1.0
    gx, gy = np.meshgrid(xs, ys)
    return torch.from_numpy(np.stack([gx, gy], axis=-1)[None].astype(np.float32))


class MaskHead:
    """Box-initialised, training-free segmentation head (see the module docstring)."""

    def __init__(
        self,
        config: MaskConfig,
        device: torch.device,
        decoder: MaskDecoder | None = None,
        decoder_levels: list[str] | None = None,
    ) -> None:
        self.cfg = config
        self.device = device  # kept for interface symmetry: everything here runs on the CPU
        self.decoder = decoder  # learned step 6 (None: the fixed fusion of steps 1-5)
        self.decoder_levels = list(decoder_levels or [])
        bins = int(config.color_bins)
        self._nbins = bins**3
        self._hist_fg0: np.ndarray | None = None  # first-frame models (anchor)
        self._hist_bg0: np.ndarray | None = None
        self._hist_fg: np.ndarray | None = None  # running models
        self._hist_bg: np.ndarray | None = None
        self._shape: np.ndarray | None = None  # mean mask in box-normalised coordinates
        self._feat_fg: torch.Tensor | None = None  # (N, C) unit target hypercolumns
        self._feat_bg: torch.Tensor | None = None  # (N, C) unit background hypercolumns
        self._ridge: torch.Tensor | None = None  # (C + 1, 1) ridge discriminator weights
        # Decoder input channels when there is no decoder (training samples; see input_cues).
        self.sample_cues: tuple[str, ...] | None = None
        self._initialized = False
        self.init_passes = 0  # fits from the decoder's own first-frame mask (box_init_passes)

    # ------------------------------------------------------------------ public interface
    @property
    def initialized(self) -> bool:
        return self._initialized

    def initialize(
        self,
        frame: np.ndarray,
        box: Box,
        feats: dict[str, torch.Tensor] | None = None,
        crop: Crop | None = None,
        init_mask: np.ndarray | None = None,
        score: np.ndarray | None = None,
    ) -> None:
        """Learn the colour models and the shape memory from the first frame.

        ``score``: the classifier's score map on ``crop`` (see :meth:`segment`), for the
        decoder's passes below.

        With ``init_mask`` the user's mask is the label. With a box only, the box interior is a
        provisional foreground label; ``init_iters`` GrabCut-like rounds then segment the frame
        with the current models and re-learn the foreground model from pixels the segmentation
        keeps, which removes most of the background that a box always contains.

        Box only, with a decoder and ``box_init_passes`` > 0: the decoder then segments the
        first frame from that model, and while its mask is confident
        (``box_init_min_confidence``) and its box agrees with ``box``
        (``box_init_min_iou``), the colour models and the feature matching's target and
        background sets are fitted again with that mask (cut to the box) as the label, as if
        the caller had given it; the shape memory stays the box fit's. ``init_passes`` counts
        the fits so made.
        """
        self._fit(frame, box, feats, crop, init_mask)
        self.init_passes = 0
        cfg = self.cfg
        if init_mask is not None or self.decoder is None or feats is None or crop is None:
            return
        height, width = frame.shape[:2]
        x, y, w, h = (float(v) for v in box)
        inside = np.zeros((height, width), np.uint8)
        ix0, iy0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
        ix1, iy1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
        inside[iy0:iy1, ix0:ix1] = 1
        for _ in range(int(cfg.box_init_passes)):
            est = self.segment(frame, box, feats, crop, score)
            mbox = est.box()
            if (
                mbox is None
                or est.confidence < cfg.box_init_min_confidence
                or iou_xywh(mbox, box) < cfg.box_init_min_iou
            ):
                break
            shape = self._shape
            self._fit(frame, box, feats, crop, est.full_mask((width, height)) * inside)
            self._shape = shape  # the box fit's soft shape: a hard label's scored lower
            self.init_passes += 1

    def _fit(
        self,
        frame: np.ndarray,
        box: Box,
        feats: dict[str, torch.Tensor] | None,
        crop: Crop | None,
        init_mask: np.ndarray | None,
    ) -> None:
        """One fit of the per-target model on the first frame (see :meth:`initialize`)."""
        cfg = self.cfg
        win = self._window(frame, box)
        q = self._quantize(win.image)
        valid = win.valid
        if init_mask is not None:
            m = self._warp_mask(init_mask, win)
            fg_w = (m > 0.5).astype(np.float32)
            bg_w = (1.0 - fg_w) * valid
            hist_fg, hist_bg = self._hist(q, fg_w), self._hist(q, bg_w)
            prob = fg_w
        else:
            inside = self._box_mask(win, 0.0)
            core = self._box_mask(win, -cfg.init_fg_shrink)
            bg_w = (~inside & valid).astype(np.float32)
            fg_w = core.astype(np.float32) * valid
            hist_bg = self._hist(q, bg_w)
            hist_fg = self._hist(q, fg_w)
            prior = self._prior_logit(win)
            if self._use_features(feats, crop):
                x, grid = self._hypercolumns(feats, crop, win)
                self._learn_features(x, grid, win, inside)
                if self._feat_fg is not None:
                    prior = prior + self._feature_logit(x, grid, win)
            prob = fg_w
            for _ in range(cfg.init_iters):
                logit = cfg.color_weight * self._color_logit(q, hist_fg, hist_bg) + prior
                prob = self._refine(win, _sigmoid(logit))
                fg_sel = (prob > 0.5) & inside & valid
                if fg_sel.sum() < 0.05 * max(inside.sum(), 1):
                    break  # degenerate: keep the box-interior model
                # Weight by p**power: pixels the box prior and colours agree on dominate, so
                # background caught in the box (always present) fades from the fg model.
                hist_fg = self._hist(q, fg_sel.astype(np.float32) * prob**cfg.init_fg_power)
            prob = prob * inside
        if init_mask is not None and self._use_features(feats, crop):
            x, grid = self._hypercolumns(feats, crop, win)
            self._learn_features(x, grid, win, self._box_mask(win, 0.0), prob)
        if "ridge" in self.input_cues and feats is not None and crop is not None:
            self._fit_ridge(feats, crop, win, prob > 0.5)
        self._hist_fg0, self._hist_bg0 = hist_fg, hist_bg
        self._hist_fg, self._hist_bg = hist_fg.copy(), hist_bg.copy()
        self._shape = self._to_box_frame(prob, win)
        self._initialized = True

    def segment(
        self,
        frame: np.ndarray,
        box: Box,
        feats: dict[str, torch.Tensor] | None = None,
        crop: Crop | None = None,
        score: np.ndarray | None = None,
    ) -> MaskEstimate:
        """Segment the target around ``box``; ``feats``/``crop`` (the search crop's) feed step 5.

        With a decoder (and features), the decoder's mask replaces the fused cues' mask.
        ``score``: the classifier's (H, W) score map on ``crop`` divided by the target's
        reference peak, read only by a decoder trained with it (zeros when not given).
        """
        win, cues = self._cues(frame, box, feats, crop)
        prob = cues["fused"]
        if self.decoder is not None and feats is not None and crop is not None:
            full, grid_feats = self._decoder_inputs(win, cues, feats, crop, score)
            dev = self.decoder.skip.device
            with torch.no_grad():
                logit = self.decoder(full.to(dev), grid_feats.to(dev))
            logit = logit[0, 0, : win.size[1], : win.size[0]]
            prob = torch.sigmoid(logit).cpu().numpy().astype(np.float32)
            if self.cfg.decoder_guided:
                prob = self._refine(win, prob)
            prob[~win.valid] = 0.0
        return self._to_estimate(prob, win)

    def decoder_inputs(
        self,
        frame: np.ndarray,
        box: Box,
        feats: dict[str, torch.Tensor],
        crop: Crop,
        score: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, _Window, np.ndarray]:
        """What the decoder sees for ``box`` (for training): full maps, grid features, window.

        Also returns the fused cues' probability (the training-free head's answer) so that
        training can score the baseline on the same samples. Without a decoder the maps are
        ``sample_cues`` when set (what the decoder to be trained reads), else ``CUES``, plus
        ``score`` (``SCORE_CUES``) when a score map is given.
        """
        win, cues = self._cues(frame, box, feats, crop)
        full, grid_feats = self._decoder_inputs(win, cues, feats, crop, score)
        return full, grid_feats, win, cues["fused"]

    def window_mask(self, mask: np.ndarray, frame: np.ndarray, box: Box) -> np.ndarray:
        """A full-frame mask resampled into ``box``'s working window (training labels)."""
        return self._warp_mask(mask, self._window(frame, box))

    def _cues(
        self,
        frame: np.ndarray,
        box: Box,
        feats: dict[str, torch.Tensor] | None,
        crop: Crop | None,
    ) -> tuple[_Window, dict[str, np.ndarray]]:
        """Steps 1-5: the per-target model's cue logits and their fused probability."""
        if not self._initialized:
            raise RuntimeError("MaskHead.segment() called before initialize()")
        cfg = self.cfg
        win = self._window(frame, box)
        q = self._quantize(win.image)
        hist_fg, hist_bg = self._models()
        zeros = np.zeros(win.valid.shape, np.float32)
        prior = self._prior_logit(win)
        shape = zeros
        if cfg.shape_weight > 0 and self._shape is not None:
            shape = cfg.shape_weight * _logit(self._from_box_frame(self._shape, win))
        color = cfg.color_weight * self._color_logit(q, hist_fg, hist_bg)
        feature = zeros
        if self._use_features(feats, crop) and self._feat_fg is not None:
            feature = self._feature_logit(*self._hypercolumns(feats, crop, win), win)
        fused = self._refine(win, _sigmoid(color + prior + shape + feature))
        fused[~win.valid] = 0.0
        cues = {"color": color, "prior": prior, "shape": shape, "feature": feature}
        cues["fused"] = fused
        if self._ridge is not None and feats is not None and crop is not None:
            cues["ridge"] = self._ridge_map(feats, crop, win)
        return win, cues

    @property
    def input_cues(self) -> tuple[str, ...]:
        """The decoder's input channels: its own list, or ``sample_cues`` / CUES without one."""
        if self.decoder is not None:
            return tuple(self.decoder.cues)
        return self.sample_cues or CUES

    def _decoder_inputs(
        self,
        win: _Window,
        cues: dict[str, np.ndarray],
        feats: dict[str, torch.Tensor],
        crop: Crop,
        score: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, len(cues), H, W) maps padded to a multiple of POOL, (1, C, H/4, W/4) features."""
        if self.decoder is not None or self.sample_cues is not None:
            names = self.input_cues
        else:
            names = SCORE_CUES if score is not None else CUES
        w, h = win.size
        wp, hp = -(-w // POOL) * POOL, -(-h // POOL) * POOL
        maps = {
            "color": cues["color"] / LOGIT_SCALE,
            "prior": cues["prior"] / LOGIT_SCALE,
            "shape": cues["shape"] / LOGIT_SCALE,
            "feature": cues["feature"] / LOGIT_SCALE,
            "fused": _logit(cues["fused"]) / LOGIT_SCALE,
            "valid": win.valid.astype(np.float32),
        }
        rgb = win.image.astype(np.float32) / 255.0 - 0.5
        for i, name in enumerate(("b", "g", "r")):
            maps[name] = rgb[..., i]
        if "score" in names:
            maps["score"] = self._score_window(win, crop, score)
        if "ridge" in names:
            maps["ridge"] = cues.get("ridge", np.zeros((h, w), np.float32))
        full = np.zeros((len(names), hp, wp), np.float32)
        for i, name in enumerate(names):
            full[i, :h, :w] = maps[name]
        full[:, ~np.pad(win.valid, ((0, hp - h), (0, wp - w)))] = 0.0  # and the padding
        gw, gh = wp // POOL, hp // POOL
        grid = _crop_grid(win, crop, (np.arange(gw) + 0.5) * POOL, (np.arange(gh) + 0.5) * POOL)
        cols = []
        for level in self.decoder_levels:
            f = feats[level][0:1].float()
            cols.append(
                torch.nn.functional.grid_sample(
                    f,
                    grid.to(f.device),
                    mode="bilinear",
                    padding_mode="border",
                    align_corners=False,
                ).cpu()
            )
        return torch.from_numpy(full)[None], torch.cat(cols, dim=1)

    def _score_window(self, win: _Window, crop: Crop, score: np.ndarray | None) -> np.ndarray:
        """The classifier's score map on ``crop`` resampled to ``win``'s pixels, clipped.

        Why: it is the tracker's instance evidence (RTS's instance branch), which tells the
        target from a similar-looking distractor the colour and matching cues confuse. The map
        covers the crop like the backbone features, so the same grid maps window pixels into it.
        """
        w, h = win.size
        if score is None:
            return np.zeros((h, w), np.float32)
        grid = _crop_grid(win, crop, np.arange(w) + 0.5, np.arange(h) + 0.5)
        s = torch.as_tensor(np.asarray(score, np.float32))[None, None]
        out = torch.nn.functional.grid_sample(
            s, grid, mode="bilinear", padding_mode="border", align_corners=False
        )[0, 0].numpy()
        return np.clip(out, *SCORE_RANGE).astype(np.float32)

    def update(self, frame: np.ndarray, estimate: MaskEstimate, box: Box) -> None:
        """Blend confident colour statistics and the mask shape into the memories.

        Estimates below ``update_min_confidence`` are ignored even if the tracker asks, so a
        failing mask cannot poison the colour models whatever gating the caller uses.

        Only pixels the estimate is sure about feed the histograms (p > 1 - margin for
        foreground, p < margin for background) so that boundary errors do not leak into them.
        """
        cfg = self.cfg
        if not self._initialized or estimate.confidence < cfg.update_min_confidence:
            return
        win = self._window(frame, box)
        prob = self._estimate_to_window(estimate, win)
        q = self._quantize(win.image)
        fg = ((prob > 1.0 - cfg.update_margin) & win.valid).astype(np.float32)
        bg = ((prob < cfg.update_margin) & win.valid).astype(np.float32)
        lr = cfg.color_lr
        if fg.sum() > 16:
            self._hist_fg = (1 - lr) * self._hist_fg + lr * self._hist(q, fg)
        if bg.sum() > 16:
            self._hist_bg = (1 - lr) * self._hist_bg + lr * self._hist(q, bg)
        if self._shape is not None:
            s = cfg.shape_lr
            self._shape = (1 - s) * self._shape + s * self._to_box_frame(prob, win)

    # ------------------------------------------------------------------ feature matching
    def _use_features(self, feats, crop) -> bool:
        return self.cfg.feature_weight > 0 and feats is not None and crop is not None

    def _grid_shape(self, win: _Window) -> tuple[int, int]:
        w, h = win.size
        g = int(self.cfg.feature_grid)
        s = g / max(w, h)
        return max(2, round(w * s)), max(2, round(h * s))

    def _hypercolumns(
        self,
        feats: dict[str, torch.Tensor],
        crop: Crop,
        win: _Window,
        levels: list[str] | None = None,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Unit-norm hypercolumns (gh * gw, C) sampled at a coarse grid over the window.

        Each level is L2-normalised before concatenation so that no level dominates the
        cosine similarity by its channel count or scale.
        """
        gw, gh = self._grid_shape(win)
        w, h = win.size
        grid = _crop_grid(
            win, crop, (np.arange(gw) + 0.5) * (w / gw), (np.arange(gh) + 0.5) * (h / gh)
        )
        cols = []
        for level in self.cfg.feature_levels if levels is None else levels:
            f = feats[level][0:1].float()
            sampled = torch.nn.functional.grid_sample(
                f, grid.to(f.device), mode="bilinear", padding_mode="border", align_corners=False
            )[0]
            cols.append(torch.nn.functional.normalize(sampled.flatten(1), dim=0))
        x = torch.cat(cols, dim=0).t()  # (gh * gw, C)
        return torch.nn.functional.normalize(x, dim=1), (gw, gh)

    def _learn_features(
        self,
        x: torch.Tensor,
        grid: tuple[int, int],
        win: _Window,
        inside: np.ndarray,
        prob: np.ndarray | None = None,
    ) -> None:
        """Store first-frame target and background hypercolumns (``x`` from _hypercolumns).

        Background: grid cells wholly outside the box and inside the image. Target: with a mask
        label (``prob``), the cells it covers. From a box only, the ``feature_fg_quantile``
        in-box cells least like the background: a box always holds background, and in-box
        cells closely matching cells outside it (wall, water, road continuing past the edge)
        are that background.
        """
        box = cv2.resize(inside.astype(np.float32), grid, interpolation=cv2.INTER_AREA).ravel()
        ok = cv2.resize(win.valid.astype(np.float32), grid, interpolation=cv2.INTER_AREA).ravel()
        bg = torch.from_numpy((box < 0.05) & (ok > 0.95)).to(x.device)
        if prob is not None:
            p = cv2.resize(prob.astype(np.float32), grid, interpolation=cv2.INTER_AREA).ravel()
            fg, min_fg = torch.from_numpy(p > 0.5).to(x.device), 1
        else:
            fg, min_fg = torch.from_numpy((box > 0.95) & (ok > 0.5)).to(x.device), 2
        if int(fg.sum()) < min_fg or int(bg.sum()) < 1:
            return
        x_fg, x_bg = x[fg], x[bg]
        if prob is None:
            s_out = self._similarity(x_fg, x_bg)
            x_fg = x_fg[s_out <= torch.quantile(s_out, float(self.cfg.feature_fg_quantile))]
        n = int(self.cfg.feature_memory)
        self._feat_fg, self._feat_bg = x_fg[:n], x_bg[:n]

    def _ridge_design(
        self, feats: dict[str, torch.Tensor], crop: Crop, win: _Window
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """(cells, C + 1) hypercolumns of ``ridge_levels`` with a constant column (the bias)."""
        x, grid = self._hypercolumns(feats, crop, win, list(self.cfg.ridge_levels))
        return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1), grid

    def _fit_ridge(
        self, feats: dict[str, torch.Tensor], crop: Crop, win: _Window, fg: np.ndarray
    ) -> None:
        """Closed-form ridge regression of +1 (target) / -1 (background) on the hypercolumns.

        Why (Learning to Track Any Object): a linear discriminator fitted to *this* target
        against *this* background separates them far better than nearest-neighbour matching
        (window IoU on the validation mask clips with ground-truth boxes: 0.66 vs 0.53 from a
        box, 0.68 vs 0.58 from a mask), with no training. Foreground and background cells are
        weighted to equal total weight, so a small target is not drowned by its background.
        """
        x, grid = self._ridge_design(feats, crop, win)
        cell_fg = cv2.resize(fg.astype(np.float32), grid, interpolation=cv2.INTER_AREA).ravel()
        ok = cv2.resize(win.valid.astype(np.float32), grid, interpolation=cv2.INTER_AREA).ravel()
        keep = torch.from_numpy(ok > 0.5).to(x.device)
        y = torch.from_numpy(cell_fg > 0.5).to(x.device)[keep]
        x = x[keep]
        n_fg, n_bg = int(y.sum()), int((~y).sum())
        if n_fg < 1 or n_bg < 1:
            self._ridge = None
            return
        weight = torch.where(y, 0.5 / n_fg, 0.5 / n_bg)[:, None] * len(y)
        target = y.to(x.dtype)[:, None] * 2.0 - 1.0
        gram = x.t() @ (x * weight) + float(self.cfg.ridge_reg) * torch.eye(
            x.shape[1], dtype=x.dtype, device=x.device
        )
        self._ridge = torch.linalg.solve(gram, x.t() @ (target * weight))

    def _ridge_map(self, feats: dict[str, torch.Tensor], crop: Crop, win: _Window) -> np.ndarray:
        """The ridge discriminator's response over ``win`` (window pixels, clipped)."""
        assert self._ridge is not None
        x, grid = self._ridge_design(feats, crop, win)
        r = (x @ self._ridge).reshape(grid[1], grid[0]).cpu().numpy().astype(np.float32)
        r = cv2.resize(r, win.size, interpolation=cv2.INTER_LINEAR)
        return np.clip(r, *RIDGE_RANGE).astype(np.float32)

    def _similarity(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Per row of ``x``: mean of its top-k cosine similarities to ``memory``'s rows."""
        k = min(int(self.cfg.feature_topk), memory.shape[0])
        return (x @ memory.t()).topk(k, dim=1).values.mean(1)

    def _feature_logit(self, x: torch.Tensor, grid: tuple[int, int], win: _Window) -> np.ndarray:
        """weight x (similarity to target - to background), resized to the window."""
        assert self._feat_fg is not None and self._feat_bg is not None
        d = self._similarity(x, self._feat_fg) - self._similarity(x, self._feat_bg)
        d = d.reshape(grid[1], grid[0]).cpu().numpy().astype(np.float32)
        return self.cfg.feature_weight * cv2.resize(d, win.size, interpolation=cv2.INTER_LINEAR)

    # ------------------------------------------------------------------ models
    def _models(self) -> tuple[np.ndarray, np.ndarray]:
        a = self.cfg.anchor_weight
        fg = a * self._hist_fg0 + (1 - a) * self._hist_fg
        bg = a * self._hist_bg0 + (1 - a) * self._hist_bg
        return fg, bg

    def _quantize(self, bgr: np.ndarray) -> np.ndarray:
        """Per-pixel joint colour bin index (int), in the configured colour space."""
        space = self.cfg.color_space
        if space == "lab":
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
        elif space == "hsv":
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV_FULL)
        elif space == "ycrcb":
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
        else:
            img = bgr
        b = int(self.cfg.color_bins)
        idx = (img.astype(np.int32) * b) >> 8
        return (idx[..., 0] * b + idx[..., 1]) * b + idx[..., 2]

    def _hist(self, q: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Normalised weighted joint histogram, lightly smoothed by a uniform floor."""
        h = np.bincount(q.ravel(), weights=weight.ravel(), minlength=self._nbins)
        total = h.sum()
        if total <= 0:
            return np.full(self._nbins, 1.0 / self._nbins)
        return h / total

    def _color_logit(self, q: np.ndarray, hist_fg: np.ndarray, hist_bg: np.ndarray) -> np.ndarray:
        """log P(c|fg) / P(c|bg) with a floor so unseen colours stay near neutral."""
        floor = self.cfg.color_floor / self._nbins
        ratio = np.log((hist_fg + floor) / (hist_bg + floor))
        lim = self.cfg.color_clip
        return np.clip(ratio, -lim, lim)[q].astype(np.float32)

    def _prior_logit(self, win: _Window) -> np.ndarray:
        """Box prior: ``slope * s + bias`` where s = normalised signed distance to the box edge.

        s is 1 at the box centre, 0 on the edge and negative outside (in units of half the box
        side along each axis), so the prior scales with the box rather than with pixels.
        """
        cfg = self.cfg
        w, h = win.size
        bx, by, bw, bh = win.box
        u = (np.arange(w, dtype=np.float32) + 0.5 - (bx + bw / 2)) / max(bw / 2, 1.0)
        v = (np.arange(h, dtype=np.float32) + 0.5 - (by + bh / 2)) / max(bh / 2, 1.0)
        s = np.minimum(1.0 - np.abs(v)[:, None], 1.0 - np.abs(u)[None, :])
        slope = np.where(s < 0, cfg.prior_slope_out, cfg.prior_slope_in)
        return (slope * s + cfg.prior_bias).astype(np.float32)

    def _refine(self, win: _Window, prob: np.ndarray) -> np.ndarray:
        """Edge-aware smoothing of the soft mask with a guided filter on the grey window."""
        cfg = self.cfg
        if cfg.guided_radius <= 0:
            return prob.astype(np.float32)
        guide = win.image
        r = max(1, round(cfg.guided_radius * max(win.size) / 128.0))
        out = cv2.ximgproc.guidedFilter(guide, prob.astype(np.float32), r, cfg.guided_eps * 65025)
        return np.clip(out, 0.0, 1.0)

    # ------------------------------------------------------------------ geometry
    def _window(self, frame: np.ndarray, box: Box) -> _Window:
        """Cut the context window around ``box`` and resample it to working resolution."""
        cfg = self.cfg
        x, y, bw, bh = (float(v) for v in box)
        bw, bh = max(bw, 2.0), max(bh, 2.0)
        ctx = cfg.context
        ww, wh = bw * ctx, bh * ctx
        cx, cy = x + bw / 2, y + bh / 2
        scale = min(cfg.work_size / max(ww, wh), cfg.max_upscale)
        out_w = max(8, round(ww * scale))
        out_h = max(8, round(wh * scale))
        x0, y0 = cx - out_w / (2 * scale), cy - out_h / (2 * scale)
        m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], dtype=np.float64)
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        image = cv2.warpAffine(
            frame, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REPLICATE
        )
        height, width = frame.shape[:2]
        xs = x0 + (np.arange(out_w) + 0.5) / scale
        ys = y0 + (np.arange(out_h) + 0.5) / scale
        valid = ((ys >= 0) & (ys < height))[:, None] & ((xs >= 0) & (xs < width))[None, :]
        wbox = ((x - x0) * scale, (y - y0) * scale, bw * scale, bh * scale)
        return _Window(x0, y0, scale, (out_w, out_h), image, valid, wbox)

    def _box_mask(self, win: _Window, grow: float) -> np.ndarray:
        """Bool mask of the box grown by ``grow`` × its size on each side (negative shrinks)."""
        w, h = win.size
        bx, by, bw, bh = win.box
        u = np.arange(w) + 0.5
        v = np.arange(h) + 0.5
        inx = (u >= bx - grow * bw) & (u < bx + bw * (1 + grow))
        iny = (v >= by - grow * bh) & (v < by + bh * (1 + grow))
        return iny[:, None] & inx[None, :]

    def _warp_mask(self, mask: np.ndarray, win: _Window) -> np.ndarray:
        """Full-frame 0/255 (or 0/1) mask resampled into the window as float [0, 1]."""
        s = win.scale
        m = np.array([[s, 0.0, -win.x0 * s], [0.0, s, -win.y0 * s]], dtype=np.float64)
        src = (mask > 0).astype(np.float32)
        return cv2.warpAffine(src, m, win.size, flags=cv2.INTER_LINEAR, borderValue=0.0)

    def _to_box_frame(self, prob: np.ndarray, win: _Window) -> np.ndarray:
        """Resample the window probability into a fixed grid spanning the context window.

        The grid is relative to the box (the window is ``context`` × the box), so masks from
        frames with different box sizes can be averaged.
        """
        g = int(self.cfg.shape_grid)
        return cv2.resize(prob.astype(np.float32), (g, g), interpolation=cv2.INTER_AREA)

    def _from_box_frame(self, shape: np.ndarray, win: _Window) -> np.ndarray:
        return cv2.resize(shape, win.size, interpolation=cv2.INTER_LINEAR)

    def _to_estimate(self, prob: np.ndarray, win: _Window) -> MaskEstimate:
        """The working-resolution probability, its image roi and mapping, and its confidence."""
        return MaskEstimate.covering(
            prob.astype(np.float32, copy=False),
            (win.x0, win.y0),
            win.scale,
            self._confidence(prob, win),
            self.cfg.min_pixels,
        )

    def _estimate_to_window(self, est: MaskEstimate, win: _Window) -> np.ndarray:
        """An estimate's probability on ``win``'s working grid (as is, if it is that grid)."""
        s = win.scale
        ox, oy = est.origin
        w, h = win.size
        if est.scale == s and (ox, oy) == (win.x0, win.y0) and est.prob.shape == (h, w):
            return est.prob  # segmented on this very window (the tracker's update)
        a = s / float(est.scale)
        # est pixel centre P + 0.5 -> image point ox + (P + 0.5) / est.scale -> working pixel
        m = np.array(
            [
                [a, 0.0, (ox + 0.5 / est.scale - win.x0) * s - 0.5],
                [0.0, a, (oy + 0.5 / est.scale - win.y0) * s - 0.5],
            ],
            dtype=np.float64,
        )
        interp = cv2.INTER_AREA if a < 1.0 else cv2.INTER_LINEAR
        return cv2.warpAffine(
            est.prob.astype(np.float32), m, win.size, flags=interp, borderValue=0.0
        )

    def _confidence(self, prob: np.ndarray, win: _Window) -> float:
        """Crisp masks that fill a plausible part of the box and stay inside it score high.

        Product of: decisiveness (mean |2p - 1| near the box), the fraction of the foreground
        inside the box grown by 10 %, and a penalty when the mask covers almost none of the box.
        """
        inside = self._box_mask(win, 0.1)
        fg = prob > 0.5
        n_fg = float(fg.sum())
        if n_fg < 1:
            return 0.0
        crisp = float(np.abs(2.0 * prob[inside] - 1.0).mean()) if inside.any() else 0.0
        contained = float((fg & inside).sum()) / n_fg
        bw, bh = win.box[2], win.box[3]
        fill = n_fg / max(bw * bh, 1.0)
        fill_ok = float(np.clip(fill / 0.15, 0.0, 1.0))
        return float(np.clip(crisp * contained * fill_ok, 0.0, 1.0))

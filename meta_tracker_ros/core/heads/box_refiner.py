"""Learned box refinement: where are the target's four edges, given a box near it?

Why: the classifier localises the centre and the DSST scale filter changes the size by one
factor, so the box keeps the first frame's aspect ratio and lags a target that turns, bends or
grows unevenly. On the 31 development sequences the tracker is often centred (P@20 near 1) with a
low overlap (success AUC 0.3-0.5 on several of them): the box edges are the loss. The papers'
trackers learn this part offline (ATOM/DiMP's IoU-Net, RTS's box from the mask); ours is a
deliberately small version sized for 60 training clips:

* for each edge of the current box, the frozen backbone's stride-8 and stride-16 features are
  sampled along a line across that edge (``PROFILE`` points from ``REACH`` box sides inside to
  ``REACH`` outside) and averaged over ``ACROSS`` lines spread along the edge;
* each point gets a learned 1x1 reduction of its features, its cosine similarity to the target
  and to the background of the first frame (the per-target, online part: two mean vectors per
  level), its signed position, the side's size in cells and the edge's type;
* one small 1-D conv net, shared by the four edges (every profile is ordered from inside to
  outside), scores the points; the soft-argmax of the scores is the edge's new position.

Every edge moves by at most ``REACH`` box sides per call. The same functions serve tracking
(``core/target.py``) and training (``training/box_train.py``), so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from meta_tracker_ros.core.heads.weights_file import check_meta, read_head, write_head

FORMAT = "meta_tracker_ros.box_refiner"
VERSION = 1

# The file shipped inside the package (``box_refine.weights_path: ""``).
SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "box_refiner.pt"

LEVELS = ("s8", "s16")  # the classifier's levels: computed every frame anyway
PROFILE = 16  # points along each edge's profile
ACROSS = 5  # lines averaged along the edge
SPREAD = 0.6  # the lines cover this share of the edge's length, centred
REACH = 0.5  # the profile spans the edge +- REACH x the box side across it
EDGES = 4  # left, right, top, bottom
_SIMS = 2  # cosine similarity to the target and to the background, per level


def profile_positions(device: torch.device | str = "cpu") -> torch.Tensor:
    """(PROFILE,) signed offsets in box sides, negative inside the box, positive outside."""
    return torch.linspace(-REACH, REACH, PROFILE, device=device)


def sample_points(
    feat: torch.Tensor, stride: int, xs: torch.Tensor, ys: torch.Tensor
) -> torch.Tensor:
    """Bilinear samples of ``feat`` (N, C, h, w) at crop pixels ``xs``, ``ys`` (N, ...).

    Returns (N, C, ...); zero outside the map (the crop's own padding is zero too).
    """
    h, w = feat.shape[-2:]
    gx = (2.0 * ((xs - (stride - 1) / 2.0) / stride) + 1.0) / w - 1.0
    gy = (2.0 * ((ys - (stride - 1) / 2.0) / stride) + 1.0) / h - 1.0
    shape = xs.shape
    grid = torch.stack([gx, gy], dim=-1).reshape(shape[0], 1, -1, 2)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(shape[0], feat.shape[1], *shape[1:])


def edge_grid(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop-pixel sample points (N, EDGES, ACROSS, PROFILE) for boxes (N, 4) x0, y0, x1, y1.

    Profiles run from inside the box to outside: leftwards across the left edge, rightwards
    across the right one, upwards across the top, downwards across the bottom.
    """
    x0, y0, x1, y1 = boxes.unbind(-1)
    w = (x1 - x0).clamp(min=1.0)
    h = (y1 - y0).clamp(min=1.0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    t = profile_positions(boxes.device).view(1, 1, -1)  # (1, 1, P)
    a = torch.linspace(-SPREAD / 2, SPREAD / 2, ACROSS, device=boxes.device).view(1, -1, 1)
    n = boxes.shape[0]

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.view(n, 1, 1)

    ones = torch.ones(n, ACROSS, PROFILE, device=boxes.device)
    left_x = col(x0) - t * col(w)
    right_x = col(x1) + t * col(w)
    rows = (col(cy) + a * col(h)) * ones
    top_y = col(y0) - t * col(h)
    bottom_y = col(y1) + t * col(h)
    cols = (col(cx) + a * col(w)) * ones
    xs = torch.stack([left_x * ones, right_x * ones, cols, cols], dim=1)
    ys = torch.stack([rows, rows, top_y * ones, bottom_y * ones], dim=1)
    return xs, ys


def box_grid(boxes: torch.Tensor, k: int = 5, ring: float = 0.0) -> tuple[torch.Tensor, ...]:
    """Sample points (N, k*k) inside the boxes, or on a ring ``ring`` box sides outside them."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    w, h = (x1 - x0).clamp(min=1.0), (y1 - y0).clamp(min=1.0)
    lin = (torch.arange(k, dtype=boxes.dtype, device=boxes.device) + 0.5) / k - 0.5
    if ring > 0:  # points on the border of the box grown by 2 * ring sides
        g = 1.0 + 2.0 * ring
        u = torch.cat([lin * g, lin * g, torch.full_like(lin, -g / 2), torch.full_like(lin, g / 2)])
        v = torch.cat([torch.full_like(lin, -g / 2), torch.full_like(lin, g / 2), lin * g, lin * g])
    else:
        v, u = torch.meshgrid(lin, lin, indexing="ij")
        u, v = u.reshape(-1), v.reshape(-1)
    xs = ((x0 + x1) / 2.0).view(-1, 1) + u.view(1, -1) * w.view(-1, 1)
    ys = ((y0 + y1) / 2.0).view(-1, 1) + v.view(1, -1) * h.view(-1, 1)
    return xs, ys


@dataclass
class Reference:
    """The per-target part, fitted on the first frame: level scales and fg / bg mean vectors."""

    scales: list[torch.Tensor]  # (N,) 1 / first-frame std per level and crop
    fg: list[torch.Tensor]  # (N, C_level) unit vectors, per level
    bg: list[torch.Tensor]


def fit_reference(feats: list[torch.Tensor], strides: list[int], boxes: torch.Tensor) -> Reference:
    """Target and background mean features of the first frame's crops at ``boxes`` (N, 4)."""
    scales, fg, bg = [], [], []
    inside, ring = box_grid(boxes), box_grid(boxes, ring=0.5)
    for f, s in zip(feats, strides, strict=True):
        scales.append(1.0 / f.flatten(1).std(dim=1).clamp(min=1e-6))
        fg.append(F.normalize(sample_points(f, s, *inside).mean(-1), dim=1))
        bg.append(F.normalize(sample_points(f, s, *ring).mean(-1), dim=1))
    return Reference(scales, fg, bg)


class BoxRefiner(nn.Module):
    """Shared 1-D edge scorer over feature profiles (see the module docstring); ~6k weights.

    Inputs per profile point: the reduced features, the similarities to the reference, the
    signed position, log2 of the box side across the edge in coarsest-level cells, and the
    edge's type (one-hot).
    """

    def __init__(self, channels: list[int], reduce: int = 16, width: int = 24) -> None:
        super().__init__()
        self.channels = list(channels)
        self.reduce = nn.Conv1d(sum(channels), reduce, 1)
        c_in = reduce + _SIMS * len(channels) + 2 + EDGES
        self.net = nn.Sequential(
            nn.Conv1d(c_in, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, 1, 1),
        )
        # Start with flat scores: the soft-argmax of a flat profile is 0, "leave the box".
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def profiles(
        self, feats: list[torch.Tensor], strides: list[int], boxes: torch.Tensor, ref: Reference
    ) -> torch.Tensor:
        """(N * EDGES, c_in, PROFILE) inputs of the edge scorer for boxes (N, 4) in crop pixels."""
        xs, ys = edge_grid(boxes)
        n = boxes.shape[0]
        raw, sims = [], []
        for f, s, sc, fg, bg in zip(feats, strides, ref.scales, ref.fg, ref.bg, strict=True):
            p = sample_points(f, s, xs, ys).mean(3) * sc.view(-1, 1, 1, 1)  # (N, C, EDGES, PROFILE)
            raw.append(p)
            unit = F.normalize(p, dim=1)
            sims.append(torch.einsum("nc,ncep->nep", fg, unit))
            sims.append(torch.einsum("nc,ncep->nep", bg, unit))
        x = torch.cat(raw, dim=1).permute(0, 2, 1, 3).reshape(n * EDGES, -1, PROFILE)
        sim = torch.stack(sims, dim=2).reshape(n * EDGES, -1, PROFILE)
        pos = profile_positions(boxes.device).view(1, 1, -1).expand(n * EDGES, 1, PROFILE)
        kind = torch.eye(EDGES, device=boxes.device).repeat(n, 1)
        kind = kind.view(n * EDGES, EDGES, 1).expand(-1, -1, PROFILE)
        # How many coarsest-level cells the profile spans: a profile across a side of one or two
        # cells is mostly blur, and the scorer should learn to trust it less.
        w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
        h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
        across = torch.stack([w, w, h, h], dim=1).reshape(n * EDGES, 1, 1)
        cells = torch.log2(across / max(strides)).expand(-1, 1, PROFILE)
        return torch.cat([self.reduce(x), sim, pos, cells, kind], dim=1)

    def forward(
        self, feats: list[torch.Tensor], strides: list[int], boxes: torch.Tensor, ref: Reference
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined boxes (N, 4) and the per-edge offsets (N, EDGES) in box sides (+ = outward)."""
        logits = self.net(self.profiles(feats, strides, boxes, ref)).squeeze(1)
        prob = torch.softmax(logits, dim=-1)
        off = (prob * profile_positions(boxes.device)).sum(-1).view(-1, EDGES)
        return apply_offsets(boxes, off), off


def apply_offsets(boxes: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """Move each edge of boxes (N, 4) outward by ``off`` (N, EDGES) x the box side across it."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    w, h = x1 - x0, y1 - y0
    return torch.stack(
        [x0 - off[:, 0] * w, y0 - off[:, 2] * h, x1 + off[:, 1] * w, y1 + off[:, 3] * h], dim=-1
    )


def edge_targets(boxes: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The offsets (N, EDGES) that move ``boxes`` onto ``truth``, clipped to +-REACH."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    w, h = (x1 - x0).clamp(min=1e-3), (y1 - y0).clamp(min=1e-3)
    g0, h0, g1, h1 = truth.unbind(-1)
    off = torch.stack([(x0 - g0) / w, (x1 - g1) / w * -1.0, (y0 - h0) / h, (y1 - h1) / h * -1.0], 1)
    return off.clamp(-REACH, REACH)


@dataclass
class BoxRefinerFile:
    """A trained refiner and the metadata it was trained with."""

    refiner: BoxRefiner
    meta: dict[str, Any]

    def check(self, backbone: str) -> None:
        """Raise ValueError naming the mismatch when this file does not fit the tracker.

        The crop geometry it was trained with is recorded but not required: profiles are
        measured in box sides, so another ``search.crop_size`` or ``search_area`` changes the
        features' resolution, not their meaning.
        """
        want = {
            "backbone": backbone,
            "levels": list(LEVELS),
            "profile": [PROFILE, ACROSS, SPREAD, REACH],
        }
        check_meta(
            self.meta,
            want,
            "box refiner file",
            "retrain with python -m meta_tracker_ros.training box, or set "
            "box_refine.enabled: false",
        )


def save_refiner(path: str | Path, refiner: BoxRefiner, meta: dict[str, Any]) -> None:
    """Write the file (tensors detached to CPU, metadata as plain values)."""
    write_head(path, FORMAT, VERSION, refiner, meta)


def load_refiner(path: str | Path) -> BoxRefinerFile:
    """Read a file written by :func:`save_refiner`; ValueError for anything else."""
    refiner, meta = read_head(
        path,
        FORMAT,
        VERSION,
        BoxRefiner,
        "box refiner file",
        "train one with python -m meta_tracker_ros.training box, or set box_refine.enabled: false",
    )
    return BoxRefinerFile(refiner, meta)

"""Training the learned scale head on the classifier's feature cache.

    python -m meta_tracker_ros.training scale --data ../shared/data/train --out FILE [...]

Samples mirror what the tracker hands the head: the first frame of an episode gives the fixed
template (sampled at the ground-truth box of the init entry's unaugmented crop), a frame between
it and the test frame gives the running template (at its ground-truth box with a small size
error, as the tracker's own box has), and a frame 1..``max_gap`` after the first gives the
features around a box whose centre is off by a few percent of the target size and whose size is
off by a log-normal factor; in half of the samples the box also keeps the first frame's aspect
ratio, as the tracker's box does. The target is the log of the true size over the box's size
(size = the square root of the area). Features come from the cache of ``cache.py``, so a sample
costs a memmap read and a few ``grid_sample`` calls.

Early stopping and the kept weights follow the mean absolute log size error after the head's
correction on a fixed set of validation samples; the error before correction and the slope of
the predicted against the true change are logged beside it (the DSST filter's slope is about a
third: it shrinks every change).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from meta_tracker_ros.core.backbone import LITE0_LEVELS
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import Crop
from meta_tracker_ros.core.heads.scale_head import (
    CELLS,
    LEVELS,
    NUM_SCALES,
    PADDING,
    RANGE,
    ScaleHead,
    log_factors,
    sample_scales,
    sample_template,
    save_head,
    size_targets,
)
from meta_tracker_ros.training.box_train import crop_xyxy
from meta_tracker_ros.training.cache import FeatureCache
from meta_tracker_ros.training.head_loop import run_cli, train_cached_head

log = logging.getLogger(__name__)

STRIDES = [LITE0_LEVELS[lv][1] for lv in LEVELS]


@dataclass
class ScaleTrainConfig:
    data: str = "../shared/data/train"
    out: str = "meta_tracker_ros/core/weights/scale_head.pt"
    steps: int = 1500
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_every: int = 50
    patience: int = 8  # validations without a lower error before stopping
    val_samples: int = 512
    seed: int = 0
    split_seed: int = 0  # which videos form the validation split (0: the classifier's)
    threads: int = 2
    cache: str = ""  # feature cache directory ("" = the classifier's default)
    init_stride: int = 6  # must match the classifier's cache to share it
    max_gap: int = 50  # test frames come from the next max_gap frames after the first
    running_gap: int = 10  # the running template's frame lies at most this far before the test
    center_jitter: float = 0.05  # sigma of the centre error, x sqrt(target area)
    scale_jitter: float = 0.12  # sigma of the log size error of the test box
    near_prob: float = 0.0  # share of test boxes with the small error near_jitter instead
    near_jitter: float = 0.03
    running_scale_jitter: float = 0.04  # sigma of the running template's log size error
    first_aspect_prob: float = 0.5  # share of samples whose box has the first frame's aspect
    progress: bool = True


def _scaled(box, factor: float) -> tuple[float, float, float, float]:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return (cx - w * factor / 2, cy - h * factor / 2, w * factor, h * factor)


class ScaleSampler:
    """First-frame / running / test triples from the cache for a list of clips."""

    def __init__(self, cache: FeatureCache, clips: list[str], cfg: ScaleTrainConfig, seed: int):
        self.cache = cache
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.pairs: list[tuple[str, int, list[int]]] = []
        for name in clips:
            info = cache.clips.get(name)
            if info is None:
                continue
            for j in sorted(int(k) for k in info["init"]):
                hi = min(info["frames"], j + 1 + cfg.max_gap)
                later = [t for t in range(j + 1, hi) if str(t) in info["search"]]
                if later:
                    self.pairs.append((name, j, later))
        if not self.pairs:
            raise ValueError("no scale-head samples can be drawn from these clips")

    def _features(self, kind: str, row: int, aug: int | None = None) -> list[np.ndarray]:
        table = self.cache.init if kind == "init" else self.cache.search
        if aug is None:
            return [np.asarray(table[lv][row], np.float32) for lv in LEVELS]
        return [np.asarray(table[lv][row, aug], np.float32) for lv in LEVELS]

    def sample(self, n: int) -> dict:
        """A batch: the three feature sets, their boxes, and the true boxes of the test frame."""
        c, rng = self.cfg, self.rng
        first, running, test = [], [], []
        first_boxes, running_boxes, boxes, truth = [], [], [], []
        for _ in range(n):
            name, j, later = self.pairs[int(rng.integers(len(self.pairs)))]
            t = int(later[int(rng.integers(len(later)))])
            info = self.cache.clips[name]
            e0 = info["init"][str(j)]
            first.append(self._features("init", e0["row"], 0))
            first_boxes.append(
                crop_xyxy(Crop(*e0["crop"][:3], int(e0["crop"][3])), info["boxes"][j])
            )
            # The running template's frame: the first frame itself or one after it (search
            # entries exist at every frame with a target, the first included).
            lo = max(j, t - c.running_gap)
            between = [u for u in range(lo, t) if str(u) in info["search"]] or [j]
            u = int(between[int(rng.integers(len(between)))])
            eu = info["search"][str(u)]
            running.append(self._features("search", eu["row"]))
            f = math.exp(rng.normal() * c.running_scale_jitter)
            crop_u = Crop(*eu["crop"][:3], int(eu["crop"][3]))
            running_boxes.append(crop_xyxy(crop_u, _scaled(info["boxes"][u], f)))
            gx, gy, gw, gh = info["boxes"][t]
            w, h = gw, gh
            if rng.random() < c.first_aspect_prob:  # the first frame's aspect, this area
                _, _, w0, h0 = info["boxes"][j]
                ar = w0 / max(h0, 1e-6)
                w, h = math.sqrt(gw * gh * ar), math.sqrt(gw * gh / ar)
            sigma = c.scale_jitter
            if c.near_prob > 0 and rng.random() < c.near_prob:  # no extra draw at 0
                sigma = c.near_jitter
            s = math.exp(rng.normal() * sigma)
            w, h = w * s, h * s
            size = math.sqrt(gw * gh)
            cx = gx + gw / 2 + rng.normal() * c.center_jitter * size
            cy = gy + gh / 2 + rng.normal() * c.center_jitter * size
            e1 = info["search"][str(t)]
            test.append(self._features("search", e1["row"]))
            wide = Crop(*e1["crop"][:3], int(e1["crop"][3]))
            boxes.append(crop_xyxy(wide, (cx - w / 2, cy - h / 2, w, h)))
            truth.append(crop_xyxy(wide, (gx, gy, gw, gh)))

        def stack(rows: list[list[np.ndarray]]) -> list[torch.Tensor]:
            return [torch.from_numpy(np.stack([r[i] for r in rows])) for i in range(len(LEVELS))]

        def tensor(rows: list) -> torch.Tensor:
            return torch.tensor(rows, dtype=torch.float32)

        return {
            "first": stack(first),
            "first_boxes": tensor(first_boxes),
            "running": stack(running),
            "running_boxes": tensor(running_boxes),
            "test": stack(test),
            "boxes": tensor(boxes),
            "truth": tensor(truth),
        }


def loss_fn(model: ScaleHead, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smooth-L1 loss of the predicted log size change; the prediction and its target."""
    first = sample_template(batch["first"], STRIDES, batch["first_boxes"])
    running = sample_template(batch["running"], STRIDES, batch["running_boxes"])
    samples = sample_scales(batch["test"], STRIDES, batch["boxes"], log_factors())
    change, _ = model(samples, first, running)
    target = size_targets(batch["boxes"], batch["truth"])
    return F.smooth_l1_loss(change, target, beta=0.02), change, target


@torch.no_grad()
def evaluate(model: ScaleHead, batches: list[dict]) -> dict[str, float]:
    """Mean absolute log size error after and before the correction, its slope, the loss."""
    model.eval()
    pred, true, losses = [], [], []
    for b in batches:
        loss, change, target = loss_fn(model, b)
        losses.append(float(loss))
        pred.append(change)
        true.append(target)
    model.train()
    p, t = torch.cat(pred), torch.cat(true)
    slope = float((p * t).sum() / (t * t).sum().clamp(min=1e-12))
    return {
        "val_error": float((t - p).abs().mean()),
        "val_error_unchanged": float(t.abs().mean()),
        "val_slope": slope,
        "val_loss": float(np.mean(losses)),
    }


def train_scale(cfg: ScaleTrainConfig, tracker_cfg: TrackerConfig, command: str = "") -> dict:
    """Train, keep the lowest validation error, write the head file and its summary."""
    return train_cached_head(
        cfg,
        tracker_cfg,
        command,
        what="scale head",
        levels=LEVELS,
        sampler=ScaleSampler,
        make_model=lambda: ScaleHead([LITE0_LEVELS[lv][2] for lv in LEVELS]),
        loss_fn=loss_fn,
        evaluate=evaluate,
        score="val_error",
        higher_is_better=False,
        geometry=("grid", [NUM_SCALES, RANGE, CELLS, PADDING]),
        scores=lambda best: {
            "val_error": round(float(best["val_error"]), 4),
            "val_error_unchanged": round(float(best["val_error_unchanged"]), 4),
            "val_slope": round(float(best["val_slope"]), 3),
        },
        save=save_head,
        labels=("smooth-L1 log size change", "validation error"),
        split_seed=cfg.split_seed,
    )


def main(argv: list[str]) -> int:
    return run_cli(
        ScaleTrainConfig,
        "scale",
        "Train the learned scale head on the training clips' feature cache.",
        train_scale,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

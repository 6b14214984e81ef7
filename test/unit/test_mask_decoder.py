"""The learned mask decoder on real frames: shapes, training step, pasted episodes, init, file."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from meta_tracker_ros.core import create_tracker
from meta_tracker_ros.core.backbone import LITE0_LEVELS
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.heads.mask_decoder import (
    CUES,
    SHIPPED,
    MaskDecoder,
    load_decoder,
    save_decoder,
)
from meta_tracker_ros.core.heads.mask_head import MaskHead
from meta_tracker_ros.evaluation.datasets import load_sequences
from meta_tracker_ros.training.mask_data import (
    LEVELS,
    HeadRunner,
    MaskDataConfig,
    generate,
    mask_box,
    paste,
    random_affine,
)
from meta_tracker_ros.training.mask_train import loss_fn

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TRAIN = SHARED / "train"
CLIP = "davis16_bear"  # a training-split mask clip
EVAL_SEQ = "davis16_dog"  # an evaluation DAVIS sequence (only run here, never trained on)


def _clip(root: Path, name: str):
    if not (root / "masks" / name).is_dir():
        pytest.skip(f"mask clip {name} not found under {root} (needs ../shared/data)")
    return load_sequences(root, "shared", [name])[1][0]


def _decoder():
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped mask decoder at {SHIPPED} (make train-mask writes it)")
    return load_decoder(SHIPPED)


def _head(decoder, frame, box, mask=None):
    cfg = TrackerConfig()
    runner = HeadRunner(cfg)
    head = MaskHead(cfg.mask, torch.device("cpu"), decoder, LEVELS)
    feats, crop = runner.feats(frame, box)
    head.initialize(frame, box, feats, crop, mask)
    return head, runner


def test_decoder_output_shape_and_range_on_real_frames():
    dec = _decoder()
    seq = _clip(TRAIN, CLIP)
    f0, f5 = seq.frame(0), seq.frame(5)
    box0, box5 = mask_box(seq.mask(0)), mask_box(seq.mask(5))
    head, runner = _head(dec.decoder, f0, box0)
    feats, crop = runner.feats(f5, box5)
    full, grid, _, _ = head.decoder_inputs(f5, box5, feats, crop)
    assert full.shape[1] == len(CUES) and full.shape[-1] % 4 == 0 and full.shape[-2] % 4 == 0
    assert grid.shape[1] == sum(LITE0_LEVELS[lv][2] for lv in LEVELS)
    assert tuple(grid.shape[-2:]) == (full.shape[-2] // 4, full.shape[-1] // 4)
    logit = dec.decoder(full, grid)
    assert logit.shape == (1, 1, *full.shape[-2:]) and torch.isfinite(logit).all()
    est = head.segment(f5, box5, feats, crop)
    x0, y0, x1, y1 = est.roi
    assert est.prob.shape == (y1 - y0, x1 - x0)
    assert est.prob.min() >= 0.0 and est.prob.max() <= 1.0
    assert 0.0 <= est.confidence <= 1.0
    assert est.full_mask((f5.shape[1], f5.shape[0])).any()


def test_one_training_step_lowers_the_loss():
    seq = _clip(TRAIN, CLIP)
    cfg = TrackerConfig()
    data = generate(
        cfg, [seq], [seq], MaskDataConfig(inits_per_clip=1, targets_per_init=3), False, False
    )
    full = torch.from_numpy(data["full"].astype(np.float32))
    feats = torch.from_numpy(data["feats"].astype(np.float32))
    label = torch.from_numpy(data["label"].astype(np.float32))[:, None]
    valid = full[:, CUES.index("valid") : CUES.index("valid") + 1]
    torch.manual_seed(0)
    model = MaskDecoder([LITE0_LEVELS[lv][2] for lv in LEVELS])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = loss_fn(model(full, feats), label, valid, 1.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    before = float(loss.detach())
    with torch.no_grad():
        after = loss_fn(model(full, feats), label, valid, 1.0)
    assert float(after) < before


def test_pasted_mask_matches_the_pasted_object():
    seq = _clip(TRAIN, CLIP)
    image, mask = seq.frame(3), seq.mask(3)
    background = cv2.resize(seq.frame(15)[::-1].copy(), (image.shape[1], image.shape[0]))
    matrix = random_affine(random.Random(1), mask_box(mask), (image.shape[1], image.shape[0]))
    out, m = paste(image, mask, background, matrix)
    h, w = background.shape[:2]
    obj = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    warped = cv2.warpAffine((mask > 0).astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST)
    fg = m > 0
    assert fg.any() and np.array_equal(fg, warped > 0)
    assert np.array_equal(out[fg], obj[fg])  # the label covers exactly the pasted object ...
    assert np.array_equal(out[~fg], background[~fg])  # ... and nothing else changed
    scale2 = abs(np.linalg.det(matrix[:, :2]))
    visible = int(fg.sum()) / (int((mask > 0).sum()) * scale2)
    assert 0.5 < visible < 1.2  # about the scaled area (less where it leaves the frame)


@pytest.mark.parametrize("use_mask", [False, True])
def test_box_and_mask_init_give_non_empty_masks(use_mask):
    _decoder()
    seq = _clip(SHARED, EVAL_SEQ)
    frame, gt = seq.frame(0), seq.mask(0)
    box = tuple(float(v) for v in seq.boxes[0])
    tracker = create_tracker()
    assert tracker._multi.mask_decoder is not None  # the learned decoder is the default
    tracker.initialize(frame, box, gt if use_mask else None)
    result = tracker.track(seq.frame(1))
    assert result.mask is not None and int((result.mask > 0).sum()) > 100


def test_save_load_round_trip_gives_identical_masks(tmp_path):
    dec = _decoder()
    path = tmp_path / "decoder.pt"
    save_decoder(path, dec.decoder, dec.meta)
    again = load_decoder(path)
    assert again.meta["levels"] == dec.meta["levels"]
    seq = _clip(TRAIN, CLIP)
    f0, f4 = seq.frame(0), seq.frame(4)
    box0, box4 = mask_box(seq.mask(0)), mask_box(seq.mask(4))
    probs = []
    for d in (dec.decoder, again.decoder):
        head, runner = _head(d, f0, box0)
        feats, crop = runner.feats(f4, box4)
        probs.append(head.segment(f4, box4, feats, crop).prob)
    assert np.array_equal(probs[0], probs[1])


def test_mismatched_file_names_the_field(tmp_path):
    dec = _decoder()
    path = tmp_path / "decoder.pt"
    save_decoder(path, dec.decoder, {**dec.meta, "work_size": 64})
    bad = load_decoder(path)
    with pytest.raises(ValueError, match="work_size"):
        bad.check("efficientnet-lite0", LEVELS, 128, 2.0)
    cfg = TrackerConfig().with_overrides({"mask.weights_path": str(path)})
    with pytest.raises(ValueError, match="work_size"):
        create_tracker(cfg)
    off = TrackerConfig().with_overrides({"mask.weights_path": str(path), "mask.learned": False})
    assert create_tracker(off)._multi.mask_decoder is None  # training-free head: file unused

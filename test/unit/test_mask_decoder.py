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
    FORMAT,
    RIDGE_CUES,
    SCORE_CUES,
    SHIPPED,
    MaskDecoder,
    load_decoder,
    save_decoder,
)
from meta_tracker_ros.core.heads.mask_head import MaskHead
from meta_tracker_ros.core.heads.weights_file import read_versioned
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
from meta_tracker_ros.training.mask_train import jitter_cues, loss_fn, lovasz_hinge

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
    assert full.shape[1] == len(dec.decoder.cues)
    assert full.shape[-1] % 4 == 0 and full.shape[-2] % 4 == 0
    assert grid.shape[1] == sum(LITE0_LEVELS[lv][2] for lv in LEVELS)
    assert tuple(grid.shape[-2:]) == (full.shape[-2] // 4, full.shape[-1] // 4)
    logit = dec.decoder(full, grid)
    assert logit.shape == (1, 1, *full.shape[-2:]) and torch.isfinite(logit).all()
    est = head.segment(f5, box5, feats, crop)
    x0, y0, x1, y1 = est.roi
    assert abs((y1 - y0) - est.prob.shape[0] / est.scale) <= 1.0
    assert abs((x1 - x0) - est.prob.shape[1] / est.scale) <= 1.0
    assert est.prob.min() >= 0.0 and est.prob.max() <= 1.0
    assert 0.0 <= est.confidence <= 1.0
    assert est.full_mask((f5.shape[1], f5.shape[0])).any()


def test_online_update_samples_come_from_an_updated_head():
    seq = _clip(TRAIN, CLIP)
    f0, box0 = seq.frame(0), mask_box(seq.mask(0))
    runner = HeadRunner(TrackerConfig())
    fixed, updated = runner.head(f0, box0, None), runner.head(f0, box0, None)
    firsts = []
    for head, update in ((fixed, False), (updated, True)):
        for t in (2, 4):  # the second sample sees the first one's update (if any)
            firsts.append(
                runner.sample(head, seq.frame(t), mask_box(seq.mask(t)), seq.mask(t), update)
            )
    (a2, _, l2), (a4, _, l4), (b2, _, m2), (b4, _, m4) = firsts
    assert np.array_equal(a2, b2) and np.array_equal(l2, m2)  # same head before any update
    assert np.array_equal(l4, m4)  # same label ...
    color = CUES.index("color")
    assert not np.allclose(a4[color], b4[color])  # ... but the colour model has moved


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
    model = MaskDecoder([LITE0_LEVELS[lv][2] for lv in LEVELS], cues=RIDGE_CUES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = loss_fn(model(full, feats), label, valid, 1.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    before = float(loss.detach())
    with torch.no_grad():
        after = loss_fn(model(full, feats), label, valid, 1.0)
    assert float(after) < before


def test_lovasz_hinge_is_zero_for_a_confident_correct_mask_and_ignores_invalid_pixels():
    label = torch.zeros(2, 1, 16, 16)
    label[:, :, 4:12, 4:12] = 1.0
    valid = torch.ones_like(label)
    right = (label * 2 - 1) * 3.0  # every pixel on the right side by a margin above 1
    assert float(lovasz_hinge(right, label, valid)) == 0.0
    wrong = right.clone()
    wrong[:, :, 0:2, :] = 3.0  # a false-positive band ...
    assert float(lovasz_hinge(wrong, label, valid)) > 0.0
    assert float(loss_fn(wrong, label, valid, 1.0, 1.0)) > float(loss_fn(wrong, label, valid, 1.0))
    valid[:, :, 0:2, :] = 0.0  # ... outside the frame does not count
    assert float(lovasz_hinge(wrong, label, valid)) == 0.0


def test_cue_jitter_scales_only_the_cue_logits():
    full = torch.randn(3, len(CUES), 8, 8, generator=torch.Generator().manual_seed(1)) + 5.0
    out = jitter_cues(full, 0.5, torch.Generator().manual_seed(0))
    for i, name in enumerate(CUES):
        if name in ("valid", "b", "g", "r"):
            assert torch.equal(out[:, i], full[:, i])  # mask of the frame and colours kept
        else:
            gain = out[:, i] / full[:, i]  # one positive gain per sample and map
            assert torch.allclose(gain, gain[:, :1, :1].expand_as(gain), atol=1e-4)
            assert (gain > 0).all() and not torch.allclose(gain, torch.ones_like(gain))


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


def _box_init_head(decoder, frame, box, runner, **mask_fields):
    cfg = TrackerConfig().with_overrides({f"mask.{k}": v for k, v in mask_fields.items()})
    head = MaskHead(cfg.mask, torch.device("cpu"), decoder, LEVELS)
    feats, crop = runner.feats(frame, box)
    head.initialize(frame, box, feats, crop, None)
    return head, feats, crop


def test_box_init_passes_refit_the_model_from_the_decoders_own_mask():
    dec = _decoder()
    seq = _clip(TRAIN, CLIP)
    f0, box0 = seq.frame(0), mask_box(seq.mask(0))
    runner = HeadRunner(TrackerConfig())
    one, feats, crop = _box_init_head(dec.decoder, f0, box0, runner, box_init_passes=0)
    two, _, _ = _box_init_head(dec.decoder, f0, box0, runner, box_init_passes=1)
    assert one.init_passes == 0 and two.init_passes == 1
    # The refit is the mask init with the decoder's first-frame mask, cut to the box ...
    est = one.segment(f0, box0, feats, crop)
    label = est.full_mask((f0.shape[1], f0.shape[0]))
    x, y, w, h = (round(v) for v in box0)
    label[:y] = 0
    label[y + h :] = 0
    label[:, :x] = 0
    label[:, x + w :] = 0
    given = MaskHead(TrackerConfig().mask, torch.device("cpu"), dec.decoder, LEVELS)
    given.initialize(f0, box0, feats, crop, label)
    assert np.allclose(two._hist_fg0, given._hist_fg0)
    assert np.allclose(two._hist_bg0, given._hist_bg0)
    assert torch.equal(two._feat_fg, given._feat_fg)
    assert not np.allclose(two._hist_fg0, one._hist_fg0)  # ... not the box fit's colours,
    assert np.array_equal(two._shape, one._shape)  # but the box fit's soft shape memory
    # The fit moves the colour models towards the ground truth's: fewer background colours.
    truth = MaskHead(TrackerConfig().mask, torch.device("cpu"), dec.decoder, LEVELS)
    truth.initialize(f0, box0, feats, crop, seq.mask(0))
    dist = [float(np.abs(h._hist_fg0 - truth._hist_fg0).sum()) for h in (one, two)]
    assert dist[1] < dist[0]


def test_box_init_passes_stop_at_the_gate_and_without_a_decoder():
    dec = _decoder()
    seq = _clip(TRAIN, CLIP)
    f0, box0 = seq.frame(0), mask_box(seq.mask(0))
    runner = HeadRunner(TrackerConfig())
    base, _, _ = _box_init_head(dec.decoder, f0, box0, runner, box_init_passes=0)
    for fields in (
        {"box_init_passes": 2, "box_init_min_iou": 1.01},  # no mask box agrees that well
        {"box_init_passes": 2, "box_init_min_confidence": 1.01},
    ):
        head, _, _ = _box_init_head(dec.decoder, f0, box0, runner, **fields)
        assert head.init_passes == 0 and np.array_equal(head._hist_fg0, base._hist_fg0)
    free, _, _ = _box_init_head(None, f0, box0, runner, box_init_passes=2)
    assert free.init_passes == 0


def _on_and_off_target(data, cues, name, low, high):
    """Per sample: mean of map ``name`` on the labelled target and off it (valid pixels)."""
    assert data["full"].shape[1] == len(cues)
    values = data["full"][:, cues.index(name)].astype(np.float32)
    valid = data["full"][:, cues.index("valid")] > 0.5
    label = data["label"] > 0
    assert np.isfinite(values).all() and values.max() <= high and values.min() >= low
    return [
        (m[lab & v].mean(), m[~lab & v].mean())
        for m, v, lab in zip(values, valid, label, strict=True)
    ]


def _score_samples():
    seq = _clip(TRAIN, CLIP)
    dcfg = MaskDataConfig(inits_per_clip=1, targets_per_init=3, score_map=True, ridge=False)
    return generate(TrackerConfig(), [seq], [seq], dcfg, False, False)


def test_score_map_samples_hold_the_classifiers_response_on_the_target():
    # The filter fitted on the first frame answers on the target, not around it.
    for on, off in _on_and_off_target(_score_samples(), SCORE_CUES, "score", -1.0, 2.0):
        assert on > off + 0.05


def test_score_map_decoder_trains_and_round_trips(tmp_path):
    data = _score_samples()
    full = torch.from_numpy(data["full"].astype(np.float32))
    feats = torch.from_numpy(data["feats"].astype(np.float32))
    label = torch.from_numpy(data["label"].astype(np.float32))[:, None]
    valid = full[:, CUES.index("valid") : CUES.index("valid") + 1]
    torch.manual_seed(0)
    model = MaskDecoder([LITE0_LEVELS[lv][2] for lv in LEVELS], cues=SCORE_CUES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = loss_fn(model(full, feats), label, valid, 1.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert float(loss_fn(model(full, feats), label, valid, 1.0)) < float(loss.detach())
    path = tmp_path / "score.pt"
    meta = {"backbone": "efficientnet-lite0", "levels": LEVELS, "work_size": 128}
    save_decoder(path, model, {**meta, "context": 2.0, "cues": list(SCORE_CUES)})
    again = load_decoder(path)
    assert again.decoder.cues == SCORE_CUES
    again.check("efficientnet-lite0", LEVELS, 128, 2.0)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(full, feats), again.decoder(full, feats))
    # A reader of the first format (version 1) refuses the file by its version.
    with pytest.raises(ValueError, match="file version 2"):
        read_versioned(path, FORMAT, 1, "mask decoder file", "")
    # Meta that disagrees with the stored decoder's cue list is named.
    save_decoder(path, model, {**meta, "context": 2.0, "cues": list(CUES)})
    with pytest.raises(ValueError, match="cues"):
        load_decoder(path).check("efficientnet-lite0", LEVELS, 128, 2.0)


def test_ridge_samples_hold_a_discriminator_that_separates_the_target():
    seq = _clip(TRAIN, CLIP)
    dcfg = MaskDataConfig(inits_per_clip=2, targets_per_init=3, ridge=True, mask_init_prob=0.5)
    data = generate(TrackerConfig(), [seq], [seq], dcfg, False, False)
    # Fitted on the first frame (+1 target, -1 background), it answers on later frames' targets.
    for on, off in _on_and_off_target(data, RIDGE_CUES, "ridge", -2.0, 2.0):
        assert on > off + 0.5
    with pytest.raises(ValueError, match="not both"):
        _ = MaskDataConfig(score_map=True, ridge=True).cues


def test_heads_build_the_inputs_their_decoder_reads():
    seq = _clip(TRAIN, CLIP)
    f0, f5 = seq.frame(0), seq.frame(5)
    box0, box5 = mask_box(seq.mask(0)), mask_box(seq.mask(5))
    channels = [LITE0_LEVELS[lv][2] for lv in LEVELS]
    runner = HeadRunner(TrackerConfig())
    track = runner.target(f0, box0)
    feats, crop = runner.feats(f5, box5)
    score = runner.score(track, feats)
    for cues in (CUES, RIDGE_CUES, SCORE_CUES):
        head, _ = _head(MaskDecoder(channels, cues=cues).eval(), f0, box0)
        full, _, _, _ = head.decoder_inputs(f5, box5, feats, crop, score)
        assert full.shape[1] == len(cues)  # a plain decoder ignores the score map
        assert (head._ridge is not None) == ("ridge" in cues)  # fitted only for its reader
        if "ridge" in cues:
            assert np.abs(full[0, cues.index("ridge")].numpy()).max() > 0.1
        est = head.segment(f5, box5, feats, crop, score)
        assert est.prob.max() <= 1.0 and est.prob.min() >= 0.0
    # Without a map, a score decoder reads zeros ("no classifier evidence").
    none, _, _, _ = head.decoder_inputs(f5, box5, feats, crop)
    assert not none[0, -1].any() and full[0, -1].any()
    if SHIPPED.is_file():  # the shipped file and the tracker's default agree on the cues
        assert load_decoder(SHIPPED).decoder.cues in (CUES, SCORE_CUES, RIDGE_CUES)


def test_training_gives_the_same_file_whether_it_builds_the_samples_or_finds_them(
    tmp_path, monkeypatch
):
    """Building samples draws from torch's generator; the decoder's start must not depend on it."""
    if not (TRAIN / "masks").is_dir():
        pytest.skip(f"training clips not found under {TRAIN} (needs ../shared/data)")
    from meta_tracker_ros.training import mask_train

    rng = np.random.default_rng(0)
    n_cues, n_feats = len(RIDGE_CUES), sum(LITE0_LEVELS[lv][2] for lv in LEVELS)

    def arrays(n: int) -> dict[str, np.ndarray]:
        full = rng.standard_normal((n, n_cues, 128, 128)).astype(np.float16)
        full[:, RIDGE_CUES.index("valid")] = 1.0
        return {
            "full": full,
            "feats": rng.standard_normal((n, n_feats, 32, 32)).astype(np.float16),
            "label": (rng.random((n, 128, 128)) > 0.5).astype(np.uint8),
        }

    train, val = arrays(4), arrays(2)
    files = []
    for builds in (True, False):

        def fake_build_or_load(*_args, builds=builds, **_kwargs):
            if builds:
                torch.rand(1000)  # what generating samples does to the global generator
            return train, val, tmp_path / "samples"

        monkeypatch.setattr(mask_train, "build_or_load", fake_build_or_load)
        cfg = mask_train.MaskTrainConfig(
            data=str(TRAIN), out=str(tmp_path / f"built_{builds}.pt"), steps=1, batch=2
        )
        cfg.val_every, cfg.progress = 1, False
        mask_train.train_mask(cfg, TrackerConfig())
        files.append(load_decoder(cfg.out).decoder.state_dict())
    assert all(torch.equal(files[0][k], files[1][k]) for k in files[0])

"""Training samples for the mask decoder, made by running the real mask head on mask clips.

Why the real head: the decoder refines the cue maps of ``core.heads.mask_head.MaskHead`` (the
per-target online model). Training on cues computed by any other code would let training and
tracking drift apart, so every sample here comes from ``MaskHead.initialize`` on one frame (from
the ground-truth box, or from the ground-truth mask in ``mask_init_prob`` of the episodes) and
``MaskHead.decoder_inputs`` on a later frame around a jittered box (centre and scale errors
like the tracker's), with the backbone run on the tracker's own search crops.

With ``score_map`` every episode also fits the tracker's own classifier on its first frame
(``core.target.TargetTrack``: the same augmented crops, projection, filter and reference peak
as a tracker start) and each sample gets that filter's score map on the sample's search crop,
divided by the reference peak, as the decoder's ``score`` channel, as the tracker gives it.

"Lucid data dreaming" (``synthetic_share`` of the episodes): the target is cut out of its frame
with its ground-truth mask and pasted, moved, scaled and rotated, onto frames of *another*
training clip, for the first frame and for the later one; a few dozen clips so give thousands
of distinct target/background pairs.

Samples are stored as fp16 ``.npy`` arrays (window maps padded to ``work_size``², grid
features, labels) under a directory named by a key of everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from meta_tracker_ros.core.augment import augmentation_list, augmented_crops
from meta_tracker_ros.core.backbone import create_backbone
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import crop_image, crops_to_tensor, search_crop
from meta_tracker_ros.core.heads.learned import SHIPPED as SHIPPED_CLASSIFIER
from meta_tracker_ros.core.heads.mask_decoder import CUES, POOL, RIDGE_CUES, SCORE_CUES
from meta_tracker_ros.core.heads.mask_head import MaskHead
from meta_tracker_ros.core.multi import load_classifier
from meta_tracker_ros.core.target import TargetTrack
from meta_tracker_ros.evaluation.datasets import Sequence
from meta_tracker_ros.training.cache import reference_runtime
from meta_tracker_ros.training.data import data_key

log = logging.getLogger(__name__)

SAMPLE_VERSION = 1
LEVELS = ["s4", "s8", "s16"]
# Mask fields with no effect on samples (box_init_*: the heads that make samples have no decoder).
_NOT_CUES = {
    "learned",
    "weights_path",
    "decoder_guided",
    "enabled",
    "box_init_passes",
    "box_init_min_confidence",
    "box_init_min_iou",
}


@dataclass
class MaskDataConfig:
    """How many episodes and how they are perturbed."""

    inits_per_clip: int = 20  # first frames per clip (real episodes; as many synthetic ones)
    targets_per_init: int = 4  # later frames per first frame
    max_gap: int = 25  # largest frame distance init -> later frame (clip frames)
    mask_init_prob: float = 0.3  # share of episodes initialised from the ground-truth mask
    center_jitter: float = 0.08  # sigma of the box centre error, x box size
    scale_jitter: float = 0.12  # sigma of the log box size error
    # The head as the tracker holds it: the later frames of an episode, in order of distance
    # from the first, see a head updated (MaskHead.update, the tracker's confidence gate) from
    # the training-free masks of the nearer ones, at most this many times (0: first-frame head).
    online_updates: int = 0
    # The classifier's score map as a decoder input (the ``score`` channel, SCORE_CUES).
    score_map: bool = False
    # The head's ridge discriminator as a decoder input (the ``ridge`` channel, RIDGE_CUES; on
    # since 2026-12-03: validation tracking J +0.016 over four training seeds, every seed up).
    ridge: bool = True
    seed: int = 0

    @property
    def cues(self) -> tuple[str, ...]:
        """The decoder input channels these samples hold."""
        if self.score_map and self.ridge:
            raise ValueError("a decoder reads the score map or the ridge map, not both (yet)")
        if self.ridge:
            return RIDGE_CUES
        return SCORE_CUES if self.score_map else CUES


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight (x, y, w, h) box of a 0/255 mask, None when it has fewer than 16 pixels."""
    ys, xs = np.nonzero(mask > 0)
    if xs.size < 16:
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    return (float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1))


def paste(
    image: np.ndarray, mask: np.ndarray, background: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``image`` with ``mask`` (0/255), warp it by the 2x3 ``matrix``, paste onto background.

    Returns the composite and the pasted object's 0/255 mask: every pixel of the returned mask
    shows the warped object, every other pixel the background (a hard cut, so label and image
    agree exactly).
    """
    h, w = background.shape[:2]
    m = cv2.warpAffine(
        (mask > 0).astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0
    )
    obj = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    out = np.where(m[..., None] > 0, obj, background)
    return out, (m * 255).astype(np.uint8)


def random_affine(
    rng: random.Random, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """Scale, rotate and move the target of ``box`` to a random place in a (w, h) frame."""
    x, y, bw, bh = box
    w, h = size
    s = float(np.exp(rng.uniform(-0.4, 0.3)))
    s = min(s, 0.9 * w / max(bw, 1.0), 0.9 * h / max(bh, 1.0))
    angle = rng.uniform(-20.0, 20.0)
    cx, cy = x + bw / 2, y + bh / 2
    tx = rng.uniform(bw * s / 2, w - bw * s / 2) if w > bw * s else w / 2
    ty = rng.uniform(bh * s / 2, h - bh * s / 2) if h > bh * s else h / 2
    m = cv2.getRotationMatrix2D((cx, cy), angle, s)
    m[0, 2] += tx - cx
    m[1, 2] += ty - cy
    return m


def moved(rng: random.Random, matrix: np.ndarray, box) -> np.ndarray:
    """``matrix`` followed by a small motion (what the object does between two frames)."""
    s = float(np.exp(rng.uniform(-0.2, 0.2)))
    angle = rng.uniform(-10.0, 10.0)
    x, y, bw, bh = box
    c = matrix @ np.array([x + bw / 2, y + bh / 2, 1.0])
    step = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, s)
    step[0, 2] += rng.uniform(-0.3, 0.3) * bw
    step[1, 2] += rng.uniform(-0.3, 0.3) * bh
    return (np.vstack([step, [0, 0, 1]]) @ np.vstack([matrix, [0, 0, 1]]))[:2]


def sample_key(cfg: TrackerConfig, clips: list[Sequence], root: str | Path, dcfg) -> str:
    """Hash of everything that changes the samples."""
    episodes = asdict(dcfg)
    for name in ("online_updates", "score_map", "ridge"):
        if not episodes.get(name):
            del episodes[name]  # added later: keys of caches made before them stay valid
    mask = {k: v for k, v in asdict(cfg.mask).items() if k not in _NOT_CUES}
    if not dcfg.ridge:  # the ridge's settings change only samples that hold its map
        mask = {k: v for k, v in mask.items() if not k.startswith("ridge_")}
    desc = {
        "version": SAMPLE_VERSION,
        "mask": mask,
        "crop": [cfg.search.search_area, cfg.search.crop_size, cfg.search.min_side],
        "backbone": [cfg.backbone.name, cfg.backbone.weights],
        "levels": LEVELS,
        "cues": list(dcfg.cues),
        "data": data_key(root, clips),
        "episodes": episodes,
        "clips": [c.name for c in clips],
    }
    if dcfg.score_map:  # the score maps come from the classifier as configured and shipped
        c = cfg.classifier
        path = Path(c.weights_path or SHIPPED_CLASSIFIER) if c.learned else None
        desc["classifier"] = {
            "config": asdict(c),
            "memory": asdict(cfg.memory),
            "file": hashlib.sha256(path.read_bytes()).hexdigest() if path else None,
        }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


class HeadRunner:
    """Backbone + mask head, exactly as the tracker calls them."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.backbone = create_backbone(reference_runtime(cfg), LEVELS)
        self._learned = None  # the learned classifier file, loaded on first use

    def feats(self, frame: np.ndarray, box) -> tuple[dict[str, torch.Tensor], object]:
        s = self.cfg.search
        x, y, w, h = box
        crop = search_crop((x + w / 2, y + h / 2), (w, h), s.search_area, s.crop_size, s.min_side)
        t = crops_to_tensor([crop_image(frame, crop)], self.backbone.device)
        with torch.no_grad():
            return self.backbone.extract(t), crop

    def head(self, frame, box, mask, cues: tuple[str, ...] | None = None) -> MaskHead:
        head = MaskHead(self.cfg.mask, torch.device("cpu"), None, LEVELS)
        head.sample_cues = cues  # what the decoder to be trained reads (fits the ridge for it)
        feats, crop = self.feats(frame, box)
        head.initialize(frame, box, feats, crop, mask)
        return head

    def target(self, frame, box) -> TargetTrack:
        """The tracker's classifier for ``box``, fitted as at a tracker start (no mask head).

        The core's own TargetTrack.initialize on the tracker's augmented first crops, so the
        filter, projection and reference peak are the ones a tracker start would have.
        """
        cfg = self.cfg
        device = self.backbone.device
        if self._learned is None and cfg.classifier.learned:
            self._learned = load_classifier(cfg, device)
        track = TargetTrack(cfg, device, None, self._learned, None)
        s, c = cfg.search, cfg.classifier
        x, y, w, h = box
        crop = search_crop((x + w / 2, y + h / 2), (w, h), s.search_area, s.crop_size, s.min_side)
        augs = (
            augmentation_list(c.augment_shift, c.augment_blur, c.augment_rotations)
            if c.augment
            else []
        )
        images, centres = augmented_crops(frame, crop, augs)
        with torch.no_grad():
            feats = self.backbone.extract(crops_to_tensor(images, device))
            track.initialize(frame, box, crop, centres, feats, None)
        return track

    @staticmethod
    def score(track: TargetTrack, feats: dict[str, torch.Tensor]) -> np.ndarray:
        """``track``'s score map on a crop's features / its reference (as TargetTrack.step)."""
        assert track.classifier is not None
        with torch.no_grad():
            x = track.projector(feats)
            hw = (int(x.shape[2]), int(x.shape[3]))
            xf = track.classifier.spectra(x)
            score = track.classifier.scores_from_spectra(xf, hw)[0, 0].cpu().numpy()
        return score / track.reference

    def sample(
        self,
        head: MaskHead,
        frame,
        box,
        gt_mask,
        update: bool = False,
        track: TargetTrack | None = None,
    ):
        """Decoder inputs and label; ``update``: then update ``head`` as the tracker would.

        With ``track`` (see :meth:`target`) the inputs hold its score map on this crop.
        """
        feats, crop = self.feats(frame, box)
        score = self.score(track, feats) if track is not None else None
        full, grid, _, _ = head.decoder_inputs(frame, box, feats, crop, score)
        label = head.window_mask(gt_mask, frame, box)
        if update:
            est = head.segment(frame, box, feats, crop, score)
            if est.confidence >= self.cfg.mask_fusion.update_min_confidence:
                head.update(frame, est, box)
        return full[0].numpy(), grid[0].numpy(), label


def _jitter(rng: random.Random, box, dcfg: MaskDataConfig, size) -> tuple:
    x, y, w, h = box
    cx = x + w / 2 + rng.gauss(0, dcfg.center_jitter) * w
    cy = y + h / 2 + rng.gauss(0, dcfg.center_jitter) * h
    w2 = w * float(np.exp(rng.gauss(0, dcfg.scale_jitter)))
    h2 = h * float(np.exp(rng.gauss(0, dcfg.scale_jitter)))
    return (cx - w2 / 2, cy - h2 / 2, max(w2, 4.0), max(h2, 4.0))


def generate(
    cfg: TrackerConfig,
    clips: list[Sequence],
    backgrounds: list[Sequence],
    dcfg: MaskDataConfig,
    synthetic: bool,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Samples of ``clips`` (mask clips): arrays ``full``, ``feats``, ``label`` (padded)."""
    from tqdm import tqdm

    rng = random.Random(dcfg.seed + (1 if synthetic else 0))
    runner = HeadRunner(cfg)
    n = int(cfg.mask.work_size)
    g = n // POOL
    fulls, grids, labels = [], [], []
    bar = tqdm(
        total=len(clips) * dcfg.inits_per_clip,
        disable=not progress,
        desc="mask samples" + (" (synthetic)" if synthetic else ""),
        unit="episode",
        dynamic_ncols=True,
    )
    for clip in clips:
        frames = [i for i in range(len(clip)) if clip.mask(i) is not None]
        for _ in range(dcfg.inits_per_clip):
            bar.update(1)
            j = rng.choice(frames)
            later = [t for t in frames if 0 < abs(t - j) <= dcfg.max_gap]
            if not later:
                continue
            targets = [rng.choice(later) for _ in range(dcfg.targets_per_init)]
            if dcfg.online_updates > 0:
                targets.sort(key=lambda t, j=j: abs(t - j))
            img0, m0 = clip.frame(j), clip.mask(j)
            views = [(clip.frame(t), clip.mask(t)) for t in targets]
            if synthetic:
                bg_clip = rng.choice([b for b in backgrounds if b.name != clip.name])
                b0 = rng.randrange(len(bg_clip))
                size = (img0.shape[1], img0.shape[0])
                box0 = mask_box(m0)
                if box0 is None:
                    continue
                mat = random_affine(rng, box0, size)

                def bg(k: int, bg_clip=bg_clip, size=size) -> np.ndarray:
                    return cv2.resize(bg_clip.frame(k % len(bg_clip)), size)

                img0, m0 = paste(img0, m0, bg(b0), mat)
                out = []
                for (im, mk), t in zip(views, targets, strict=True):
                    bt = mask_box(mk)
                    if bt is None:
                        continue
                    mt = moved(rng, mat, bt)
                    out.append(paste(im, mk, bg(b0 + abs(t - j)), mt))
                views = out
            box0 = mask_box(m0)
            if box0 is None:
                continue
            mask0 = m0 if rng.random() < dcfg.mask_init_prob else None
            head = runner.head(img0, box0, mask0, dcfg.cues)
            track = runner.target(img0, box0) if dcfg.score_map else None
            updates = dcfg.online_updates
            for im, mk in views:
                bt = mask_box(mk)
                if bt is None:
                    continue
                box = _jitter(rng, bt, dcfg, (im.shape[1], im.shape[0]))
                full, grid, label = runner.sample(head, im, box, mk, updates > 0, track)
                updates -= 1
                h, w = label.shape
                fp = np.zeros((len(dcfg.cues), n, n), np.float16)
                fp[:, : full.shape[1], : full.shape[2]] = full
                gp = np.zeros((grid.shape[0], g, g), np.float16)
                gp[:, : grid.shape[1], : grid.shape[2]] = grid
                lp = np.zeros((n, n), np.uint8)
                lp[:h, :w] = (label > 0.5).astype(np.uint8)
                fulls.append(fp)
                grids.append(gp)
                labels.append(lp)
    bar.close()
    return {"full": np.stack(fulls), "feats": np.stack(grids), "label": np.stack(labels)}


def build_or_load(
    cfg: TrackerConfig,
    root: str | Path,
    train: list[Sequence],
    val: list[Sequence],
    backgrounds: list[Sequence],
    dcfg: MaskDataConfig,
    cache: Path,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Path]:
    """Train and validation samples (validation: real episodes only), cached under a key."""
    key = sample_key(cfg, train + val, root, dcfg)
    out = cache / key
    parts = {}
    for part in ("train", "val"):
        files = {k: out / f"{part}_{k}.npy" for k in ("full", "feats", "label")}
        if not all(f.is_file() for f in files.values()):
            out.mkdir(parents=True, exist_ok=True)
            if part == "train":
                a = generate(cfg, train, backgrounds, dcfg, False, progress)
                b = generate(cfg, train, backgrounds, dcfg, True, progress)
                arrays = {k: np.concatenate([a[k], b[k]]) for k in a}
            else:
                arrays = generate(cfg, val, backgrounds, dcfg, False, progress)
            for k, f in files.items():
                np.save(f, arrays[k])
            log.info("mask samples: %s %d written to %s", part, len(arrays["label"]), out)
        parts[part] = {k: np.load(f, mmap_mode="r") for k, f in files.items()}
    return parts["train"], parts["val"], out

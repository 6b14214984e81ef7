"""Training the mask decoder: samples from the real mask head, BCE + soft IoU, early stopping.

    python -m meta_tracker_ros.training mask --data ../shared/data/train --out FILE [...]

Shares the classifier's library: the split by video (``data.split_clips``), a keyed on-disk cache
of inputs (``mask_data``), checkpoints with resume, a progress bar and the curves PNG. It does
not use DDP: the decoder is a few tens of thousands of weights on 32x32 grids, so one process
trains it in minutes; building the samples (backbone + mask head per frame) is the cost.

Early stopping and the kept weights follow the mean window J on the validation clips' cached
samples (real episodes only), of an exponential moving average of the weights (``ema``): the
raw weights' J jumps by about 0.01 between validations, the average's is smooth. The
training-free head's J on the same samples is logged beside it, so a run shows at once whether
the decoder improves on what it refines.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from meta_tracker_ros.core.backbone import LITE0_LEVELS
from meta_tracker_ros.core.config import TrackerConfig, load_config
from meta_tracker_ros.core.heads.mask_decoder import CUES, MaskDecoder, save_decoder
from meta_tracker_ros.training.data import load_clips, source_videos, split_clips
from meta_tracker_ros.training.mask_data import LEVELS, MaskDataConfig, build_or_load

log = logging.getLogger(__name__)

_VALID = CUES.index("valid")
_FUSED = CUES.index("fused")


@dataclass
class MaskTrainConfig:
    data: str = "../shared/data/train"
    out: str = "meta_tracker_ros/core/weights/mask_decoder.pt"
    steps: int = 600
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    iou_weight: float = 1.0  # soft-IoU loss weight beside the BCE
    lovasz_weight: float = 0.0  # Lovasz-hinge loss weight (a direct surrogate of J)
    width: int = 32  # stage-1 channels of the decoder
    ema: float = 0.99  # decay of the weights' moving average that is validated and kept (0: off)
    cue_jitter: float = 0.0  # sigma of a per-sample log gain on each cue logit map (0: off)
    val_every: int = 50
    patience: int = 6  # validations without a better J before stopping
    seed: int = 0
    threads: int = 2
    cache: str = ""
    resume: bool = False
    progress: bool = True
    episodes: MaskDataConfig = field(default_factory=MaskDataConfig)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "meta_tracker_ros" / "mask_samples"


def lovasz_hinge(logit: torch.Tensor, label: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample Lovasz hinge (Berman et al. 2018) over valid pixels, averaged.

    Why beside BCE + soft IoU: it is the convex surrogate of the Jaccard loss on hard decisions
    (``logit > 0``), the quantity J measures, where soft IoU works on probabilities.
    """
    losses = []
    for lg, lb, vd in zip(logit.flatten(1), label.flatten(1), valid.flatten(1), strict=True):
        keep = vd > 0
        lg, lb = lg[keep], lb[keep]
        if lg.numel() == 0:
            losses.append(logit.sum() * 0.0)
            continue
        signs = 2.0 * lb - 1.0
        errors = 1.0 - lg * signs
        errors_sorted, order = torch.sort(errors, descending=True)
        gt = lb[order]
        gts = gt.sum()
        inter = gts - gt.cumsum(0)
        union = gts + (1.0 - gt).cumsum(0)
        jac = 1.0 - inter / union
        grad = torch.cat([jac[:1], jac[1:] - jac[:-1]])
        losses.append(torch.dot(F.relu(errors_sorted), grad))
    return torch.stack(losses).mean()


def loss_fn(
    logit: torch.Tensor,
    label: torch.Tensor,
    valid: torch.Tensor,
    iou_w: float,
    lovasz_w: float = 0.0,
):
    """Masked BCE + soft IoU (+ Lovasz hinge) per sample, averaged; ``valid``: in-frame pixels."""
    bce = F.binary_cross_entropy_with_logits(logit, label, reduction="none")
    n = valid.sum(dim=(1, 2, 3)).clamp(min=1.0)
    bce = ((bce * valid).sum(dim=(1, 2, 3)) / n).mean()
    p = torch.sigmoid(logit) * valid
    inter = (p * label).sum(dim=(1, 2, 3))
    union = (p + label - p * label).sum(dim=(1, 2, 3))
    iou = 1.0 - (inter + 1.0) / (union + 1.0)
    loss = bce + iou_w * iou.mean()
    if lovasz_w > 0:
        loss = loss + lovasz_w * lovasz_hinge(logit, (label > 0.5).float(), valid)
    return loss


def window_j(logit: torch.Tensor, label: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of ``logit > 0`` with the label over valid pixels (1 when both empty)."""
    p = (logit > 0) & (valid > 0)
    g = (label > 0.5) & (valid > 0)
    inter = (p & g).sum(dim=(1, 2, 3)).float()
    union = (p | g).sum(dim=(1, 2, 3)).float()
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))


_CUE_LOGITS = [CUES.index(c) for c in ("color", "prior", "shape", "feature", "fused")]


def jitter_cues(full: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Scale each cue logit map of each sample by ``exp(N(0, sigma))`` (augmentation).

    Why: at tracking time the cues come from a head updated online, whose cues are more or
    less confident than the first-frame head's the samples were made with; random gains keep
    the decoder from relying on one cue's exact scale.
    """
    gain = torch.exp(sigma * torch.randn(full.shape[0], len(_CUE_LOGITS), 1, 1, generator=gen))
    full = full.clone()
    full[:, _CUE_LOGITS] = full[:, _CUE_LOGITS] * gain
    return full


def _batch(arrays: dict, idx: np.ndarray, flip: np.ndarray | None = None):
    full = torch.from_numpy(np.asarray(arrays["full"][np.sort(idx)], dtype=np.float32))
    feats = torch.from_numpy(np.asarray(arrays["feats"][np.sort(idx)], dtype=np.float32))
    label = torch.from_numpy(np.asarray(arrays["label"][np.sort(idx)], dtype=np.float32))[:, None]
    if flip is not None and flip.any():
        f = torch.from_numpy(flip)
        full[f] = full[f].flip(-1)
        feats[f] = feats[f].flip(-1)
        label[f] = label[f].flip(-1)
    return full, feats, label


@torch.no_grad()
def evaluate(model: MaskDecoder, arrays: dict, batch: int = 64) -> dict[str, float]:
    """Mean window J of the decoder and of the training-free head on ``arrays``; mean loss."""
    model.eval()
    js, base, losses = [], [], []
    n = len(arrays["label"])
    for s in range(0, n, batch):
        full, feats, label = _batch(arrays, np.arange(s, min(n, s + batch)))
        valid = full[:, _VALID : _VALID + 1]
        logit = model(full, feats)
        losses.append(float(loss_fn(logit, label, valid, 1.0)) * len(label))
        js.append(window_j(logit, label, valid))
        base.append(window_j(full[:, _FUSED : _FUSED + 1], label, valid))
    model.train()
    return {
        "val_j": float(torch.cat(js).mean()),
        "val_j_training_free": float(torch.cat(base).mean()),
        "val_loss": sum(losses) / max(n, 1),
    }


def train_mask(cfg: MaskTrainConfig, tracker_cfg: TrackerConfig, command: str = "") -> dict:
    """Build or load the samples, train, keep the best validation J, write the decoder file."""
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    root = Path(cfg.data)
    clips = load_clips(root)
    split = split_clips([c.name for c in clips], source_videos(root))
    by_name = {c.name: c for c in clips}
    train = [by_name[n] for n in split.train if by_name[n].has_masks]
    val = [by_name[n] for n in split.val if by_name[n].has_masks]
    backgrounds = [by_name[n] for n in split.train]  # never a validation clip's frames
    if not train or not val:
        raise ValueError(f"no mask clips in the split of {root} (train {train}, val {val})")
    cache = Path(cfg.cache) if cfg.cache else default_cache_dir()
    t0 = time.time()
    tr, va, sample_dir = build_or_load(
        tracker_cfg, root, train, val, backgrounds, cfg.episodes, cache, cfg.progress
    )
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    sample_s = time.time() - t0
    log.info("samples: %d train, %d val (%s)", len(tr["label"]), len(va["label"]), sample_dir)

    channels = [LITE0_LEVELS[lv][2] for lv in LEVELS]
    cues = cfg.episodes.cues
    if tr["full"].shape[1] != len(cues):
        raise ValueError(f"samples in {sample_dir} have {tr['full'].shape[1]} maps, want {cues}")
    # Seeded again here: building the samples draws from torch's global generator, so without
    # this a run that builds them started from other weights than a run that found them cached.
    torch.manual_seed(cfg.seed)
    model = MaskDecoder(channels, width=cfg.width, cues=cues)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = MaskDecoder(channels, width=cfg.width, cues=cues) if cfg.ema > 0 else model
    ema.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the checkpoint is written before the file
    ckpt = out.with_suffix(out.suffix + ".ckpt")
    history: dict = {"step": [], "loss": [], "val_step": [], "val_loss": [], "val_accuracy": []}
    history["val_j_training_free"] = []
    best = {"val_j": -1.0, "step": 0, "state": None}
    step, bad = 0, 0
    rng = np.random.default_rng(cfg.seed)
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state.get("ema", state["model"]))
        opt.load_state_dict(state["opt"])
        step, bad, best, history = state["step"], state["bad"], state["best"], state["history"]
        rng = np.random.default_rng(cfg.seed + step)
        log.info("resumed at step %d", step)
    n_train = len(tr["label"])
    from tqdm import tqdm

    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not cfg.progress,
        desc="mask decoder",
        unit="step",
        dynamic_ncols=True,
    )
    t_train = time.time()
    while step < cfg.steps:
        lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))  # cosine decay
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.choice(n_train, cfg.batch, replace=False)
        full, feats, label = _batch(tr, idx, rng.random(cfg.batch) < 0.5)
        valid = full[:, _VALID : _VALID + 1]
        if cfg.cue_jitter > 0:
            full = jitter_cues(full, cfg.cue_jitter, gen)
        loss = loss_fn(model(full, feats), label, valid, cfg.iou_weight, cfg.lovasz_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ema is not model:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.mul_(cfg.ema).add_(pm, alpha=1.0 - cfg.ema)
        step += 1
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        bar.update(1)
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = evaluate(ema, va)
            history["val_step"].append(step)
            history["val_loss"].append(v["val_loss"])
            history["val_accuracy"].append(v["val_j"])
            history["val_j_training_free"].append(v["val_j_training_free"])
            bar.set_postfix(val_j=f"{v['val_j']:.3f}", free=f"{v['val_j_training_free']:.3f}")
            log.info(
                "step %d: val J %.4f (training-free %.4f), val loss %.4f",
                step,
                v["val_j"],
                v["val_j_training_free"],
                v["val_loss"],
            )
            if v["val_j"] > best["val_j"]:
                state = {k: t.clone() for k, t in ema.state_dict().items()}
                best = {"val_j": v["val_j"], "step": step, "state": state, **v}
                bad = 0
            else:
                bad += 1
            torch.save(
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "bad": bad,
                    "best": best,
                    "history": history,
                },
                ckpt,
            )
            if bad >= cfg.patience:
                log.info("early stop at step %d (best %d)", step, best["step"])
                break
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    meta = {
        "backbone": tracker_cfg.backbone.name,
        "levels": list(LEVELS),
        "work_size": int(tracker_cfg.mask.work_size),
        "context": float(tracker_cfg.mask.context),
        "cues": list(cues),
        **(
            {
                "ridge_levels": list(tracker_cfg.mask.ridge_levels),
                "ridge_reg": float(tracker_cfg.mask.ridge_reg),
            }
            if "ridge" in cues
            else {}
        ),
        "samples_key": sample_dir.name,
        "train_clips": [c.name for c in train],
        "val_clips": [c.name for c in val],
        "samples": {"train": int(n_train), "val": len(va["label"])},
        "best_step": int(best["step"]),
        "val_j": round(float(best["val_j"]), 4),
        "val_j_training_free": round(float(best.get("val_j_training_free", -1)), 4),
        "command": command,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    save_decoder(out, model, meta)
    from meta_tracker_ros.training.trainer import _plot

    _plot(history, out.with_suffix(".png"), ("BCE + soft IoU", "validation window J"))
    summary = {
        **meta,
        "steps_run": step,
        "sample_s": round(sample_s, 1),
        "train_s": round(time.time() - t_train, 1),
        "total_s": round(time.time() - t_start, 1),
        "out": str(out),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _parser() -> argparse.ArgumentParser:
    d = MaskTrainConfig()
    e = d.episodes
    p = argparse.ArgumentParser(
        prog="python -m meta_tracker_ros.training mask",
        description="Train the mask decoder on the mask clips of the training set.",
    )
    p.add_argument("--data", default=d.data, help="training clips (shared/data layout)")
    p.add_argument("--out", default=d.out, help="mask decoder file to write")
    p.add_argument("--config", help="tracker YAML the decoder is trained for (default: shipped)")
    for name in ("steps", "batch", "val_every", "patience", "seed", "threads", "width"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "weight_decay", "iou_weight", "lovasz_weight", "ema", "cue_jitter"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--cache", default="", help="sample cache directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    p.add_argument("--no-progress", action="store_true")
    for f in fields(MaskDataConfig):
        if f.name == "seed":
            continue  # --seed sets both
        kind = type(getattr(e, f.name))
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:  # --ridge / --no-ridge, ...
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=getattr(e, f.name))
        else:
            p.add_argument(flag, type=kind, default=getattr(e, f.name))
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = MaskTrainConfig()
    for f in fields(MaskTrainConfig):
        if f.name in vars(args) and f.name != "episodes":
            setattr(cfg, f.name, getattr(args, f.name))
    for f in fields(MaskDataConfig):
        setattr(cfg.episodes, f.name, getattr(args, f.name))  # seed: --seed
    cfg.progress = not args.no_progress
    tracker_cfg = load_config(args.config)
    command = "python -m meta_tracker_ros.training mask " + shlex.join(argv)
    summary = train_mask(cfg, tracker_cfg, command)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The meta-training loop: episodes in, learned classifier file out.

Adam on the episode loss with a short warm-up and two step decays, gradient clipping and a
non-finite guard (a bad episode skips the step instead of poisoning the weights), validation on
a fixed set of episodes from held-out videos every ``val_every`` steps, early stopping on the
validation loss, a resumable checkpoint every ``checkpoint_every`` steps and a PNG of the
curves. Under ``torchrun`` each process draws its own episodes and PyTorch DDP averages the
gradients (gloo on CPU, NCCL on CUDA), so all ranks hold the same weights after every step.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from meta_tracker_ros.core.backbone import LITE0_LEVELS
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.heads.classifier import concat_levels, level_scales
from meta_tracker_ros.core.heads.learned import save_learned
from meta_tracker_ros.training.cache import FeatureCache, build_or_load
from meta_tracker_ros.training.data import (
    data_key,
    load_clips,
    mirrored,
    source_videos,
    split_clips,
)
from meta_tracker_ros.training.episodes import Episode, EpisodeConfig, EpisodeSampler
from meta_tracker_ros.training.model import ClassifierModel

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved into the checkpoint and the output)."""

    data: str = "../shared/data/train"
    out: str = "meta_tracker_ros/core/weights/classifier.pt"
    steps: int = 1200
    batch: int = 8  # episodes per step, over all processes
    lr: float = 5e-3  # solver constants (logs, tables)
    proj_lr: float = 2e-4  # the 1x1 projection
    warmup: int = 50
    clip: float = 1.0  # gradient-norm clip
    init_steps: int = 2  # initialisation iterations learned and shipped (validation: 2 > 1)
    update_steps: int = 2  # online-update iterations learned
    projection: str = "learned"  # learned | pca
    val_fraction: float = 0.15
    split_seed: int = 0  # the split by video is fixed whatever the training seed
    val_episodes: int = 64
    val_every: int = 100
    patience: int = 4  # validations without improvement before stopping
    checkpoint_every: int = 100
    checkpoint: str = ""  # "" = OUT.ckpt
    resume: bool = False
    seed: int = 0
    device: str = "cpu"
    cache: str = ""  # "" = ~/.cache/meta_tracker_ros/train_features
    init_stride: int = 6
    threads: int = 0  # torch threads per process (0: cores / processes)
    clips: str = ""  # comma list of clip names to use ("" = all; for quick runs and tests)
    mirror: bool = False  # add a left-right mirrored copy of every training clip (not validation)
    progress: bool = True
    track_validation: bool = True  # run the real tracker on the validation clips at the end
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _setup_distributed(device: str) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)


def pca_init(
    cache: FeatureCache,
    clips: list[str],
    levels: list[str],
    dim: int,
    seed: int,
    entries: int = 120,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A global PCA of level-normalised training features: the learned projection's start."""
    rng = np.random.default_rng(seed)
    rows = [e["row"] for c in clips for e in cache.clips[c]["init"].values()]
    rows = sorted(rng.choice(rows, size=min(entries, len(rows)), replace=False).tolist())
    total, outer, count = None, None, 0
    for r in rows:
        feats = {lv: torch.from_numpy(np.asarray(cache.init[lv][r], np.float32)) for lv in levels}
        x = concat_levels(feats, levels, level_scales(feats, levels))
        flat = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).double()
        total = flat.sum(1) if total is None else total + flat.sum(1)
        outer = flat @ flat.T if outer is None else outer + flat @ flat.T
        count += flat.shape[1]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    _, vecs = torch.linalg.eigh(cov)
    weight = vecs[:, -dim:].flip(1).T.contiguous().float()
    return weight, -(weight @ mean.float())


class _Batch(nn.Module):
    """One forward over a list of episodes (DDP needs a single forward per backward)."""

    def __init__(self, model: ClassifierModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, episodes: list[Episode]):
        results = [self.model(ep) for ep in episodes]
        loss = torch.stack([r.loss for r in results]).mean()
        return loss, results


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    decay = 1.0
    if step >= 0.6 * cfg.steps:
        decay *= 0.2
    if step >= 0.85 * cfg.steps:
        decay *= 0.2
    return warm * decay


@torch.no_grad()
def evaluate(model: ClassifierModel, episodes: list[Episode]) -> dict[str, float]:
    """Mean episode loss, final-iterate loss and peak accuracy over fixed episodes."""
    loss = final = 0.0
    hits = total = 0
    for ep in episodes:
        r = model(ep)
        loss += float(r.loss)
        final += r.final_loss
        hits += r.hits
        total += r.total
    n = max(len(episodes), 1)
    return {"loss": loss / n, "final_loss": final / n, "accuracy": hits / max(total, 1)}


def train(cfg: TrainConfig, tracker_cfg: TrackerConfig, command: str = "") -> dict:
    """Run (or resume) a training run; returns the summary also stored in the output file."""
    _setup_distributed(cfg.device)
    rank, world = _dist()
    threads = cfg.threads or max(1, (os.cpu_count() or 2) // world)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    root = Path(cfg.data)
    clips = load_clips(root)
    if cfg.clips:
        wanted = set(cfg.clips.split(","))
        clips = [c for c in clips if c.name in wanted]
        if len(clips) != len(wanted):
            raise ValueError(
                f"unknown clip(s) in --clips: {sorted(wanted - {c.name for c in clips})}"
            )
    split = split_clips(
        [c.name for c in clips], source_videos(root), cfg.val_fraction, cfg.split_seed
    )
    train_clips = list(split.train)
    if cfg.mirror:
        # After the split, so that a validation video never appears mirrored in training.
        wanted = set(split.train)
        extra = [mirrored(c) for c in clips if c.name in wanted]
        clips = clips + extra
        train_clips += [c.name for c in extra]
    cache_dir = Path(cfg.cache) if cfg.cache else None
    if rank == 0:
        cache = build_or_load(tracker_cfg, clips, root, cache_dir, cfg.init_stride, cfg.progress)
    if world > 1:
        dist.barrier()
    if rank != 0:
        cache = build_or_load(tracker_cfg, clips, root, cache_dir, cfg.init_stride, False)
    t_cache = time.perf_counter() - t_start
    torch.set_num_threads(threads)  # the backbone runtime sets its own count while caching
    c = tracker_cfg.classifier
    levels = list(c.feature_levels)
    channels = sum(LITE0_LEVELS[lv][2] for lv in levels)
    proj = None
    if cfg.projection == "learned":
        proj = pca_init(cache, split.train, levels, c.proj_dim, cfg.seed)
    model = ClassifierModel(
        tracker_cfg, channels, cfg.init_steps, cfg.update_steps, cfg.projection, proj
    )
    batch_model = _Batch(model)
    runner: nn.Module = batch_model
    if world > 1:
        runner = nn.parallel.DistributedDataParallel(batch_model, find_unused_parameters=True)
    groups = [
        {"params": [p for p in model.solver_params.values() if p.requires_grad], "lr": cfg.lr}
    ]
    if cfg.projection == "learned":
        groups.append({"params": [model.proj_weight, model.proj_bias], "lr": cfg.proj_lr})
    for g in groups:
        g["base_lr"] = g["lr"]
    opt = torch.optim.Adam(groups)
    ecfg = cfg.episodes
    sampler = EpisodeSampler(cache, tracker_cfg, train_clips, ecfg, cfg.seed + 1000 * rank)
    # Validation episodes stay forward in time, as the tracker runs.
    val_ecfg = replace(ecfg, reverse_prob=0.0)
    val_sampler = EpisodeSampler(cache, tracker_cfg, split.val, val_ecfg, cfg.seed + 7)
    val_episodes = [val_sampler.sample() for _ in range(cfg.val_episodes)]
    ckpt_path = Path(cfg.checkpoint or (cfg.out + ".ckpt"))
    history: dict[str, list] = {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_loss": [],
        "val_final_loss": [],
        "val_accuracy": [],
    }
    step, best, best_state, since_best, skipped = 0, math.inf, None, 0, 0
    elapsed_before = 0.0
    if cfg.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best, since_best = state["step"], state["best"], state["since_best"]
        best_state, history = state["best_state"], state["history"]
        sampler.rng.bit_generator.state = (
            state["rng"][rank] if rank < len(state["rng"]) else sampler.rng.bit_generator.state
        )
        torch.set_rng_state(state["torch_rng"])
        elapsed_before = state.get("elapsed", 0.0)
        log.info("resumed from %s at step %d", ckpt_path, step)
    base = evaluate(model, val_episodes) if step == 0 else None
    if base is not None:
        _record_val(history, 0, base)
        best, best_state = base["loss"], _state(model)
    per_rank = max(1, cfg.batch // world)
    bar = _bar(cfg.steps, step, cfg.progress and rank == 0)
    t_loop = time.perf_counter()
    ema = None
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * _lr_factor(step, cfg)
        episodes = [sampler.sample() for _ in range(per_rank)]
        loss, _ = runner(episodes)
        opt.zero_grad(set_to_none=True)
        ok = bool(torch.isfinite(loss))
        if ok:
            loss.backward()
            params = [p for g in groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            ok = bool(torch.isfinite(norm))
        if world > 1:  # every rank skips together, or none does
            flag = torch.tensor([0.0 if ok else 1.0])
            dist.all_reduce(flag)
            ok = float(flag) == 0.0
        if ok:
            opt.step()
        else:
            skipped += 1
            if skipped > max(10, cfg.steps // 20):
                raise RuntimeError(f"{skipped} non-finite steps; lower the learning rates")
        step += 1
        value = float(loss.detach()) if ok else float("nan")
        ema = value if ema is None or not math.isfinite(ema) else 0.9 * ema + 0.1 * value
        history["step"].append(step)
        history["loss"].append(value)
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = evaluate(model, val_episodes)
            _record_val(history, step, v)
            if v["loss"] < best - 1e-6:
                best, best_state, since_best = v["loss"], _state(model), 0
            else:
                since_best += 1
            bar.set_postfix(loss=f"{ema:.4f}", val=f"{v['loss']:.4f}", acc=f"{v['accuracy']:.3f}")
        else:
            bar.set_postfix(loss=f"{ema:.4f}", val=f"{best:.4f}")
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            rngs = _gather_rng(sampler)  # a collective: every rank takes part
            if rank == 0:
                elapsed = elapsed_before + time.perf_counter() - t_loop
                _save_checkpoint(
                    ckpt_path,
                    model,
                    opt,
                    step,
                    best,
                    since_best,
                    best_state,
                    history,
                    rngs,
                    elapsed,
                )
        if since_best >= cfg.patience:
            log.info("early stop at step %d (no validation gain in %d checks)", step, cfg.patience)
            break
    bar.close()
    train_time = elapsed_before + time.perf_counter() - t_loop
    model.load_state_dict(best_state)
    final = evaluate(model, val_episodes)
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    checksums = [checksum]
    if world > 1:  # every rank must hold the same weights (DDP averages the gradients)
        checksums = [None] * world
        dist.all_gather_object(checksums, checksum)
    summary = {
        "steps": step,
        "best_val": final,
        "val_at_start": {k: history[k][0] for k in ("val_loss", "val_final_loss", "val_accuracy")},
        "train_seconds": round(train_time, 1),
        "cache_seconds": round(t_cache, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "skipped_steps": skipped,
        "processes": world,
        "rank_checksums": checksums,
        "split": asdict(split),
    }
    if rank == 0:
        meta = {
            "backbone": tracker_cfg.backbone.name,
            "levels": levels,
            "channels": [LITE0_LEVELS[lv][2] for lv in levels],
            "proj_dim": c.proj_dim,
            "crop": {
                "search_area": tracker_cfg.search.search_area,
                "crop_size": tracker_cfg.search.crop_size,
            },
            "classifier_config": asdict(c),
            "data_key": data_key(root, clips),
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "episodes"},
            "episodes": asdict(ecfg),
            "summary": summary,
            "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
        }
        save_learned(cfg.out, model.export(meta))
        if cfg.track_validation:
            from meta_tracker_ros.training.validate import tracking_scores

            t0 = time.perf_counter()
            summary["val_tracking"] = tracking_scores(cfg.out, tracker_cfg, root, split.val)
            summary["val_tracking_seconds"] = round(time.perf_counter() - t0, 1)
            save_learned(cfg.out, model.export(meta))  # meta holds the summary
        _plot(history, Path(cfg.out).with_suffix(".png"))
        Path(cfg.out).with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _record_val(history: dict, step: int, v: dict[str, float]) -> None:
    history["val_step"].append(step)
    history["val_loss"].append(v["loss"])
    history["val_final_loss"].append(v["final_loss"])
    history["val_accuracy"].append(v["accuracy"])


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _gather_rng(sampler: EpisodeSampler) -> list[dict]:
    """Every rank's episode-sampler state (so a resumed run draws what it would have drawn)."""
    state = sampler.rng.bit_generator.state
    if dist.is_available() and dist.is_initialized():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, state)
        return gathered
    return [state]


def _save_checkpoint(
    path: Path, model, opt, step, best, since_best, best_state, history, rngs, elapsed
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "best": best,
            "since_best": since_best,
            "best_state": best_state,
            "history": history,
            "rng": rngs,
            "torch_rng": torch.get_rng_state(),
            "elapsed": elapsed,
        },
        tmp,
    )
    tmp.replace(path)


def _plot(
    history: dict,
    path: Path,
    ylabels: tuple[str, str] = ("episode loss", "validation peak accuracy"),
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    loss = np.array(history["loss"], dtype=float)
    if loss.size:
        k = max(1, loss.size // 50)
        smooth = np.convolve(np.nan_to_num(loss), np.ones(k) / k, mode="valid")
        a.plot(history["step"][k - 1 :], smooth, label="train (running mean)")
    a.plot(history["val_step"], history["val_loss"], "o-", label="validation")
    a.set_xlabel("step")
    a.set_ylabel(ylabels[0])
    a.legend()
    b.plot(history["val_step"], history["val_accuracy"], "o-")
    b.set_xlabel("step")
    b.set_ylabel(ylabels[1])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _bar(total: int, start: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="meta-training",
        unit="step",
        dynamic_ncols=True,
    )

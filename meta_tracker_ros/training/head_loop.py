"""The training run, loop, summary and command line shared by the small heads on the cache.

Why one place: the box refiner and the scale head train the same way (Adam with cosine decay,
gradient clipping, a validation score every ``val_every`` steps, early stopping, the best
weights kept, a curves PNG and a JSON summary next to the file); only the model, its loss and
the score differ. Two copies of this loop had started to drift.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def cache_and_split(cfg: Any, tracker_cfg, levels, what: str, split_seed: int = 0):
    """The training clips' feature cache and their split by video, for a head reading ``levels``.

    ``cfg`` needs ``data``, ``cache``, ``init_stride``, ``threads`` and ``progress``. Sets
    torch's thread count after the cache (the backbone runtime sets its own while building).
    """
    from meta_tracker_ros.training.cache import build_or_load
    from meta_tracker_ros.training.data import load_clips, source_videos, split_clips

    if list(tracker_cfg.classifier.feature_levels) != list(levels):
        raise ValueError(f"the {what} reads the levels {levels}: set them for the classifier")
    root = Path(cfg.data)
    clips = load_clips(root)
    split = split_clips([c.name for c in clips], source_videos(root), seed=split_seed)
    cache_dir = Path(cfg.cache) if cfg.cache else None
    cache = build_or_load(tracker_cfg, clips, root, cache_dir, cfg.init_stride, cfg.progress)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return cache, split


def fit_head(
    model: nn.Module,
    step_loss: Callable[[], torch.Tensor],
    evaluate: Callable[[], dict[str, float]],
    cfg: Any,
    score: str,
    higher_is_better: bool,
    desc: str,
) -> tuple[dict, dict, int]:
    """Train ``model`` on ``step_loss()`` (one fresh batch per call) and keep the best weights.

    ``cfg`` needs ``lr``, ``weight_decay``, ``steps``, ``val_every``, ``patience`` and
    ``progress``; ``evaluate()`` returns the validation metrics, ``score`` names the one that
    selects. Returns (best metrics with "step" and "state", history, steps run); the best
    weights are loaded into ``model``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict = {"step": [], "loss": [], "val_step": [], "val_loss": [], "val_accuracy": []}

    def snapshot() -> dict:
        return {k: t.clone() for k, t in model.state_dict().items()}

    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    v = evaluate()
    best = {"step": 0, "state": snapshot(), **v}
    log.info("%s step 0: %s", desc, _fmt(v))
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, disable=not cfg.progress, desc=desc, unit="step")
    step, bad = 0, 0
    while step < cfg.steps:
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = step_loss()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        bar.update(1)
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = evaluate()
            history["val_step"].append(step)
            history["val_loss"].append(v["val_loss"])
            history["val_accuracy"].append(v[score])
            bar.set_postfix({k.removeprefix("val_"): f"{x:.4f}" for k, x in v.items()})
            log.info("%s step %d: %s", desc, step, _fmt(v))
            if better(v[score], best[score]):
                best = {"step": step, "state": snapshot(), **v}
                bad = 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    log.info("early stop at step %d (best %d)", step, best["step"])
                    break
    bar.close()
    model.load_state_dict(best["state"])
    return best, history, step


def _fmt(v: dict[str, float]) -> str:
    return ", ".join(f"{k} {x:.4f}" for k, x in v.items())


def write_outputs(
    out: Path,
    meta: dict,
    history: dict,
    steps_run: int,
    labels: tuple[str, str],
    times: dict[str, float],
) -> dict:
    """The curves PNG and the JSON summary next to ``out``; returns the summary."""
    from meta_tracker_ros.training.trainer import _plot

    _plot(history, out.with_suffix(".png"), labels)
    summary = {
        **meta,
        "steps_run": steps_run,
        "val_curve": [
            [int(a), round(float(b), 4)]
            for a, b in zip(history["val_step"], history["val_accuracy"], strict=True)
        ],
        **{k: round(t, 1) for k, t in times.items()},
        "out": str(out),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def config_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """``--config`` plus one option per field of the dataclass ``cls`` and ``--no-progress``."""
    d = cls()
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", help="tracker YAML the head is trained for (default: shipped)")
    for f in fields(cls):
        if f.name == "progress":
            continue
        kind = type(getattr(d, f.name))
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=getattr(d, f.name))
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``cls`` filled from :func:`config_parser`'s parsed arguments."""
    cfg = cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.name != "progress"})
    cfg.progress = not args.no_progress
    return cfg


def train_cached_head(
    cfg: Any,
    tracker_cfg,
    command: str,
    *,
    what: str,
    levels,
    sampler: Callable[..., Any],
    make_model: Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, dict], tuple],
    evaluate: Callable[[nn.Module, list[dict]], dict[str, float]],
    score: str,
    higher_is_better: bool,
    geometry: tuple[str, Any],
    scores: Callable[[dict], dict[str, Any]],
    save: Callable[[Path, nn.Module, dict], None],
    labels: tuple[str, str],
    split_seed: int = 0,
) -> dict:
    """Train a head on the feature cache, keep its best weights, write the file and summary.

    The run shared by the box refiner and the scale head: seed, cache and split,
    ``sampler(cache, clips, cfg, seed)`` for training and fixed validation batches, the model
    from ``make_model()`` (built after them, so its initial weights come from the seeded
    generator as before), :func:`fit_head`, then the metadata (``geometry``: the head's own
    (key, value) that the tracker checks; ``scores(best)``: its validation scores), written
    with ``save``, and the curves.
    """
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    cache, split = cache_and_split(cfg, tracker_cfg, levels, what, split_seed)
    t_cache = time.time() - t_start
    train = sampler(cache, split.train, cfg, cfg.seed)
    val_sampler = sampler(cache, split.val, cfg, cfg.seed + 1000)
    val = [val_sampler.sample(64) for _ in range(max(1, cfg.val_samples // 64))]
    model = make_model()
    t_train = time.time()
    best, history, steps_run = fit_head(
        model,
        lambda: loss_fn(model, train.sample(cfg.batch))[0],
        lambda: evaluate(model, val),
        cfg,
        score,
        higher_is_better=higher_is_better,
        desc=what,
    )
    s = tracker_cfg.search
    meta = {
        "backbone": tracker_cfg.backbone.name,
        "levels": list(levels),
        geometry[0]: geometry[1],
        "crop_size": int(s.crop_size),
        "search_area": float(s.search_area),
        "cache_key": cache.root.name,
        "train_clips": len(split.train),
        "val_clips": list(split.val),
        "best_step": int(best["step"]),
        **scores(best),
        "command": command,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    out = Path(cfg.out)
    save(out, model, meta)
    times = {
        "cache_s": t_cache,
        "train_s": time.time() - t_train,
        "total_s": time.time() - t_start,
    }
    return write_outputs(out, meta, history, steps_run, labels, times)


def run_cli(
    cls: type, name: str, description: str, train: Callable[..., dict], argv: list[str]
) -> int:
    """``python -m meta_tracker_ros.training NAME``: parse, train, print the JSON summary."""
    from meta_tracker_ros.core.config import load_config

    prog = f"python -m meta_tracker_ros.training {name}"
    args = config_parser(cls, prog, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(cls, args)
    summary = train(cfg, load_config(args.config), f"{prog} " + shlex.join(argv))
    print(json.dumps(summary, indent=1))
    return 0

"""Command line of meta-training.

    python -m meta_tracker_ros.training --data ../shared/data/train --out FILE \\
        [--steps N] [--resume] [--device cpu|cuda] [--seed S] ...

The mask decoder (issue 9) is the ``mask`` subcommand: ``python -m meta_tracker_ros.training
mask --data ../shared/data/train --out FILE`` (see ``mask_train.py``).

Data-parallel on several cores or GPUs: ``torchrun --nproc_per_node=2 -m
meta_tracker_ros.training ...`` (same arguments; gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from dataclasses import fields

from meta_tracker_ros.core.config import load_config
from meta_tracker_ros.training.trainer import TrainConfig, train


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m meta_tracker_ros.training",
        description="Meta-train the classifier's projection and solver on video clips.",
    )
    p.add_argument("--data", default=d.data, help="training clips (shared/data layout)")
    p.add_argument("--out", default=d.out, help="learned classifier file to write")
    p.add_argument("--config", help="tracker YAML the weights are trained for (default: shipped)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps (batches)")
    p.add_argument("--batch", type=int, default=d.batch, help="episodes per step, all processes")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate of solver constants")
    p.add_argument("--proj-lr", type=float, default=d.proj_lr, help="learning rate, projection")
    p.add_argument("--init-steps", type=int, default=d.init_steps, help="init iterations")
    p.add_argument("--update-steps", type=int, default=d.update_steps, help="update iterations")
    p.add_argument("--projection", choices=("learned", "pca"), default=d.projection)
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--val-episodes", type=int, default=d.val_episodes)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--checkpoint", default="", help="checkpoint file (default: OUT.ckpt)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--device",
        default=d.device,
        help="cpu or cuda: the DDP backend (gloo / NCCL); episodes run on the CPU",
    )
    p.add_argument("--cache", default="", help="feature cache directory")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process")
    e = d.episodes
    p.add_argument(
        "--center-jitter",
        type=float,
        default=e.center_jitter,
        help="sigma of the test crops' centre error, x target size",
    )
    p.add_argument(
        "--scale-jitter",
        type=float,
        default=e.scale_jitter,
        help="sigma of the test crops' log size error",
    )
    p.add_argument(
        "--far-prob",
        type=float,
        default=e.far_prob,
        help="share of test crops with 5x the centre jitter",
    )
    p.add_argument(
        "--reverse-prob",
        type=float,
        default=e.reverse_prob,
        help="share of training episodes played backwards in time",
    )
    p.add_argument(
        "--mirror",
        action="store_true",
        help="also train on a left-right mirrored copy of every training clip",
    )
    p.add_argument("--clips", default="", help="comma list of clips to use (default: all)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--no-track-validation",
        action="store_true",
        help="skip tracking the validation clips with the result at the end",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    rest = sys.argv[1:] if argv is None else list(argv)
    if rest[:1] == ["box"]:
        from meta_tracker_ros.training.box_train import main as box_main

        return box_main(rest[1:])
    if rest[:1] == ["scale"]:
        from meta_tracker_ros.training.scale_train import main as scale_main

        return scale_main(rest[1:])
    if rest[:1] == ["mask"]:
        from meta_tracker_ros.training.mask_train import main as mask_main

        return mask_main(rest[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig()
    names = {f.name for f in fields(TrainConfig)}
    for key, value in vars(args).items():
        if key in names:
            setattr(cfg, key, value)
    cfg.progress = not args.no_progress
    cfg.track_validation = not args.no_track_validation
    cfg.episodes.center_jitter = args.center_jitter
    cfg.episodes.scale_jitter = args.scale_jitter
    cfg.episodes.far_prob = args.far_prob
    cfg.episodes.reverse_prob = args.reverse_prob
    tracker_cfg = load_config(args.config)
    command = "python -m meta_tracker_ros.training " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    summary = train(cfg, tracker_cfg, command)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(json.dumps({k: v for k, v in summary.items() if k != "split"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

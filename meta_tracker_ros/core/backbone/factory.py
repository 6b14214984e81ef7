"""Choose a backbone runtime from the config, falling back to PyTorch with a warning."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from meta_tracker_ros.core.backbone.base import Backbone
from meta_tracker_ros.core.backbone.torch_runtime import TorchBackbone
from meta_tracker_ros.core.config import TrackerConfig

log = logging.getLogger(__name__)


def create_backbone(config: TrackerConfig, levels: Sequence[str]) -> Backbone:
    """Build the runtime named by ``config.runtime.backend``.

    A runtime that cannot start (library missing, engine file missing, no GPU) falls back to
    the PyTorch runtime on the same device when possible, else on the CPU, and logs why.
    """
    rt, bb = config.runtime, config.backbone
    device = rt.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            log.warning("device '%s' requested but CUDA is not available; using the CPU", device)
            device = "cpu"
    if rt.backend != "torch":
        try:
            from meta_tracker_ros.core.backbone import alt_runtimes

            return alt_runtimes.create(rt.backend, config, levels, device)
        except Exception as exc:
            log.warning(
                "backend '%s' could not start (%s); falling back to the torch runtime",
                rt.backend,
                exc,
            )
    return TorchBackbone(
        levels,
        device=device,
        precision=rt.precision,
        mean=bb.mean,
        std=bb.std,
        weights=bb.weights,
        num_threads=rt.num_threads,
    )

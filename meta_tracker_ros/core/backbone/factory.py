"""Choose a backbone runtime from the config, falling back to PyTorch with a warning."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from meta_tracker_ros.core.backbone.base import Backbone
from meta_tracker_ros.core.backbone.torch_runtime import TorchBackbone
from meta_tracker_ros.core.config import TrackerConfig

log = logging.getLogger(__name__)


def create_backbone(config: TrackerConfig, levels: Sequence[str]) -> Backbone:
    """Build the runtime named by ``config.runtime.backend`` (``auto``: see runtime_guard).

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
    if device == "cpu":
        # The heads run on torch whatever runs the backbone: without this, an onnxruntime
        # backbone left torch at one thread per core, and in tracker_node (a loaded 2-core
        # CPU) the heads took 288 ms per frame instead of about 30 (latency_bench, speed.md).
        # OpenCV too (the mask head's warps and guided filters): its pool defaults to every
        # core and spin-waits between the tracker's small calls; at one thread the core ran
        # 38.4 FPS against 34.0 with OpenCV's default two (evaluation --opencv-threads, same
        # code, README).
        import cv2
        import torch

        from meta_tracker_ros.core.config import cpu_threads

        torch.set_num_threads(cpu_threads(rt.num_threads))
        cv2.setNumThreads(cpu_threads(rt.num_threads))
    if rt.backend == "auto":
        return _create_auto(config, levels, device)
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


def _create_auto(config: TrackerConfig, levels: Sequence[str], device: str) -> Backbone:
    """``backend: auto``: the first of runtime_guard.choose(device) that starts."""
    import dataclasses

    from meta_tracker_ros.core.backbone import runtime_guard

    for backend, precision in runtime_guard.choose(device):
        rt = dataclasses.replace(config.runtime, backend=backend, precision=precision)
        cfg = dataclasses.replace(config, runtime=rt)
        if backend == "torch":
            backbone = create_backbone(cfg, levels)
        else:
            try:
                from meta_tracker_ros.core.backbone import alt_runtimes

                backbone = alt_runtimes.create(backend, cfg, levels, device)
            except Exception as exc:
                log.warning("auto: backend '%s' could not start (%s); next", backend, exc)
                continue
        log.info("backend auto: %s", backbone.describe())
        return backbone
    raise AssertionError("runtime_guard.choose always ends with torch")  # pragma: no cover

"""PyTorch runtime for the frozen backbone: CPU, or CUDA with optional fp16."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from meta_tracker_ros.core.backbone.base import Backbone
from meta_tracker_ros.core.backbone.efficientnet import LiteFeatures, lite0_spec
from meta_tracker_ros.core.config import cpu_threads


class TorchBackbone(Backbone):
    """EfficientNet-Lite0 features with PyTorch.

    fp16 is used only on CUDA (CPU half-precision convolutions are slow or unsupported); the
    returned features are float32 either way.
    """

    name = "torch"

    def __init__(
        self,
        levels: Sequence[str],
        device: str = "cpu",
        precision: str = "fp32",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        weights: str = "",
        num_threads: int = 0,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(num_threads))
            # One crop per call: on the 2-core CPU at one thread, batches of 4 and 8 256 px
            # crops cost more per crop than single crops (8: 96 vs 35 ms per crop; stage_bench
            # and docs/speed.md), the activations of a batch no longer fitting in the caches.
            self.max_crops_per_call = 1
        self.half = precision == "fp16" and self.device.type == "cuda"
        self.spec = lite0_spec(levels, mean, std)
        self.net = LiteFeatures(levels, weights).to(self.device)
        if self.half:
            self.net = self.net.half()
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (images.to(self.device, torch.float32) - self._mean) / self._std
        if self.half:
            x = x.half()
        outs = self.net(x)
        return {lv: o.float() for lv, o in zip(self.spec.levels, outs, strict=True)}

    def describe(self) -> str:
        return f"torch on {self.device} ({'fp16' if self.half else 'fp32'})"

"""The one small interface every backbone runtime implements.

The tracker hands a batch of search-region crops to ``Backbone.extract`` and gets one feature
map per requested level. Everything after that (heads, memory, localisation) is PyTorch on the
runtime's ``device``, so a TensorRT or ONNX Runtime backend only has to fill the same dict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

# Output levels of EfficientNet-Lite0 that the heads may use: name -> (block index, stride,
# channels). Block indices count MBConv blocks from 0 (16 blocks in Lite0).
LITE0_LEVELS: dict[str, tuple[int, int, int]] = {
    "s2": (0, 2, 16),
    "s4": (2, 4, 24),
    "s8": (4, 8, 40),
    "s16": (10, 16, 112),
    "s32": (15, 32, 320),
}


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone (and an exported ONNX file or engine built from it) expects and returns.

    Recorded in exports so a file can be checked against the code that uses it.
    """

    name: str
    levels: tuple[str, ...]
    strides: tuple[int, ...]
    channels: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Backbone(ABC):
    """A frozen feature extractor.

    ``extract`` takes ``images``: float tensor (N, 3, H, W), RGB in [0, 1], on ``self.device``,
    and returns ``{level: (N, C, H / stride, W / stride)}`` in float32 (converted back from fp16
    where the runtime computes in half precision, so heads see one dtype).
    """

    spec: BackboneSpec
    device: torch.device
    name: str = "abstract"
    # Most crops the tracker should send per ``extract`` call (0: any number). A runtime sets
    # it where batching costs more than it saves (see TorchBackbone on the CPU).
    max_crops_per_call: int = 0
    # Whether ``extract`` wants NCHW-contiguous images (runtimes that read a numpy array);
    # the tracker builds them so (core.geometry.crops_to_tensor) instead of a channels-last view.
    contiguous_input: bool = False

    @abstractmethod
    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the frozen network on a batch of crops; see the class docstring for shapes."""

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        return f"{self.name} on {self.device}"

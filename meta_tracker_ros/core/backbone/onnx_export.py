"""Export the frozen backbone to ONNX, with its preprocessing recorded, and check it (no ROS).

Design choices, recorded in the file itself (``metadata_props``) so a runtime can check them:

- **Normalisation is inside the graph.** The exported input is the same tensor
  :meth:`Backbone.extract` receives: float32 RGB in [0, 1], (N, 3, H, W). ``(x - mean) / std``
  is the first node. A TensorRT engine, an onnxruntime session or a third-party consumer
  (trtexec, Isaac ROS) then needs no extra preprocessing step that could drift from the code,
  and TensorRT fuses the scale into the first convolution. The price is that mean/std are baked
  in: they are written to the metadata and a runtime refuses a file whose mean/std differ from
  the config (:func:`~meta_tracker_ros.core.backbone.onnx_metadata.check_metadata`).
- **The batch axis is dynamic** (one search region, or several targets sharing one pass).
- **The spatial size is fixed by default** (``--size``): the tracker always resizes its search
  region to one crop side, and TensorRT picks its best kernels for one shape. ``dynamic_size``
  exports symbolic H and W for onnxruntime users who need several sizes; the padding of
  EfficientNet-Lite's "same" convolutions is static, so any multiple of the deepest stride
  gives the same function as PyTorch.
- **Outputs are named after the levels** (``s4``, ``s8`` ...), so runtimes bind them by name.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meta_tracker_ros.core.backbone.base import LITE0_LEVELS
from meta_tracker_ros.core.backbone.efficientnet import (
    LiteFeatures,
    default_weights_path,
    lite0_spec,
)
from meta_tracker_ros.core.backbone.onnx_metadata import OnnxMetadata, file_sha256

INPUT_NAME = "image"
DEFAULT_OPSET = 17
# fp32 CPU against fp32 CPU: observed max abs differences are ~1e-4 on features of magnitude
# up to ~20; 1e-3 leaves room for other CPUs' kernels without hiding a wrong graph (a wrong
# mean/std or a missing block gives differences of order 1).
DEFAULT_ATOL = 1e-3


class NormalisedFeatures(nn.Module):
    """``LiteFeatures`` with ``(x - mean) / std`` in front: the module that gets exported.

    ``forward(images)``: (N, 3, H, W) float RGB in [0, 1] -> tuple of features in level order.
    """

    def __init__(self, features: LiteFeatures, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))
        self.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.features((images - self.mean) / self.std)


@dataclass(frozen=True)
class ExportResult:
    """Where the file went, its sha256 and the parity measured against PyTorch."""

    path: Path
    sha256: str
    metadata: OnnxMetadata
    max_abs_diff: dict[str, float]


def package_version() -> str:
    """Version of this package, recorded in exports so stale files can be recognised."""
    from meta_tracker_ros import __version__

    return __version__


def parse_levels(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"s4,s8,s16"`` or a sequence -> validated tuple of level names."""
    levels = tuple(v.strip() for v in text.split(",")) if isinstance(text, str) else tuple(text)
    levels = tuple(v for v in levels if v)
    unknown = [lv for lv in levels if lv not in LITE0_LEVELS]
    if not levels or unknown:
        raise ValueError(f"bad levels {list(levels)}; choose from {list(LITE0_LEVELS)}")
    return levels


def build_export_module(
    levels: Sequence[str],
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    weights: str = "",
) -> NormalisedFeatures:
    """The CPU fp32 module that is traced (also the parity reference)."""
    return NormalisedFeatures(LiteFeatures(levels, weights), mean, std)


def export_onnx(
    output: str | Path,
    levels: Sequence[str] = ("s4", "s8", "s16"),
    size: int = 256,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    weights: str = "",
    dynamic_size: bool = False,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
    verify_images: torch.Tensor | None = None,
) -> ExportResult:
    """Export Lite0 features to ``output`` (a ``.onnx`` path), embed metadata, check parity.

    ``size`` is the crop side in pixels, a multiple of the deepest level's stride so every
    level's map has an exact size. When
    ``verify`` is set the file is run through onnxruntime on ``verify_images`` ((N, 3, H, W)
    RGB in [0, 1]; a deterministic textured batch of 2 when None) and compared with PyTorch;
    a max abs difference above ``atol`` raises RuntimeError and the file is removed. The file
    is written to a temporary name and renamed, so a concurrent reader never sees half a file.
    """
    import onnx

    levels = parse_levels(levels)
    deepest = max(LITE0_LEVELS[lv][1] for lv in levels)
    if size % deepest:
        raise ValueError(f"size must be a multiple of {deepest} (the deepest stride), got {size}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    weights_path = weights or default_weights_path()
    module = build_export_module(levels, mean, std, weights_path)
    spec = lite0_spec(levels, mean, std)
    dummy = torch.rand(1, 3, size, size)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    out_axes = {0: "batch", 2: "fh", 3: "fw"} if dynamic_size else {0: "batch"}
    dynamic_axes = {INPUT_NAME: axes, **{lv: dict(out_axes) for lv in levels}}

    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}-", suffix=".onnx", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of torch.export's, which needs
            # onnxscript (not a dependency here); it still produces a plain, checked graph.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(levels),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        meta = OnnxMetadata(
            spec=spec,
            input_name=INPUT_NAME,
            input_size=None if dynamic_size else (size, size),
            normalisation="in_graph",
            weights_sha256=file_sha256(weights_path),
            package_version=package_version(),
            torch_version=torch.__version__,
            opset=opset,
        )
        del model.metadata_props[:]
        for key, value in meta.to_props().items():
            model.metadata_props.add(key=key, value=value)
        model.producer_name = "meta_tracker_ros"
        model.doc_string = (
            f"EfficientNet-Lite0 features {','.join(levels)}; input '{INPUT_NAME}' is NCHW float32 "
            "RGB in [0, 1]; normalisation (x - mean) / std is inside the graph."
        )
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        diffs: dict[str, float] = {}
        if verify:
            images = verify_images if verify_images is not None else parity_images(2, size)
            diffs = parity(tmp, module, images)
            worst = max(diffs.values())
            if not worst <= atol:  # also catches NaN
                raise RuntimeError(
                    f"ONNX parity failed: max abs diff {worst:.3g} > tolerance {atol:g} ({diffs})"
                )
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(output, file_sha256(output), meta, diffs)


def parity_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Deterministic textured test images (N, 3, size, size) in [0, 1].

    Smooth gradients plus noise rather than pure noise, so activations look more like a real
    image's; tests use a real crop from the benchmark data when it is available.
    """
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.0, 1.0, size)
    base = torch.stack([ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size)])
    base = torch.cat([base, base.mean(0, keepdim=True).flip(-1)]).unsqueeze(0)
    noise = torch.rand(batch, 3, size, size, generator=gen)
    return (0.6 * base + 0.4 * noise).clamp(0.0, 1.0)


def ort_session(path: str | Path, providers: Sequence[object] = ("CPUExecutionProvider",)):
    """An onnxruntime session with full graph optimisation (import kept local: optional dep)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; provider fallbacks are reported by the caller
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


@torch.no_grad()
def parity(
    onnx_path: str | Path, module: NormalisedFeatures, images: torch.Tensor
) -> dict[str, float]:
    """Max abs difference per level between onnxruntime (CPU) and ``module`` on ``images``."""
    session = ort_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {INPUT_NAME: images.float().cpu().numpy()})
    ref = module(images.float().cpu())
    levels = module.features.levels
    out = {}
    for lv, r in zip(levels, ref, strict=True):
        g = got[names.index(lv)]
        out[lv] = float(np.max(np.abs(g - r.numpy()))) if g.shape == tuple(r.shape) else np.inf
    return out

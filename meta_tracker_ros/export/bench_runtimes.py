"""``python -m meta_tracker_ros.export.bench_runtimes``: backbone milliseconds per crop.

Times ``Backbone.extract`` for each runtime that can start here (torch CPU, onnxruntime CPU,
and torch CUDA fp16 / onnxruntime CUDA where a GPU is present) at batch 1 and 4. Reports the
median over ``--iters`` runs after warm-up, per batch and per crop. On a shared machine the
numbers move with other users' load; compare runtimes from the same run only.

OpenVINO, when installed, is timed on the same ONNX file at fp32 and bf16 (bf16 only where
the CPU computes it; the row names the precision OpenVINO used). Every row prints its largest
feature error relative to torch's range beside the time: whether a runtime's error keeps the
tracker's accuracy is then an evaluation run's question (runtime_guard's table).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from meta_tracker_ros.core.backbone.base import Backbone


def time_backbone(
    backbone: Backbone, batch: int, size: int, iters: int, warmup: int = 3
) -> list[float]:
    """Seconds per ``extract`` call, ``iters`` samples (CUDA synchronised around each)."""
    images = torch.rand(batch, 3, size, size, device=backbone.device)
    cuda = backbone.device.type == "cuda"
    samples = []
    for i in range(warmup + iters):
        if cuda:
            torch.cuda.synchronize(backbone.device)
        t0 = time.perf_counter()
        backbone.extract(images)
        if cuda:
            torch.cuda.synchronize(backbone.device)
        if i >= warmup:
            samples.append(time.perf_counter() - t0)
    return samples


def relative_errors(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> str:
    """Largest absolute difference over the reference's largest magnitude, per level."""
    parts = []
    for lv, r in ref.items():
        err = float((got[lv] - r).abs().max()) / max(float(r.abs().max()), 1e-12)
        parts.append(f"{lv} {err:.1e}")
    return ", ".join(parts)


def openvino_runtimes(
    onnx_path: Path, levels: list[str], threads: int
) -> list[tuple[str, Backbone]]:
    """The OpenVINO runtime at fp32 and bf16, when the package is installed."""
    from meta_tracker_ros.core.backbone.alt_runtimes import OpenVINOBackbone

    out: list[tuple[str, Backbone]] = []
    for precision in ("fp32", "bf16"):
        try:
            backbone = OpenVINOBackbone(onnx_path, levels, precision=precision, num_threads=threads)
        except ImportError:
            print("openvino: not installed (pip install openvino to time it)")
            return []
        out.append((f"openvino cpu {backbone.precision}", backbone))
    return out


def main(argv: list[str] | None = None) -> int:
    from meta_tracker_ros.core.backbone.alt_runtimes import ONNXRuntimeBackbone
    from meta_tracker_ros.core.backbone.onnx_export import export_onnx, parse_levels
    from meta_tracker_ros.core.backbone.torch_runtime import TorchBackbone

    parser = argparse.ArgumentParser(prog="python -m meta_tracker_ros.export.bench_runtimes")
    parser.add_argument("--levels", default="s4,s8,s16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    parser.add_argument("--onnx", default="", help="exported file (default: export to a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    levels = parse_levels(args.levels)
    batches = [int(b) for b in args.batches.split(",")]

    with tempfile.TemporaryDirectory(prefix="mtr-bench-") as tmp:
        onnx_path = Path(args.onnx) if args.onnx else Path(tmp) / "backbone.onnx"
        if not args.onnx:
            export_onnx(onnx_path, levels, args.size)
        runtimes: list[tuple[str, Backbone]] = [
            ("torch cpu fp32", TorchBackbone(levels, num_threads=args.threads)),
            (
                "onnxruntime cpu fp32",
                ONNXRuntimeBackbone(onnx_path, levels, num_threads=args.threads),
            ),
        ]
        if torch.cuda.is_available():
            runtimes.append(("torch cuda fp16", TorchBackbone(levels, "cuda", "fp16")))
            runtimes.append(("torch cuda fp32", TorchBackbone(levels, "cuda", "fp32")))
            ort_cuda = ONNXRuntimeBackbone(onnx_path, levels, device="cuda")
            if ort_cuda.providers[0] != "CPUExecutionProvider":
                runtimes.append((f"onnxruntime cuda ({ort_cuda.providers[0]})", ort_cuda))
        runtimes += openvino_runtimes(onnx_path, levels, args.threads)
        probe = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
        reference = runtimes[0][1].extract(probe)

        print(
            f"backbone EfficientNet-Lite0 {','.join(levels)}, {args.size}px crops, median of "
            f"{args.iters} (torch threads {torch.get_num_threads()})"
        )
        print(
            f"{'runtime':<34}{'batch':>6}{'ms/batch':>11}{'ms/crop':>10}{'p90 ms/crop':>13}"
            "  max error vs torch (relative)"
        )
        for name, backbone in runtimes:
            feats = backbone.extract(probe.to(backbone.device))
            err = relative_errors({k: v.float().cpu() for k, v in feats.items()}, reference)
            for batch in batches:
                samples = time_backbone(backbone, batch, args.size, args.iters)
                med = statistics.median(samples) * 1e3
                p90 = sorted(samples)[int(0.9 * (len(samples) - 1))] * 1e3
                print(
                    f"{name:<34}{batch:>6}{med:>11.2f}{med / batch:>10.2f}{p90 / batch:>13.2f}"
                    f"  {err}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

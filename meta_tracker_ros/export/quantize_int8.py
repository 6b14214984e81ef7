"""``python -m meta_tracker_ros.export.quantize_int8``: int8 backbone for ONNX Runtime (CPU).

    python -m meta_tracker_ros.export.quantize_int8 --out exports/lite0_int8.onnx \\
        [--train ../shared/data/train] [--calib 96] [--threads 1]

Static post-training quantisation (ONNX Runtime, QDQ format, int8 per-channel weights, uint8
activations) of the dynamic-size fp32 export. Calibration uses real search-region crops cut
around the ground-truth boxes of the **training** clips only (``../shared/data/train``, never
the evaluation sequences), as the tracker cuts them. The file keeps the fp32 export's metadata,
so ``runtime.backend: onnxruntime`` with ``runtime.onnx_path`` set to it runs it; prints ms per
crop of fp32 and int8 at ``--threads`` and the relative feature error on held-out training
crops. Whether ``backend: auto`` may take it is decided by the evaluation (runtime_guard).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from meta_tracker_ros.core.backbone.onnx_export import export_onnx, parse_levels
from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.geometry import crop_image, crops_to_tensor, search_crop


def training_crops(train: Path, count: int, cfg: TrackerConfig, seed: int = 0) -> np.ndarray:
    """``count`` search crops (N, 3, S, S) float32 from frames of the training clips."""
    from meta_tracker_ros.evaluation.datasets import load_shared

    seqs = load_shared(train)
    if not seqs:
        raise SystemExit(f"no training clips under {train}")
    rng = np.random.default_rng(seed)
    s = cfg.search
    out = []
    for k in range(count):
        seq = seqs[k % len(seqs)]
        valid = [i for i, b in enumerate(seq.boxes) if np.all(np.isfinite(b)) and b[2] > 1]
        i = int(rng.choice(valid))
        x, y, w, h = (float(v) for v in seq.boxes[i])
        crop = search_crop((x + w / 2, y + h / 2), (w, h), s.search_area, s.crop_size, s.min_side)
        out.append(crop_image(seq.frame(i), crop))
    return crops_to_tensor(out).numpy()


def _time(session, x: np.ndarray, iters: int) -> float:
    name = session.get_inputs()[0].name
    samples = []
    for i in range(iters + 2):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        if i >= 2:
            samples.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    root = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(prog="python -m meta_tracker_ros.export.quantize_int8")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=Path, default=root.parent / "shared" / "data" / "train")
    p.add_argument("--levels", default="s4,s8,s16")
    p.add_argument("--calib", type=int, default=96, help="calibration crops")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args(argv)
    cfg = TrackerConfig()
    levels = parse_levels(args.levels)
    crops = training_crops(args.train, args.calib + 8, cfg)
    calib, held_out = crops[: args.calib], crops[args.calib :]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib[i : i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"image": x}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mtr-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        size = cfg.search.crop_size
        export_onnx(fp32, levels, size, cfg.backbone.mean, cfg.backbone.std, dynamic_size=True)
        quantize_static(
            str(fp32),
            str(args.out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        src, dst = onnx.load(str(fp32)), onnx.load(str(args.out))
        del dst.metadata_props[:]
        dst.metadata_props.extend(src.metadata_props)  # same function, same checks at load
        onnx.save(dst, str(args.out))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.log_severity_level = 3
        s32 = ort.InferenceSession(str(fp32), opts, providers=["CPUExecutionProvider"])
        s8 = ort.InferenceSession(str(args.out), opts, providers=["CPUExecutionProvider"])
        errors = []
        for i in range(len(held_out)):
            a = s32.run(None, {"image": held_out[i : i + 1]})
            b = s8.run(None, {"image": held_out[i : i + 1]})
            pairs = zip(a, b, strict=True)
            errors.append([float(np.linalg.norm(u - v) / np.linalg.norm(u)) for u, v in pairs])
        x = held_out[:1]
        t32, t8 = _time(s32, x, args.iters), _time(s8, x, args.iters)
    err = np.mean(errors, axis=0)
    print(f"wrote {args.out} ({args.calib} calibration crops from {args.train})")
    print(f"ms per {size} px crop at {args.threads} thread(s): fp32 {t32:.1f}, int8 {t8:.1f}")
    levels_err = ", ".join(f"{lv} {e:.3f}" for lv, e in zip(levels, err, strict=True))
    print(f"relative feature error int8 vs fp32 on held-out training crops: {levels_err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

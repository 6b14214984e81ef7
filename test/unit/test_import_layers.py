"""The package's layers import one way only (docs/design.md, "Nothing flows back").

Every module under ``meta_tracker_ros/`` is parsed (nothing is imported or run) and every import
in it is checked: top-level ones, lazy ones inside functions, relative ones, ``from pkg import
submodule`` and ``importlib.import_module("...")`` with a literal name. The rules:

- ``core`` (the tracker library) imports none of the layers built on it (``export``, ``ros``,
  ``tools``, ``evaluation``, ``training``) and no ROS (``rclpy``, message packages, the
  generated ``meta_tracker_ros.msg``/``srv``).
- ``ros`` (the nodes) imports none of the offline tools (``tools``, ``evaluation``,
  ``training``, ``export``).

Allowed, on purpose: ``training`` imports ``core`` and ``evaluation`` (a tool beside the core),
``evaluation``'s CLI imports ``training.data`` lazily for ``--split``, and ``tools``, ``export``
and ``evaluation`` import ``core`` (``tools`` also ``ros``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "meta_tracker_ros"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

OFFLINE = {"export", "tools", "evaluation", "training"}
# source layer -> layers of this package it must not import
FORBIDDEN_LAYERS = {
    "core": OFFLINE | {"ros"},
    "ros": OFFLINE,
}
ROS_LAYERS = {"msg", "srv"}  # generated interfaces, installed into the same package


@dataclass(frozen=True)
class Import:
    """One imported name: ``target`` is the full dotted name, ``line`` where it is imported."""

    module: str
    target: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__.py`` is the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """All imports in one file, wherever they stand (module level, functions, branches)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a.b import c`` may import the submodule a.b.c: check the longer name.
            found += [Import(module, f"{base}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(Import(module, arg.value, node.lineno))
    return sorted(found, key=lambda i: i.line)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"import_module", "__import__"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def layer(name: str) -> str | None:
    """``meta_tracker_ros.<layer>...`` -> ``<layer>``; None for other packages and the root."""
    parts = name.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


def is_ros(name: str) -> bool:
    top = name.split(".")[0]
    return top == "rclpy" or top.endswith(("_msgs", "_interfaces")) or layer(name) in ROS_LAYERS


def violations(root: Path = ROOT) -> list[str]:
    """``file:line: module imports target (why)`` for every import that breaks a rule."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for imp in imports_of(path, root):
            src, dst = layer(imp.module), layer(imp.target)
            why = None
            if dst in FORBIDDEN_LAYERS.get(src or "", set()):
                why = f"{src} must not import {dst}"
            elif src == "core" and is_ros(imp.target):
                why = "core must not import ROS"
            if why:
                where = path.relative_to(root.parent)
                out.append(f"{where}:{imp.line}: {imp.module} imports {imp.target} ({why})")
    return out


def test_layers_import_one_way() -> None:
    found = violations()
    assert not found, "imports against the layering (docs/design.md):\n" + "\n".join(found)


def test_every_layer_is_read() -> None:
    """The walk sees the package: all layers present, and known cross-layer imports found."""
    layers = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert {"core", "ros", "tools", "evaluation", "export", "training"} <= layers
    targets = {
        (layer(i.module), layer(i.target)) for p in ROOT.rglob("*.py") for i in imports_of(p, ROOT)
    }
    # the allowed lazy import in evaluation's CLI, found inside its function
    assert ("evaluation", "training") in targets
    assert ("tools", "ros") in targets and ("export", "core") in targets


def test_checker_catches_each_import_form(tmp_path: Path) -> None:
    """A forbidden import in any of the forms above is reported; allowed ones are not."""
    root = tmp_path / PACKAGE
    for sub in ("", "core", "core/backbone", "ros", "tools", "export", "evaluation", "training"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "__init__.py").write_text("")
    (root / "core" / "backbone" / "lazy.py").write_text(
        "def f():\n    from meta_tracker_ros.export.cli import main\n    return main\n"
    )
    (root / "core" / "relative.py").write_text("from ..tools import demo\n")
    (root / "core" / "sub.py").write_text("from meta_tracker_ros import training\n")
    (root / "core" / "dyn.py").write_text(
        "import importlib\nm = importlib.import_module('meta_tracker_ros.evaluation.x')\n"
    )
    (root / "core" / "node.py").write_text("import rclpy\nfrom sensor_msgs.msg import Image\n")
    (root / "ros" / "node.py").write_text("if True:\n    import meta_tracker_ros.tools.graph\n")
    (root / "ros" / "ok.py").write_text("from meta_tracker_ros.core import geometry\n")
    (root / "evaluation" / "cli.py").write_text(
        "def f():\n    from meta_tracker_ros.training.data import load\n"
    )
    (root / "training" / "ok.py").write_text("from meta_tracker_ros.evaluation import metrics\n")
    (root / "tools" / "ok.py").write_text("from meta_tracker_ros.ros import synthetic\n")
    found = violations(root)
    expected = {
        "core/backbone/lazy.py:2": "core must not import export",
        "core/relative.py:1": "core must not import tools",
        "core/sub.py:1": "core must not import training",
        "core/dyn.py:2": "core must not import evaluation",
        "core/node.py:1": "core must not import ROS",
        "core/node.py:2": "core must not import ROS",
        "ros/node.py:2": "ros must not import tools",
    }
    assert len(found) == len(expected), "\n".join(found)
    for where, why in expected.items():
        assert any(f"{PACKAGE}/{where}:" in v and why in v for v in found), (where, found)

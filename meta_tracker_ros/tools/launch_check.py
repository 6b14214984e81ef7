"""Static reading of launch/*.launch.py without the ``launch`` package (not on PyPI).

The launch files are written for real ROS 2 installs. Here they are parsed with ``ast`` to get
each ``Node(...)``: package, executable, parameters (params files and inline values) and
remappings, with ``LaunchConfiguration("x")`` resolved to the default of its
``DeclareLaunchArgument("x", default_value=...)`` and ``share / "config" / "f"`` to the source
tree's ``config/f``. Tests use this to check that everything a launch file names exists and to
start each node the way the launch file would.

    python -m meta_tracker_ros.tools.launch_check   # prints every node of every launch file
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LaunchNode:
    """One ``launch_ros.actions.Node`` of a launch file, with launch arguments resolved."""

    package: str
    executable: str
    name: str = ""
    namespace: str = ""
    params_files: list[Path] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)

    def ros_args(self) -> list[str]:
        """The ``--ros-args`` equivalent of this node's parameters and remappings."""
        args: list[str] = []
        if self.name:
            args += ["-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for path in self.params_files:
            args += ["--params-file", str(path)]
        for key, value in self.params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            text = text or "''"  # an empty value must stay a string, not become null
            args += ["-p", f"{key}:={text}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args


class _Resolver:
    def __init__(self, defaults: dict[str, str]) -> None:
        self.defaults = defaults

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Call) and _name(node.func) == "LaunchConfiguration":
            return self.defaults.get(node.args[0].value, "")  # type: ignore[attr-defined]
        if isinstance(node, ast.Call) and _name(node.func) == "str" and node.args:
            return self.value(node.args[0])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left, right = self.value(node.left), self.value(node.right)
            return Path(left) / str(right)
        if isinstance(node, ast.Name) and node.id == "share":
            return ROOT  # get_package_share_directory: the source tree holds config/ and launch/
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {
                self.value(k): self.value(v) for k, v in zip(node.keys, node.values, strict=True)
            }
        return None


def _name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def launch_arguments(tree: ast.AST) -> dict[str, str]:
    """``{name: default_value}`` of every DeclareLaunchArgument."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) == "DeclareLaunchArgument":
            name = node.args[0].value  # type: ignore[attr-defined]
            default = next((k.value for k in node.keywords if k.arg == "default_value"), None)
            if isinstance(default, ast.Constant):
                out[name] = default.value
            elif default is not None:
                out[name] = str(_Resolver({}).value(default))
    return out


def parse_launch_file(path: Path) -> list[LaunchNode]:
    """Every Node(...) of a launch file (which must compile and define the entry point)."""
    source = path.read_text(encoding="utf-8")
    compile(source, str(path), "exec")
    tree = ast.parse(source)
    if not any(
        isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
        for n in tree.body
    ):
        raise ValueError(f"{path.name}: no generate_launch_description()")
    resolver = _Resolver(launch_arguments(tree))
    nodes = []
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and _name(call.func) == "Node"):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        node = LaunchNode(
            package=resolver.value(kw["package"]),
            executable=resolver.value(kw["executable"]),
            name=resolver.value(kw["name"]) if "name" in kw else "",
            namespace=resolver.value(kw["namespace"]) if "namespace" in kw else "",
        )
        for item in resolver.value(kw["parameters"]) if "parameters" in kw else []:
            if isinstance(item, dict):
                node.params.update(item)
            else:
                node.params_files.append(Path(item))
        for src, dst in resolver.value(kw["remappings"]) if "remappings" in kw else []:
            node.remappings.append((src, dst))
        if "arguments" in kw:
            node.arguments = [str(a) for a in resolver.value(kw["arguments"])]
        nodes.append(node)
    return nodes


def launch_environment(path: Path) -> dict[str, Any]:
    """``{name: value}`` of every SetEnvironmentVariable, launch arguments at their defaults."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    resolver = _Resolver(launch_arguments(tree))
    out = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and _name(call.func) == "SetEnvironmentVariable":
            out[resolver.value(call.args[0])] = resolver.value(call.args[1])
    return out


def launch_files() -> list[Path]:
    """The package's launch files."""
    return sorted((ROOT / "launch").glob("*.launch.py"))


def main() -> int:
    """Print every node of every launch file as the command that would start it here."""
    for path in launch_files():
        print(path.name)
        for node in parse_launch_file(path):
            print(f"  {node.package}/{node.executable} {' '.join(node.ros_args())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

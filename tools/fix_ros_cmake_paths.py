"""Point the ROS 2 PyPI wheels' CMake exports at this interpreter's include directories.

The Kilted wheels are built on a manylinux image, and their exported CMake targets name that
image's Python and NumPy include directories. CMake refuses a target whose include directory
does not exist, so before `colcon build` those two paths are rewritten to the ones of the
interpreter that runs this script (the project's virtual environment). Idempotent.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PYTHON_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILD_NUMPY_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def main() -> int:
    prefix = Path(sys.prefix) / "share"
    replacements = {
        BUILD_PYTHON_INCLUDE: sysconfig.get_paths()["include"],
        BUILD_NUMPY_INCLUDE: numpy.get_include(),
    }
    changed = 0
    for path in prefix.rglob("*.cmake"):
        text = path.read_text()
        new = text
        for old, repl in replacements.items():
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_cmake_paths: rewrote {changed} CMake file(s) under {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plain pip install of the tracking library and tools (no ROS needed).

Inside a ROS 2 workspace the package is built by colcon through CMakeLists.txt (ament_cmake),
which also generates msg/ and srv/; this file is only for `pip install .` of the core.
"""

from setuptools import setup

setup()

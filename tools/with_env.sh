#!/usr/bin/env bash
# Run a command inside the project's environment: the virtual environment, the ROS 2 prefix it
# holds (the PyPI wheels install their ament index and CMake configs under <venv>/share), and,
# when it exists, this package's colcon install space (generated msg/srv modules).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
if [ -f "$ROOT/install/setup.bash" ]; then
  # setup.bash reads unset variables; relax -u-like options around it.
  set +e
  # shellcheck disable=SC1091
  source "$ROOT/install/setup.bash"
  set -e
fi
# Keep ROS traffic of tests and demos on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec "$@"

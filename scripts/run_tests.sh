#!/usr/bin/env bash
# Lint, then run the whole test suite with ROS 2 traffic confined to loopback.
#
# ROS tests use real rclpy (pip wheels or a sourced distro) with a private ROS_DOMAIN_ID,
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and logs in a temp dir; when `unshare -n` is allowed
# (root, or user namespaces), the suite runs in a network namespace that has only loopback.
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NOKSR_VENV:-$ROOT/.venv}"
cd "$ROOT"

echo '[test] ruff'
"$VENV/bin/ruff" check .

TMP_ROS="$(mktemp -d -t noksr-ros-XXXXXX)"
trap 'rm -rf "$TMP_ROS"' EXIT
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# Our generated message libraries (msg/) are in $VENV/lib (the pip wheels add it themselves).
export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ROS_HOME="$TMP_ROS" ROS_LOG_DIR="$TMP_ROS/log"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 101))}"
export PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

PYTEST=("$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=12 "$@")
if unshare -n true 2>/dev/null; then
  echo "[test] pytest in a loopback-only network namespace (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' _ "${PYTEST[@]}"
fi
echo "[test] unshare -n not permitted here: running on the host, DDS limited to localhost"
exec "${PYTEST[@]}"

#!/usr/bin/env bash
# One-command set-up for noksr_ros on Debian/Ubuntu with Python 3.11.
#
# Creates .venv, installs the pinned CPU torch, open3d, rosbags, the ROS 2 kilted wheels from PyPI
# (or uses a sourced ROS distro instead), the test tools and this package (pip install ., so the
# ament index, launch/ and config/ data files are installed too), then builds the interfaces in
# msg/ with CMake + rosidl into the venv (scripts/build_interfaces.sh). Idempotent: a stamp
# records the hash of everything that was installed, and a second run with nothing changed takes
# a second.
#
# Usage: scripts/setup.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NOKSR_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
STAMP="$VENV/.noksr_setup_stamp"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[setup] %s\n' "$*" >&2; }

if ! command -v "$PY" >/dev/null 2>&1; then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    PY=python3
  else
    log "Python 3.11 is required (python3.11 not found; set PYTHON=/path/to/python3.11)."
    exit 1
  fi
fi

# A sourced ROS 2 distro (setup.bash sets ROS_DISTRO and puts rclpy on PYTHONPATH) is used as is.
USE_DISTRO=0
if [[ -n "${ROS_DISTRO:-}" ]] && "$PY" -c 'import rclpy' >/dev/null 2>&1; then
  USE_DISTRO=1
fi

# Debian packages: open3d needs libusb at import time; unshare/ip keep CI traffic on loopback;
# cmake and the compilers build msg/, against Python.h (python3.11-dev for Debian's python3.11).
apt_wanted=(libusb-1.0-0 iproute2 util-linux cmake make gcc g++)
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || apt_wanted+=(python3.11-dev)
apt_missing=()
for pkg in "${apt_wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || apt_missing+=("$pkg")
done
if ((${#apt_missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  log "installing Debian packages: ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

req_files=("$ROOT/requirements/core.txt" "$ROOT/requirements/test.txt")
((USE_DISTRO)) || req_files+=("$ROOT/requirements/ros-wheels.txt" "$ROOT/requirements/ros-build.txt")
pkg_hash=$(cd "$ROOT" && cat "${req_files[@]}" setup.py setup.cfg package.xml CMakeLists.txt \
  $(git ls-files noksr_ros launch config rviz resource scripts msg 2>/dev/null || find noksr_ros launch config rviz resource scripts msg -type f) \
  2>/dev/null | sha256sum | cut -d' ' -f1)
want="distro=$USE_DISTRO hash=$pkg_hash"

if ((FORCE == 0)) && [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$want" ]]; then
  log "up to date ($VENV)"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  if ((USE_DISTRO)); then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade 'pip>=24' 'setuptools>=69,<80' wheel  # colcon-core needs <80
log "installing dependencies (first run: a few minutes)"
req_args=()
for f in "${req_files[@]}"; do req_args+=(-r "$f"); done
"${PIP[@]}" install "${req_args[@]}"
log "installing noksr_ros"
"${PIP[@]}" install --no-deps --force-reinstall --no-build-isolation "$ROOT"
if ((USE_DISTRO == 0)); then
  # The wheels' CMake exports name the manylinux build's Python include dirs: point them here.
  "$VENV/bin/python" "$ROOT/scripts/fix_ros_cmake_paths.py" "$VENV" >&2
fi
log "building the interfaces in msg/ (about 20 s)"
bash "$ROOT/scripts/build_interfaces.sh" "$VENV"

"$VENV/bin/python" - <<'EOF'
import importlib
for mod in ('torch', 'open3d', 'rosbags', 'rclpy', 'sensor_msgs.msg', 'noksr_ros',
            'noksr_ros.msg'):
    importlib.import_module(mod)
EOF
echo "$want" >"$STAMP"
log "done: $VENV"

#!/usr/bin/env bash
# Build the interfaces in msg/ with CMake + rosidl and install them into a venv (the pip set-up).
#
# The package's own CMakeLists.txt runs with NOKSR_INTERFACES_ONLY=ON: libraries go to
# VENV/lib (the ROS wheels put that directory on LD_LIBRARY_PATH; an rpath covers the rest), the
# generated Python package noksr_ros.msg to VENV/lib/noksr_ros_interfaces (on sys.path through a
# .pth file; noksr_ros/__init__.py merges it into the package), and the ament index entries to
# VENV/share, so rosidl type support lookup and `ros2 interface show` find them.
# Sources are staged outside the venv (CMake refuses exported include paths under its source
# directory, and the venv lies inside the repository).
#
# Usage: scripts/build_interfaces.sh VENV
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "$1" && pwd)"
PYDIR=lib/noksr_ros_interfaces
WORK="$(mktemp -d -t noksr-interfaces-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/src"
cp -r "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/msg" "$WORK/src/"
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
rm -rf "${VENV:?}/$PYDIR"
cmake -S "$WORK/src" -B "$WORK/build" -DNOKSR_INTERFACES_ONLY=ON -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$VENV" -DPYTHON_INSTALL_DIR="$PYDIR" \
  -DCMAKE_INSTALL_RPATH="$VENV/lib" -DPython3_EXECUTABLE="$VENV/bin/python" >"$WORK/configure.log" 2>&1 \
  || { cat "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" -j "$(nproc)" >"$WORK/build.log" 2>&1 \
  || { tail -50 "$WORK/build.log" >&2; exit 1; }
cmake --install "$WORK/build" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; exit 1; }
# The egg-info would make a second 'noksr_ros' distribution appear next to pip's.
rm -rf "$VENV/$PYDIR"/*.egg-info
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$VENV/$PYDIR" >"$SITE/noksr_ros_interfaces.pth"

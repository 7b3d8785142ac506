#!/usr/bin/env python3
"""
Point the CMake exports of the ROS 2 PyPI wheels at this interpreter's include directories.

The wheels were built in a manylinux image: their exported `*__rosidl_generator_pyExport.cmake`
files name `/opt/python/cp311-cp311/include/python3.11` and the numpy include directory under it,
which do not exist here, so any package that generates interfaces against them (our msg/) fails
to configure. This rewrites those two paths in place to the running Python's; a second run finds
nothing to change. Usage: python scripts/fix_ros_cmake_paths.py PREFIX (the venv).
"""

from __future__ import annotations

from pathlib import Path
import re
import sys
import sysconfig

WHEEL_PYTHON = '/opt/python/cp311-cp311'
WHEEL_INCLUDE = re.compile(re.escape(WHEEL_PYTHON) + r'/include/python3\.\d+')
WHEEL_NUMPY = re.compile(re.escape(WHEEL_PYTHON) + r'/lib/python3\.\d+/site-packages/numpy/'
                         r'(?:_core|core)/include')


def fix_file(path: Path, include_dir: str, numpy_include: str) -> bool:
    """Rewrite one CMake file; True when it changed."""
    text = path.read_text()
    fixed = WHEEL_NUMPY.sub(numpy_include, WHEEL_INCLUDE.sub(include_dir, text))
    if fixed == text:
        return False
    path.write_text(fixed)
    return True


def main(argv: list[str]) -> int:
    """Fix every CMake file under PREFIX/share; print how many changed."""
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    import numpy

    include_dir = sysconfig.get_paths()['include']
    if not (Path(include_dir) / 'Python.h').exists():
        print(f'Python.h not found in {include_dir}: install the python3.11-dev package',
              file=sys.stderr)
        return 1
    share = Path(argv[1]) / 'share'
    changed = [p for p in share.glob('*/cmake/*.cmake')
               if fix_file(p, include_dir, numpy.get_include())]
    left = [p for p in share.glob('*/cmake/*.cmake') if WHEEL_PYTHON in p.read_text()]
    print(f'fixed {len(changed)} CMake file(s) under {share}')
    if left:
        print('still naming ' + WHEEL_PYTHON + ': ' + ', '.join(map(str, left)), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

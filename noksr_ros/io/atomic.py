"""
Atomic, permission-safe file writes shared by every writer of maps, meshes and checkpoints.

A write goes to a fresh temp file in the target's directory (`mkstemp`: exclusive create with a
random name, so a planted file or symlink is never written through), is flushed and fsynced,
gets its final permissions and is renamed over the target (`os.replace`: atomic on POSIX, and a
symlink at the target is replaced, not followed); then the directory is fsynced. A crash leaves
the old file or the new one, never a mix; an error (a full disk) removes the temp file.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import tempfile
from typing import BinaryIO

TEMP_PREFIX = '.tmp-'
# The segment store (where the vehicle has been) is private to the user; meshes, drives and
# checkpoints are readable by others. Nothing is ever group- or world-writable, whatever the umask.
PRIVATE = 0o600
SHARED = 0o644


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (no-op where directories cannot be opened)."""
    if os.name != 'posix':  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None],
                 mode: int = PRIVATE) -> Path:
    """Create or replace `path` with what `write(file)` writes, atomically, with `mode`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix='.part', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path

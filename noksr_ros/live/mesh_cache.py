"""
The newest mesh of every segment, shared by the worker (writer) and the publishers (readers).

The worker applies each update's meshes and removals; publishers take what changed since they
last looked, or everything at once, under one lock, so a full re-send and the incremental stream
can never disagree about a segment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import threading

import numpy as np

from noksr_ros.segment_mesher import SegmentMesh


@dataclass
class MeshChanges:
    """
    Segment meshes changed since the last `take_changes()`; `cleared`: the map was reset.

    After a reset `meshes` holds every segment meshed since, i.e. the whole map. `snapshot`, when
    asked for, is every cached mesh taken in the same instant as the changes, for a full re-send.
    """

    meshes: dict[int, SegmentMesh]
    removed: set[int]
    cleared: bool
    origin_m: np.ndarray | None
    stamp_ns: int
    snapshot: dict[int, SegmentMesh] | None = None


class MeshCache:
    """Thread-safe segment meshes plus the keys changed and removed since the last take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meshes: dict[int, SegmentMesh] = {}
        self._changed: set[int] = set()
        self._removed: set[int] = set()
        self._cleared = False
        self.stamp_ns = 0  # stamp of the newest scan the cached meshes contain

    def __len__(self) -> int:
        with self._lock:
            return len(self._meshes)

    def apply(self, meshes: dict[int, SegmentMesh], removed: Iterable[int] = (),
              stamp_ns: int | None = None) -> None:
        """New meshes replace old ones and count as changed; removed keys leave the cache."""
        with self._lock:
            for key, mesh in meshes.items():
                self._meshes[key] = mesh
                self._changed.add(key)
                self._removed.discard(key)
            for key in removed:
                self._meshes.pop(key, None)
                self._changed.discard(key)
                self._removed.add(key)
            if stamp_ns is not None:
                self.stamp_ns = max(stamp_ns, 0)

    def clear(self) -> None:
        """Forget every mesh; the next `take_changes()` reports `cleared`."""
        with self._lock:
            self._meshes.clear()
            self._changed.clear()
            self._removed.clear()
            self._cleared = True

    def pending(self) -> int:
        """Changes not taken yet (changed plus removed keys, plus one for a clear)."""
        with self._lock:
            return len(self._changed) + len(self._removed) + int(self._cleared)

    def take_changes(self, origin_m: np.ndarray | None, snapshot: bool = False) -> MeshChanges:
        """Changes since the last call (then reset); `snapshot` adds every mesh, atomically."""
        with self._lock:
            changes = MeshChanges({k: self._meshes[k] for k in self._changed}, set(self._removed),
                                  self._cleared, origin_m, self.stamp_ns,
                                  dict(self._meshes) if snapshot else None)
            self._changed.clear()
            self._removed.clear()
            self._cleared = False
        return changes

    def snapshot(self, origin_m: np.ndarray | None) -> MeshChanges:
        """Every cached mesh; pending changes are left for `take_changes()`."""
        with self._lock:
            return MeshChanges(dict(self._meshes), set(), False, origin_m, self.stamp_ns)

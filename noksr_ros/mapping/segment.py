"""
One segment of the map: the points of one cube, its density cells, dirty bits and results.

Arrays are in the map-local frame (see `noksr_ros.mapping.keys`). `points` and `normals` grow by
`append`, which over-allocates so that adding a scan costs O(new points), not O(segment size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import re

import numpy as np

from noksr_ros.mapping.cells import CellCounts

CONSUMERS = ('reconstruct', 'publish', 'persist')
_GROWTH = 1.5
_MIN_CAPACITY = 1024
_GRID_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9]*$')


def _rows(dtype: type, n: int = 0) -> np.ndarray:
    return np.zeros((n, 3), dtype=dtype)


def _clean_dirty() -> dict[str, bool]:
    return dict.fromkeys(CONSUMERS, False)


def check_consumer(consumer: str) -> str:
    """Return `consumer` if it is one of `CONSUMERS`, else raise ValueError."""
    if consumer not in CONSUMERS:
        raise ValueError(f'consumer must be one of {CONSUMERS}, got {consumer!r}')
    return consumer


@dataclass(eq=False)
class Segment:
    """
    Points of one segment cube and everything computed from them.

    Attributes:
        key: segment key (curve code of the biased segment index), >= 0.
        ijk: (3,) int64 segment index; the cube is `[ijk, ijk + 1) * segment_size_m`.
        points: (N,3) float32 map-local metres, in insertion order.
        normals: (N,3) float32 unit normals of `points`.
        cells: points per density cell (see `noksr_ros.mapping.cells`); `cell_keys` and
            `cell_counts` give it as sorted arrays.
        dirty: consumer name -> whether it has yet to see the latest points.
        last_update_stamp_s: stamp of the last scan that added points (-inf: never).
        revision: bumped whenever points are added.
        grid: free slot for the reconstructor, e.g. {'sdf': (G,) float32 corner values}.
        mesh_vertices: (V,3) float32 map-local metres.
        mesh_faces: (F,3) int32 vertex indices.

    """

    key: int
    ijk: np.ndarray
    points: np.ndarray = field(default_factory=lambda: _rows(np.float32))
    normals: np.ndarray = field(default_factory=lambda: _rows(np.float32))
    cells: CellCounts = field(default_factory=CellCounts)
    dirty: dict[str, bool] = field(default_factory=_clean_dirty)
    last_update_stamp_s: float = -math.inf
    revision: int = 0
    grid: dict[str, np.ndarray] = field(default_factory=dict)
    mesh_vertices: np.ndarray = field(default_factory=lambda: _rows(np.float32))
    mesh_faces: np.ndarray = field(default_factory=lambda: _rows(np.int32))
    # Over-allocated storage behind `points` / `normals` (views of its first `rows` rows).
    _buffers: tuple[np.ndarray, np.ndarray, int] | None = field(default=None, init=False,
                                                                repr=False)

    @property
    def num_points(self) -> int:
        """Number of points held."""
        return int(self.points.shape[0])

    def append(self, points: np.ndarray, normals: np.ndarray) -> None:
        """Add (M,3) float32 points and normals at the end (amortised O(M))."""
        n, m = self.num_points, int(points.shape[0])
        if not self._owns_arrays() or n + m > self._buffers[0].shape[0]:
            self._grow(max(n + m, int(n * _GROWTH), _MIN_CAPACITY))
        buf_p, buf_n, _ = self._buffers
        buf_p[n:n + m] = points
        buf_n[n:n + m] = normals
        self.points, self.normals = buf_p[:n + m], buf_n[:n + m]
        self._buffers = (buf_p, buf_n, n + m)

    def _owns_arrays(self) -> bool:
        """Whether `points`/`normals` are still our views (not replaced from outside)."""
        if self._buffers is None:
            return False
        buf_p, buf_n, rows = self._buffers
        return (self.points.base is buf_p and self.normals.base is buf_n
                and self.points.ctypes.data == buf_p.ctypes.data
                and self.normals.ctypes.data == buf_n.ctypes.data
                and len(self.points) == len(self.normals) == rows)

    def _grow(self, capacity: int) -> None:
        n = self.num_points
        buf_p, buf_n = _rows(np.float32, capacity), _rows(np.float32, capacity)
        buf_p[:n] = self.points
        buf_n[:n] = self.normals
        self._buffers = (buf_p, buf_n, n)
        self.points, self.normals = buf_p[:n], buf_n[:n]

    @property
    def cell_keys(self) -> np.ndarray:
        """(C,) int64 sorted unique keys of the density cells holding points (computed)."""
        return self.cells.to_cells()[0]

    @property
    def cell_counts(self) -> np.ndarray:
        """(C,) int32 points held by each cell of `cell_keys` (computed)."""
        return self.cells.to_cells()[1]

    def lookup_cells(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points already held by cells (R,) int64 keys: counts (R,) int64 and a handle (R,)."""
        return self.cells.lookup(cells)

    def add_to_cells(self, cells: np.ndarray, added: np.ndarray, where: np.ndarray) -> None:
        """Count `added` (R,) more points in unique `cells` (R,); `where` from `lookup_cells`."""
        self.cells.add(cells, added, where)

    def mark_dirty(self) -> None:
        """Set the dirty bit of every consumer."""
        self.dirty = dict.fromkeys(CONSUMERS, True)

    def nbytes(self) -> int:
        """Bytes held by this segment's arrays, including spare capacity."""
        arrays = [self.ijk, self.mesh_vertices, self.mesh_faces, *self.grid.values()]
        if self._owns_arrays():
            arrays += list(self._buffers[:2])
        else:
            arrays += [self.points, self.normals]
        return int(sum(a.nbytes for a in arrays)) + self.cells.nbytes()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every field as a plain (non-object) numpy array, for `np.savez`."""
        names = list(self.dirty)
        cell_keys, cell_counts = self.cells.to_cells()
        arrays = {
            'key': np.array(self.key, dtype=np.int64),
            'ijk': np.asarray(self.ijk, dtype=np.int64),
            'points': self.points, 'normals': self.normals,
            'cell_keys': cell_keys, 'cell_counts': cell_counts,
            'dirty_names': np.array(names, dtype=np.str_).reshape(len(names)),
            'dirty_values': np.array([self.dirty[c] for c in names], dtype=np.bool_),
            'last_update_stamp_s': np.array(self.last_update_stamp_s, dtype=np.float64),
            'revision': np.array(self.revision, dtype=np.int64),
            'mesh_vertices': self.mesh_vertices, 'mesh_faces': self.mesh_faces,
        }
        for name, values in self.grid.items():
            if not _GRID_NAME.match(name):
                raise ValueError(f'grid names must be alphanumeric, got {name!r}')
            arrays[f'grid_{name}'] = np.asarray(values)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Segment:
        """Inverse of `to_arrays`; raises KeyError or ValueError on missing or bad arrays."""
        points = _checked(arrays['points'], np.float32, 'points')
        normals = _checked(arrays['normals'], np.float32, 'normals')
        if points.shape != normals.shape:
            raise ValueError(f'points {points.shape} and normals {normals.shape} differ')
        names = [str(n) for n in arrays['dirty_names']]
        values = [bool(v) for v in arrays['dirty_values']]
        return cls(
            key=int(arrays['key']), ijk=np.asarray(arrays['ijk'], dtype=np.int64).reshape(3),
            points=points, normals=normals,
            cells=CellCounts.from_cells(arrays['cell_keys'], arrays['cell_counts']),
            dirty=dict(zip(names, values, strict=True)),
            last_update_stamp_s=float(arrays['last_update_stamp_s']),
            revision=int(arrays['revision']),
            grid={name[5:]: a for name, a in arrays.items() if name.startswith('grid_')},
            mesh_vertices=_checked(arrays['mesh_vertices'], np.float32, 'mesh_vertices'),
            mesh_faces=_checked(arrays['mesh_faces'], np.int32, 'mesh_faces'))


def _checked(array: np.ndarray, dtype: type, name: str) -> np.ndarray:
    if array.dtype != dtype or array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f'{name} must be (N,3) {np.dtype(dtype)}, got {array.shape} '
                         f'{array.dtype}')
    return array

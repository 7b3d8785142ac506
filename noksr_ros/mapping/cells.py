"""
Points per density cell of one segment, stored in 4x4x4 bricks.

A cell key is `(brick << OFFSET_BITS) | offset`: the brick index packed by
`noksr_ros.mapping.density`, and the cell's offset inside its brick (`(x & 3) << 4 | (y & 3) << 2 |
z & 3`). Sorted keys therefore list cells brick by brick.

Why bricks rather than one sorted array of cell keys: a scan touches ~100k cells spread over most
segments, and both the binary searches into arrays of millions of keys and the O(cells) merge of
every touched segment per scan are bound by memory latency (tens of ms per scan on two cores).
With bricks, a lookup is a search among the segment's few thousand brick keys (cache-resident)
plus one gather, and an update is an in-place add; only new bricks are inserted. The sorted
`(keys, counts)` form is still what is persisted (`to_cells` / `from_cells`).
"""

from __future__ import annotations

import numpy as np

OFFSET_BITS = 6  # 4 x 4 x 4 cells per brick
BRICK_CELLS = 1 << OFFSET_BITS
# Counts are uint8 (one byte per cell of an occupied brick) until a cell passes 255 points,
# then uint16: caps up to 65535 points per cell.
_MAX_COUNT = 65535
_GROWTH = 1.5


class CellCounts:
    """Sparse counts of points per cell: sorted brick keys -> rows of a pool of bricks."""

    def __init__(self) -> None:
        """Create an empty table."""
        self.brick_keys = np.zeros(0, dtype=np.int64)   # (B,) sorted unique
        self.brick_slots = np.zeros(0, dtype=np.int64)  # (B,) pool row of each brick
        self._pool = np.zeros((0, BRICK_CELLS), dtype=np.uint8)  # rows in use + spare
        self._used = 0

    @classmethod
    def from_cells(cls, keys: np.ndarray, counts: np.ndarray) -> CellCounts:
        """Build from sorted unique cell keys (C,) int64 and their counts (C,) in [1, 65535]."""
        keys, counts = np.asarray(keys, dtype=np.int64), np.asarray(counts)
        if keys.shape != counts.shape or keys.ndim != 1:
            raise ValueError(f'cell keys {keys.shape} and counts {counts.shape} must be (C,)')
        if len(keys) and (np.any(np.diff(keys) <= 0) or keys[0] < 0):
            raise ValueError('cell keys must be sorted, unique and non-negative')
        if len(counts) and (counts.min() < 1 or counts.max() > _MAX_COUNT):
            raise ValueError(f'cell counts must be in [1, {_MAX_COUNT}]')
        table = cls()
        bricks = keys >> OFFSET_BITS
        table.brick_keys, row = np.unique(bricks, return_inverse=True)
        table.brick_slots = np.arange(len(table.brick_keys), dtype=np.int64)
        wide = len(counts) and counts.max() > np.iinfo(np.uint8).max
        table._pool = np.zeros((len(table.brick_keys), BRICK_CELLS),
                               dtype=np.uint16 if wide else np.uint8)
        table._pool[row, keys & (BRICK_CELLS - 1)] = counts
        table._used = len(table.brick_keys)
        return table

    def to_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique keys (C,) int64 of the occupied cells and their counts (C,) int32."""
        rows = self._pool[self.brick_slots]  # (B, 64) in key order
        occupied = np.flatnonzero(rows)
        keys = (self.brick_keys[occupied >> OFFSET_BITS] << OFFSET_BITS) | (
            occupied & (BRICK_CELLS - 1))
        return keys, rows.reshape(-1)[occupied].astype(np.int32)

    def lookup(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts (R,) int64 of cell keys (R,) int64, and where they live (-1: no brick yet)."""
        if len(self.brick_keys) == 0:
            return np.zeros(len(cells), dtype=np.int64), np.full(len(cells), -1, dtype=np.int64)
        bricks = cells >> OFFSET_BITS
        pos = np.searchsorted(self.brick_keys, bricks)
        np.minimum(pos, len(self.brick_keys) - 1, out=pos)
        found = self.brick_keys[pos] == bricks
        where = (self.brick_slots[pos] << OFFSET_BITS) | (cells & (BRICK_CELLS - 1))
        counts = np.where(found, self._pool.reshape(-1)[where], 0)  # misses read a valid row
        return counts, np.where(found, where, -1)

    def add(self, cells: np.ndarray, added: np.ndarray, where: np.ndarray) -> None:
        """Count `added` (R,) more points in `cells` (R,) unique; `where` from `lookup`."""
        missing = where < 0
        if missing.any():
            where = where.copy()
            where[missing] = self._place(cells[missing])
        total = self._pool.reshape(-1)[where] + added
        if len(total) and total.max() > np.iinfo(self._pool.dtype).max:
            self._pool = self._pool.astype(np.uint16)  # a cap above 255
        self._pool.reshape(-1)[where] = total

    def _place(self, cells: np.ndarray) -> np.ndarray:
        """Allocate bricks for `cells` (none of which has one); return their pool positions."""
        bricks = cells >> OFFSET_BITS
        new, row = np.unique(bricks, return_inverse=True)
        slots = self._allocate(len(new))
        at = np.searchsorted(self.brick_keys, new)
        self.brick_keys = np.insert(self.brick_keys, at, new)
        self.brick_slots = np.insert(self.brick_slots, at, slots)
        return (slots[row] << OFFSET_BITS) | (cells & (BRICK_CELLS - 1))

    def _allocate(self, n: int) -> np.ndarray:
        """Pool rows for n new bricks (zeroed), growing the pool geometrically."""
        if self._used + n > len(self._pool):
            capacity = max(self._used + n, int(len(self._pool) * _GROWTH), 16)
            pool = np.zeros((capacity, BRICK_CELLS), dtype=self._pool.dtype)
            pool[:self._used] = self._pool[:self._used]
            self._pool = pool
        slots = np.arange(self._used, self._used + n, dtype=np.int64)
        self._used += n
        return slots

    @property
    def num_bricks(self) -> int:
        """Bricks holding at least one point."""
        return len(self.brick_keys)

    def nbytes(self) -> int:
        """Bytes held, spare pool rows included."""
        return int(self.brick_keys.nbytes + self.brick_slots.nbytes + self._pool.nbytes)

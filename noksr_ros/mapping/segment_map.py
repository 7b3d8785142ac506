"""
SegmentMap: accumulated points cut into serialization-keyed cubes, with dirty bits and eviction.

`integrate` adds one scan of map-local (N,3) float32 points and normals: `density.plan_scan` sorts
it into runs of equal density cells grouped by segment, a `searchsorted` in each touched
segment's sorted cell keys counts the points of earlier scans, and a point is kept while its cell
holds fewer than `max_points_per_cell` points (the first points win). Cost: O(points in the scan +
cells of the touched segments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np

from noksr_ros.config import MappingConfig
from noksr_ros.mapping.density import cell_layout, plan_scan
from noksr_ros.mapping.keys import (
    check_curve,
    check_size,
    in_box,
    key_from_ijk,
    neighbour_keys,
    segment_bounds,
)
from noksr_ros.mapping.segment import CONSUMERS, Segment, check_consumer
from noksr_ros.mapping.store import SegmentStore, StoreMeta


@dataclass(frozen=True)
class MapStats:
    """Counters of a SegmentMap (`dirty` counts in-memory segments per consumer)."""

    segments_in_memory: int
    segments_in_store: int
    segments_evicted: int
    dirty: dict[str, int] = field(default_factory=dict)
    points_in_memory: int = 0
    bytes_in_memory: int = 0
    points_integrated: int = 0
    points_capped: int = 0
    points_dropped_nonfinite: int = 0


def _as_rows(array: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f'{name} must have shape (N, 3), got {arr.shape}')
    if arr.dtype.kind != 'f':
        raise ValueError(f'{name} must be float32 (or float64), got dtype {arr.dtype}')
    return arr.astype(np.float32, copy=False)


class SegmentMap:
    """
    Points of the map-local frame in segment cubes keyed by serialization code.

    Segments live in memory until `evict_far` writes them to the `store`; any access by key
    (`get`, `integrate`, `gather_halo`) brings an evicted segment back transparently.
    """

    def __init__(self, segment_size_m: float, cell_size_m: float, max_points_per_cell: int,
                 curve: str = 'z', store: SegmentStore | None = None,
                 origin_m: np.ndarray | None = None) -> None:
        """
        Create an empty map, or resume the one in `store`.

        `origin_m` (3,) float64 is the map-frame position of the map-local origin; None: the
        store's origin if it has one, else zeros. A store written with other settings raises
        StoreError.
        """
        self._size = check_size(segment_size_m, 'segment_size_m')
        self._cell = check_size(cell_size_m, 'cell_size_m')
        if isinstance(max_points_per_cell, bool) or not isinstance(
                max_points_per_cell, (int, np.integer)) or not 1 <= max_points_per_cell <= 65535:
            raise ValueError(f'max_points_per_cell must be an integer in [1, 65535], '
                             f'got {max_points_per_cell!r}')
        self._cap = int(max_points_per_cell)
        self._curve = check_curve(curve)
        self._layout = cell_layout(self._size, self._cell)
        self._store = store
        self._origin = self._resolve_origin(origin_m)
        if store is not None:
            store.bind(StoreMeta(tuple(self._origin.tolist()), self._size, self._cell, curve))
        self._segments: dict[int, Segment] = {}
        self._counters = dict.fromkeys(('integrated', 'capped', 'nonfinite'), 0)
        if store is not None:  # resumed work: `dirty_keys` sees loaded segments only
            self.ensure_loaded(store.read_pending())

    @classmethod
    def from_config(cls, cfg: MappingConfig, origin_m: np.ndarray | None = None) -> SegmentMap:
        """Build from the `mapping` config section (a store when `store_dir` is set)."""
        store = SegmentStore(cfg.store_dir) if cfg.store_dir else None
        return cls(cfg.segment_size_m, cfg.cell_size_m, cfg.max_points_per_cell, cfg.curve,
                   store, origin_m)

    def _resolve_origin(self, origin_m: np.ndarray | None) -> np.ndarray:
        if origin_m is None:
            meta = self._store.read_meta() if self._store is not None else None
            origin_m = meta.origin_m if meta is not None else (0.0, 0.0, 0.0)
        origin = np.asarray(origin_m, dtype=np.float64).reshape(-1)
        if origin.shape != (3,) or not np.isfinite(origin).all():
            raise ValueError(f'origin_m must be 3 finite numbers, got {origin_m!r}')
        return origin

    segment_size_m = property(lambda self: self._size, doc='Edge of a segment cube (m).')
    cell_size_m = property(lambda self: self._cell, doc='Edge of a density cell (m).')
    max_points_per_cell = property(lambda self: self._cap, doc='Density cap per cell.')
    curve = property(lambda self: self._curve, doc="Curve of the keys: 'z' or 'hilbert'.")
    store = property(lambda self: self._store, doc='The segment store, or None.')
    origin_m = property(lambda self: self._origin.copy(),
                        doc='(3,) float64 map-frame position of the map-local origin.')

    def integrate(self, points_m: np.ndarray, normals: np.ndarray, stamp_s: float) -> set[int]:
        """
        Add one scan; return the keys of the segments that received points.

        Args:
            points_m: (N,3) float32 (float64 is converted) map-local points.
            normals: (N,3) float32 unit normals of `points_m`.
            stamp_s: scan time, recorded in the changed segments.

        Rows with a NaN or Inf are dropped and counted in `stats()`. Changed segments get all
        dirty bits set and their revision bumped.

        """
        if not math.isfinite(stamp_s):
            raise ValueError(f'stamp_s must be finite, got {stamp_s!r}')
        points, normals = self._clean_scan(points_m, normals)
        if len(points) == 0:
            return set()
        plan = plan_scan(points, self._size, self._cell, self._curve, self._layout)
        keys = key_from_ijk(plan.group_ijk, self._curve).tolist()
        segments = [self._segment_for_update(k, ijk)
                    for k, ijk in zip(keys, plan.group_ijk, strict=True)]
        bounds = plan.group_bounds()
        lookups = [s.lookup_cells(plan.run_cell[r0:r1])
                   for s, (r0, r1) in zip(segments, bounds, strict=True)]
        existing = np.concatenate([counts for counts, _ in lookups])
        keep = plan.keep_mask(existing, self._cap)
        kept = plan.order[keep]
        self._counters['integrated'] += len(kept)
        self._counters['capped'] += len(keep) - len(kept)
        kept_points, kept_normals = points.take(kept, axis=0), normals.take(kept, axis=0)
        added = plan.added_per_run(existing, self._cap)
        kept_before = np.concatenate([[0], np.cumsum(keep)])[plan.run_start[plan.group_run]]
        touched = set()
        for g, (segment, (r0, r1), (_, where)) in enumerate(
                zip(segments, bounds, lookups, strict=True)):
            c0, c1 = kept_before[g], kept_before[g + 1]
            if c1 > c0:  # a segment whose cells are all full does not change
                segment.add_to_cells(plan.run_cell[r0:r1], added[r0:r1], where)
                self._add_points(segment, kept_points[c0:c1], kept_normals[c0:c1], stamp_s)
                touched.add(segment.key)
        return touched

    def full_cells(self, points_m: np.ndarray) -> np.ndarray:
        """
        (N,) bool: the point's density cell already holds `max_points_per_cell` points.

        `integrate` drops such points whatever else the scan holds, so the caller may skip work on
        them (their normals). Segments only in the store count as empty (nothing is loaded), as do
        non-finite rows and scans outside the key space (`integrate` reports those).
        """
        points = np.asarray(points_m, np.float32).reshape(-1, 3)
        full = np.zeros(len(points), dtype=bool)
        finite = np.flatnonzero(np.isfinite(points).all(axis=1))
        if len(finite) == 0 or not self._segments:
            return full
        try:
            plan = plan_scan(points[finite], self._size, self._cell, self._curve, self._layout)
        except ValueError:
            return full
        existing = np.zeros(len(plan.run_cell), dtype=np.int64)
        for key, (r0, r1) in zip(key_from_ijk(plan.group_ijk, self._curve).tolist(),
                                 plan.group_bounds(), strict=True):
            if key in self._segments:
                existing[r0:r1] = self._segments[key].lookup_cells(plan.run_cell[r0:r1])[0]
        full[finite] = plan.full_points(existing, self._cap)
        return full

    def _add_points(self, segment: Segment, points: np.ndarray, normals: np.ndarray,
                    stamp_s: float) -> None:
        segment.append(points, normals)
        segment.mark_dirty()
        segment.revision += 1
        segment.last_update_stamp_s = float(stamp_s)
        self._segments[segment.key] = segment

    def _clean_scan(self, points_m: np.ndarray,
                    normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points, normals = _as_rows(points_m, 'points_m'), _as_rows(normals, 'normals')
        if len(points) != len(normals):
            raise ValueError(f'points_m and normals differ in length: {len(points)} and '
                             f'{len(normals)}')
        if not (np.isfinite(points.reshape(-1)).all() and np.isfinite(normals.reshape(-1)).all()):
            finite = np.isfinite(points).all(axis=1) & np.isfinite(normals).all(axis=1)
            self._counters['nonfinite'] += int(len(finite) - finite.sum())
            points, normals = points[finite], normals[finite]
        return points, normals

    def _segment_for_update(self, key: int, ijk: np.ndarray) -> Segment:
        if key in self._segments:
            return self._segments[key]
        if self._store is not None and self._store.contains(key):
            return self._load(key)
        return Segment(key=key, ijk=np.asarray(ijk, dtype=np.int64).copy())

    def _load(self, key: int) -> Segment:
        segment = self._store.load(key)
        self._segments[key] = segment
        return segment

    def __contains__(self, key: int) -> bool:
        """Whether segment `key` exists, in memory or in the store."""
        return key in self._segments or (self._store is not None and self._store.contains(key))

    def get(self, key: int) -> Segment:
        """Segment `key`, loaded back from the store if it was evicted; KeyError if unknown."""
        if key in self._segments:
            return self._segments[key]
        if self._store is not None and self._store.contains(key):
            return self._load(key)
        raise KeyError(f'no segment with key {key}')

    def peek(self, key: int) -> Segment:
        """Segment `key` for reading only: an evicted one is read from the store but not kept."""
        if key in self._segments:
            return self._segments[key]
        if self._store is not None and self._store.contains(key):
            return self._store.load(key)
        raise KeyError(f'no segment with key {key}')

    def touch(self, key: int, ijk: np.ndarray, stamp_s: float) -> Segment:
        """
        Mark segment `key` for reconstruction because its halo changed; create it if needed.

        A segment with no points of its own still owns lattice corners next to its neighbours'
        surfaces, so it must exist for their meshes to close across the shared face.
        """
        segment = self._segment_for_update(key, ijk)
        self._segments[key] = segment
        segment.dirty['reconstruct'] = segment.dirty['persist'] = True  # a crash must keep it
        segment.revision += 1
        segment.last_update_stamp_s = max(segment.last_update_stamp_s, float(stamp_s))
        return segment

    def ensure_loaded(self, keys: list[int] | set[int]) -> list[int]:
        """Bring the given segments into memory; return the keys that were read from the store."""
        loaded = [k for k in sorted(keys) if k not in self._segments]
        for key in loaded:
            self.get(key)
        return loaded

    def keys(self) -> list[int]:
        """Sorted keys of all segments, in memory or in the store."""
        stored = self._store.keys() if self._store is not None else []
        return sorted(set(self._segments) | set(stored))

    def loaded_keys(self) -> list[int]:
        """Sorted keys of the segments in memory."""
        return sorted(self._segments)

    def neighbours(self, key: int, rings: int = 1) -> list[int]:
        """Sorted keys of existing segments around `key` (26-neighbourhood for rings=1)."""
        return [k for k in neighbour_keys(key, self._curve, rings) if k in self]

    def gather_halo(self, key: int, halo_m: float) -> tuple[np.ndarray, np.ndarray]:
        """
        Points (M,3) float32 and normals (M,3) float32 of neighbours near segment `key`.

        A point qualifies if it lies in the segment's cube grown by `halo_m` on every side
        (per-axis distance); the segment's own points are not included. Neighbours are visited
        in key order, points in storage order, so the result is deterministic. Evicted
        neighbours are loaded back into memory (the next `evict_far` drops them again).
        """
        if not (math.isfinite(halo_m) and halo_m >= 0):
            raise ValueError(f'halo_m must be finite and >= 0, got {halo_m!r}')
        lo, hi = segment_bounds(key, self._size, self._curve)
        lo, hi = lo - halo_m, hi + halo_m
        parts_p, parts_n = [np.zeros((0, 3), np.float32)], [np.zeros((0, 3), np.float32)]
        if halo_m > 0:
            for nk in self.neighbours(key, rings=max(1, math.ceil(halo_m / self._size))):
                segment = self.get(nk)
                inside = in_box(segment.points, lo, hi)
                parts_p.append(segment.points[inside])
                parts_n.append(segment.normals[inside])
        return np.concatenate(parts_p), np.concatenate(parts_n)

    def dirty_keys(self, consumer: str) -> list[int]:
        """Sorted keys of in-memory segments whose `consumer` bit is set."""
        check_consumer(consumer)
        return sorted(k for k, s in self._segments.items() if s.dirty.get(consumer, False))

    def mark_clean(self, key: int, consumer: str, revision: int | None = None) -> bool:
        """
        Clear `consumer`'s bit of segment `key`; return whether it was cleared.

        With `revision`, the bit is cleared only if the segment is still at that revision, so a
        consumer that worked on an older copy does not hide points added meanwhile.
        """
        check_consumer(consumer)
        segment = self.get(key)
        if revision is not None and segment.revision != revision:
            return False
        segment.dirty[consumer] = False
        return True

    def _persist(self, segment: Segment) -> None:
        was_dirty = segment.dirty.get('persist', True)
        segment.dirty['persist'] = False
        try:
            self._store.save(segment)
        except BaseException:
            segment.dirty['persist'] = was_dirty
            raise

    def evict_far(self, center_m: np.ndarray, keep_radius_m: float,
                  keep_dirty: tuple[str, ...] = ('reconstruct',)) -> list[int]:
        """
        Write segments farther than `keep_radius_m` from `center_m` to the store, drop them.

        Distance: 3D, from `center_m` (3,) map-local metres to each segment cube's centre.
        Segments with a `keep_dirty` consumer bit set stay in memory: `dirty_keys` only sees
        loaded segments, so evicting pending work would lose it. Returns the evicted keys
        (sorted). Without a store nothing is evicted.
        """
        center = np.asarray(center_m, dtype=np.float64).reshape(-1)
        if center.shape != (3,) or not np.isfinite(center).all():
            raise ValueError(f'center_m must be 3 finite numbers, got {center_m!r}')
        if not (math.isfinite(keep_radius_m) and keep_radius_m >= 0):
            raise ValueError(f'keep_radius_m must be finite and >= 0, got {keep_radius_m!r}')
        if self._store is None or not self._segments:
            return []
        keys = np.array(sorted(self._segments), dtype=np.int64)
        ijk = np.stack([self._segments[int(k)].ijk for k in keys])
        dist = np.linalg.norm((ijk + 0.5) * self._size - center, axis=1)
        for consumer in keep_dirty:
            check_consumer(consumer)
        evicted = [int(k) for k in keys[dist > keep_radius_m]
                   if not any(self._segments[int(k)].dirty.get(c, False) for c in keep_dirty)]
        for key in evicted:
            segment = self._segments[key]
            if segment.dirty.get('persist', True) or not self._store.contains(key):
                self._persist(segment)
            del self._segments[key]
        return evicted

    def flush(self) -> list[int]:
        """Write every in-memory segment whose 'persist' bit is set; return their keys."""
        if self._store is None:
            raise ValueError('flush needs a SegmentMap created with a store')
        saved = self.dirty_keys('persist')
        for key in saved:
            self._persist(self._segments[key])
        return saved

    def checkpoint(self) -> list[int]:
        """
        Make the store a resumable copy of the map: flush, and record the pending work.

        The pending index is widened before the segment writes and narrowed after them, so a
        crash at any point leaves an index that covers every stored segment still dirty for
        'reconstruct'. Returns the keys written.
        """
        if self._store is None:
            raise ValueError('checkpoint needs a SegmentMap created with a store')
        pending = set(self.dirty_keys('reconstruct'))
        self._store.write_pending(pending | set(self._store.read_pending()))
        saved = self.flush()
        self._store.write_pending(pending)
        return saved

    def stats(self) -> MapStats:
        """Segment, point and byte counts (see `MapStats`)."""
        stored = set(self._store.keys()) if self._store is not None else set()
        return MapStats(
            segments_in_memory=len(self._segments), segments_in_store=len(stored),
            segments_evicted=len(stored - set(self._segments)),
            dirty={c: len(self.dirty_keys(c)) for c in CONSUMERS},
            points_in_memory=sum(s.num_points for s in self._segments.values()),
            bytes_in_memory=sum(s.nbytes() for s in self._segments.values()),
            points_integrated=self._counters['integrated'],
            points_capped=self._counters['capped'],
            points_dropped_nonfinite=self._counters['nonfinite'])

    def clear(self) -> None:
        """Forget every segment, in memory and in the store, and reset the counters."""
        if self._store is not None:
            for key in self._store.keys():
                self._store.delete(key)
        self._segments.clear()
        self._counters = dict.fromkeys(self._counters, 0)

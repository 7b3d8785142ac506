"""Shared fixtures-by-function of the segment map and store tests."""

from pathlib import Path

import numpy as np

from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.mapping.store import SegmentStore

SIZE = 4.0   # segment edge (m), small so that tests cross many segments
CELL = 0.5   # density cell edge (m)
UP = np.array([0.0, 0.0, 1.0], dtype=np.float32)


def up_normals(n: int) -> np.ndarray:
    return np.tile(UP, (n, 1))


def random_points(n: int, seed: int, lo: float = -10.0, hi: float = 10.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, (n, 3)).astype(np.float32)


def make_map(tmp_path: Path | None = None, cap: int = 3, curve: str = 'z',
             origin_m=None) -> SegmentMap:
    store = SegmentStore(tmp_path / 'store') if tmp_path is not None else None
    return SegmentMap(SIZE, CELL, cap, curve=curve, store=store, origin_m=origin_m)


def reference_cap(scans: list[np.ndarray], cap: int) -> dict[tuple, list[tuple]]:
    """Brute force: per segment, the rows kept by a per-cell cap in input order."""
    counts: dict[tuple, int] = {}
    kept: dict[tuple, list[tuple]] = {}
    for points in scans:
        for p in points:
            pd = p.astype(np.float64)
            seg = tuple(np.floor(pd / SIZE).astype(int))
            local = np.clip(np.floor((pd - np.array(seg) * SIZE) / CELL), 0, SIZE / CELL - 1)
            cell = (seg, tuple(local.astype(int)))
            if counts.get(cell, 0) < cap:
                counts[cell] = counts.get(cell, 0) + 1
                kept.setdefault(seg, []).append(tuple(p))
    return kept


# --- keys ---------------------------------------------------------------------------------------

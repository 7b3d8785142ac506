"""
The global SDF lattice cut into segments: which corners a segment owns and reads.

Corners sit on one lattice in the map-local frame (position = ijk * voxel_size_m). A corner is
owned by the segment whose half-open cube contains it, so every corner value is computed exactly
once. A segment meshes the cubes whose lower corner it owns; those cubes also read the corners on
its +x/+y/+z faces, which belong to up to 7 neighbours. Adjacent meshes therefore use identical
values on their shared faces and share bit-identical border vertices: no cracks by construction.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from noksr_ros.mapping.keys import KEY_BIAS, ijk_from_key, key_from_ijk
from noksr_ros.meshing import active_corners_near_points

# Offsets of the neighbours whose corners a segment's cubes read (its + faces, edges, corner).
READ_OFFSETS = np.array([o for o in itertools.product((0, 1), repeat=3) if any(o)], np.int64)
# Offsets of the neighbours whose cubes read this segment's corners.
READER_OFFSETS = -READ_OFFSETS
# All 26 neighbours.
ALL_OFFSETS = np.array([o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)], np.int64)


def voxels_per_segment(segment_size_m: float, voxel_size_m: float) -> int:
    """Segment edge in voxels; the config guarantees it is a whole number."""
    n = segment_size_m / voxel_size_m
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(f'segment_size_m {segment_size_m} is not a whole multiple of '
                         f'voxel_size_m {voxel_size_m}')
    return int(round(n))


def corner_box(segment_ijk: np.ndarray, seg_vox: int) -> tuple[np.ndarray, np.ndarray]:
    """Half-open corner box [lo, hi) owned by the segment with index `segment_ijk` (3,)."""
    lo = np.asarray(segment_ijk, np.int64) * seg_vox
    return lo, lo + seg_vox


def active_corners(points: np.ndarray, voxel_size_m: float, dilation: int) -> np.ndarray:
    """
    (M,3) int64 unique corners of the voxels holding `points`, dilated by `dilation` voxels.

    A corner's activity depends only on the points within (dilation + 1) voxels of it, so a
    segment that sees its own points plus a halo at least that wide decides it exactly as a
    batch reconstruction of all points would.
    """
    pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    return active_corners_near_points(pts, voxel_size_m, dilation).numpy()


def owned(corners: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows of `corners` (M,3) inside the half-open box [lo, hi)."""
    mask = np.all((corners >= lo) & (corners < hi), axis=1)
    return corners[mask]


def face_corners(corners: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Boolean mask of `corners` in the closed box [lo, hi]: what a segment's cubes may read."""
    return np.all((corners >= lo) & (corners <= hi), axis=1)


def halo_segments(points: np.ndarray, segment_size_m: float, halo_m: float) -> np.ndarray:
    """
    (K,3) int64 unique indices of segments whose halo (cube grown by halo_m) holds a point.

    Used after integrating a scan: those segments' reconstructions depend on the new points.
    The unique steps work on segment keys (1-D `np.unique` is several times faster than `axis=0`
    on a 100k-point scan); indices beyond the key range (+-1M segments, thousands of km; the map
    rejects those points anyway) take the row-wise path.
    """
    if len(points) == 0:
        return np.zeros((0, 3), np.int64)
    scaled = np.asarray(points, np.float64) / segment_size_m
    ijk = np.floor(scaled).astype(np.int64)
    frac = (scaled - ijk) * segment_size_m
    low, high = frac < halo_m, (segment_size_m - frac) <= halo_m
    keyable = bool(np.all(np.abs(ijk) < KEY_BIAS - 1))
    unique = ((lambda a: ijk_from_key(np.unique(key_from_ijk(a)))) if keyable
              else (lambda a: np.unique(a, axis=0)))
    found = [unique(ijk)]
    for off in ALL_OFFSETS:
        mask = np.ones(len(ijk), bool)
        for axis, o in enumerate(off):
            if o < 0:
                mask &= low[:, axis]
            elif o > 0:
                mask &= high[:, axis]
        if mask.any():
            found.append(unique(ijk[mask]) + off)
    return np.unique(np.concatenate(found), axis=0)

"""
The map-local frame and segment keys.

Frames: the map is stored in a *map-local* frame, the map frame minus a float64 `origin_m` fixed
when the map is created (typically the first pose). Points are float32 in that frame, so they keep
sub-millimetre precision within a few kilometres of the origin even when the map frame itself is
georeferenced millions of metres away; float64 is used only for `origin_m`.

Segments: the segment of a point `p` is the integer cube `ijk = floor(p / segment_size_m)`
(computed in float64; int64, may be negative), half-open: it owns `[ijk * s, (ijk + 1) * s)` per
axis. Its key is the space-filling-curve code (z-order by default, or Hilbert) of `ijk + KEY_BIAS`
at `KEY_BITS` bits per axis. Keys are therefore ordered along the curve, nearby segments get
nearby keys, and a key prefix is an octree cell of segments.

Why a bias on the integer index rather than an offset on the coordinates: the curves need
non-negative integers, but the vehicle may drive in any direction from the origin. Adding
`2**20` to the *integer* `ijk` is exact and costs nothing, and it covers +-2**20 segments per axis
(+-13,000 km at 12.8 m). Shifting the *float* coordinates by a large positive offset instead (the
same 13,000 km) would leave float32 a resolution of about 1 m, destroying the geometry; with the
bias, coordinates stay small around the origin, where the vehicle is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noksr_ros import curves

KEY_BITS = 21
KEY_BIAS = 2 ** (KEY_BITS - 1)
CURVES = ('z', 'hilbert')


def check_curve(curve: str) -> str:
    """Return `curve` if it is one of `CURVES`, else raise ValueError."""
    if curve not in CURVES:
        raise ValueError(f'curve must be one of {CURVES}, got {curve!r}')
    return curve


def check_size(value: float, name: str) -> float:
    """Return `value` as a float if it is finite and > 0, else raise ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f'{name} must be a number, got {value!r}')
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f'{name} must be finite and > 0, got {value!r}')
    return float(value)


def to_map_local(points_map: np.ndarray, origin_m: np.ndarray) -> np.ndarray:
    """Map-frame points (N,3) (float64 preferred) -> map-local (N,3) float32."""
    local = np.asarray(points_map, dtype=np.float64) - np.asarray(origin_m, dtype=np.float64)
    return local.astype(np.float32)


def to_map_frame(points_local: np.ndarray, origin_m: np.ndarray) -> np.ndarray:
    """Map-local points (N,3) float32 -> map-frame (N,3) float64."""
    return np.asarray(points_local, dtype=np.float64) + np.asarray(origin_m, dtype=np.float64)


def segment_ijk(points: np.ndarray, segment_size_m: float) -> np.ndarray:
    """Integer segment coordinates (N,3) int64 of map-local points (N,3): floor(p / size)."""
    size = check_size(segment_size_m, 'segment_size_m')
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {pts.shape}')
    if not np.isfinite(pts).all():
        raise ValueError('points must be finite')
    return np.floor(pts / size).astype(np.int64)


def key_from_ijk(ijk: Any, curve: str = 'z') -> Any:
    """
    Key of segment `ijk`: an int for one (3,) index, an (N,) int64 array for (N,3) indices.

    Raises ValueError if an index is outside [-KEY_BIAS, KEY_BIAS) or `curve` is unknown.
    """
    check_curve(curve)
    arr = np.asarray(ijk)
    if arr.shape[-1:] != (3,) or arr.ndim > 2:
        raise ValueError(f'ijk must have shape (3,) or (N, 3), got {arr.shape}')
    if arr.dtype.kind not in 'iu':
        raise ValueError(f'ijk must be integers, got dtype {arr.dtype}')
    biased = arr.astype(np.int64) + KEY_BIAS
    if ((biased >> KEY_BITS) != 0).any():
        raise ValueError(f'ijk must be in [{-KEY_BIAS}, {KEY_BIAS}) per axis, got '
                         f'[{arr.min()}, {arr.max()}]: points too far from the map origin')
    order = 'hilbert' if curve == 'hilbert' else 'z'
    code = curves.encode(biased.reshape(-1, 3), order, KEY_BITS)
    return int(code[0]) if arr.ndim == 1 else code


def ijk_from_key(key: Any, curve: str = 'z') -> np.ndarray:
    """Segment index (3,) int64 of one key, or (N,3) int64 of an (N,) array of keys."""
    check_curve(curve)
    arr = np.asarray(key)
    if arr.ndim > 1:
        raise ValueError(f'key must be a scalar or 1-D, got shape {arr.shape}')
    order = 'hilbert' if curve == 'hilbert' else 'z'
    ijk = curves.decode(arr.reshape(-1), order, KEY_BITS) - KEY_BIAS
    return ijk[0] if arr.ndim == 0 else ijk


def segment_bounds(key: int, segment_size_m: float,
                   curve: str = 'z') -> tuple[np.ndarray, np.ndarray]:
    """Half-open cube `[lo_m, hi_m)` (two (3,) float64, map-local metres) of segment `key`."""
    size = check_size(segment_size_m, 'segment_size_m')
    ijk = ijk_from_key(key, curve).astype(np.float64)
    return ijk * size, (ijk + 1.0) * size


def segment_center(key: int, segment_size_m: float, curve: str = 'z') -> np.ndarray:
    """Centre (3,) float64 (map-local metres) of the cube of segment `key`."""
    lo, hi = segment_bounds(key, segment_size_m, curve)
    return 0.5 * (lo + hi)


def neighbour_offsets(rings: int = 1) -> np.ndarray:
    """Index offsets (M,3) int64 of the (2r+1)**3 - 1 segments around one, in raster order."""
    if isinstance(rings, bool) or not isinstance(rings, int) or rings < 1:
        raise ValueError(f'rings must be an integer >= 1, got {rings!r}')
    span = np.arange(-rings, rings + 1, dtype=np.int64)
    grid = np.stack(np.meshgrid(span, span, span, indexing='ij'), axis=-1).reshape(-1, 3)
    return grid[np.any(grid != 0, axis=1)]


def neighbour_keys(key: int, curve: str = 'z', rings: int = 1) -> list[int]:
    """
    Sorted keys of the segments around `key` (26 for rings=1), whether they exist or not.

    Indices beyond the key space (more than KEY_BIAS segments from the origin) are left out.
    """
    ijk = ijk_from_key(key, curve)[None, :] + neighbour_offsets(rings)
    inside = np.all((ijk >= -KEY_BIAS) & (ijk < KEY_BIAS), axis=1)
    return sorted(int(k) for k in key_from_ijk(ijk[inside], curve))


def in_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of `points` (N,3) inside the half-open box [lo, hi) (e.g. a segment's)."""
    inside = np.ones(len(points), dtype=bool)
    for a in range(3):  # per column: much faster than an axis=1 reduction of an (N,3) mask
        column = points[:, a]
        inside &= (column >= lo[a]) & (column < hi[a])
    return inside

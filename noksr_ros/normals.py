"""
Oriented normals for LiDAR points: kNN PCA, flipped toward the sensor, grazing rays dropped.

NoKSR takes points with unit normals. For LiDAR the normal of a point is the direction of least
variance of its k nearest neighbours (PCA), oriented toward the sensor that saw it; points whose
surface is hit at a grazing angle (normal nearly perpendicular to the ray) get unreliable normals
and are dropped, as in the NoKSR CARLA setting.

Speed: the neighbour search is scipy's cKDTree, queried in the tree's own (spatially coherent)
point order and in chunks to bound memory. The covariance is built from six first/second moment
sums over (chunk, k) coordinate arrays, and the smallest eigenvector of each 3x3 covariance comes
from the closed-form (trigonometric) eigenvalue solution plus a cross product, which is ~20x faster
than batched `np.linalg.eigh`; `solver='eigh'` keeps the LAPACK path as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from noksr_ros import kdtree_query

# Points per neighbour-search chunk: (chunk, knn) index/distance arrays stay ~10 MB.
_CHUNK_POINTS = 32768
# A covariance is degenerate when its middle eigenvalue is this small relative to the largest:
# the neighbours are collinear (or identical) and the normal direction is undetermined.
_DEGENERATE_RATIO = 1e-6
_SOLVERS = ('closed_form', 'eigh')


@dataclass(frozen=True)
class NormalsResult:
    """
    Normals of the kept points.

    `normals` is (M,3) float32, unit length, in the frame of the input points, oriented toward the
    sensor; `keep` is the (N,) bool mask over the input points, with M == keep.sum(), so
    `points[keep]` are the points the normals belong to.
    """

    normals: np.ndarray
    keep: np.ndarray


def estimate_normals(points: np.ndarray, sensor_origins: np.ndarray, knn: int = 24,
                     max_incidence_deg: float = 85.0, workers: int = -1, *,
                     max_neighbor_dist_m: float | None = None,
                     solver: str = 'closed_form',
                     wanted: np.ndarray | None = None) -> NormalsResult:
    """
    Estimate unit normals by kNN PCA and orient them toward the sensor origins.

    Args:
        points: (N,3) float points (float32 preferred), any frame.
        sensor_origins: (N,3) per-point sensor positions or one (3,) position, same frame.
        knn: neighbours per point, the point itself included (>= 3).
        max_incidence_deg: points whose normal makes a larger angle with the ray back to the
            sensor are dropped (grazing hits), in (0, 90].
        workers: threads for the kNN query (-1: all cores).
        max_neighbor_dist_m: neighbours farther than this are ignored (None: no limit); points
            left with fewer than 3 neighbours are dropped.
        solver: 'closed_form' (fast) or 'eigh' (`np.linalg.eigh`, the reference).
        wanted: optional (N,) bool; only these points get normals (the others are dropped), while
            every point still serves as a neighbour, so a wanted point's normal is the one it gets
            without the mask.

    Returns:
        NormalsResult; rows with NaN/inf coordinates, degenerate (collinear) neighbourhoods, too
        few neighbours, points at the sensor origin and grazing hits are dropped.
    """
    pts = _check_points(points)
    origins = _check_origins(sensor_origins, len(pts))
    _check_params(knn, max_incidence_deg, max_neighbor_dist_m, solver)
    keep = np.all(np.isfinite(pts), axis=1)
    if wanted is not None:
        wanted = np.asarray(wanted, dtype=bool)
        if wanted.shape != (len(pts),):
            raise ValueError(f'wanted must be a ({len(pts)},) bool mask, got {wanted.shape}')
    normals = np.zeros((len(pts), 3), dtype=np.float32)
    finite_idx = np.flatnonzero(keep)
    if len(finite_idx) >= 3:
        at = None if wanted is None else np.flatnonzero(wanted[finite_idx])
        valid, fin_normals = _pca_normals(pts[finite_idx], knn, workers, max_neighbor_dist_m,
                                          solver, at=at)
        keep[finite_idx] = valid
        normals[finite_idx] = fin_normals
    else:
        keep[:] = False
    rays = (origins if origins.ndim == 1 else origins[keep]) - pts[keep].astype(np.float64)
    oriented, facing = _orient(normals[keep], rays, max_incidence_deg)
    keep[np.flatnonzero(keep)[~facing]] = False
    return NormalsResult(normals=oriented[facing], keep=keep)


def estimate_normals_scan(points_sensor: np.ndarray, knn: int = 24,
                          max_incidence_deg: float = 85.0, workers: int = -1, *,
                          max_neighbor_dist_m: float | None = None,
                          solver: str = 'closed_form',
                          wanted: np.ndarray | None = None) -> NormalsResult:
    """
    Normals of one scan in its sensor frame, where the sensor is at (0, 0, 0).

    `points_sensor` is (N,3) float32 metres in the sensor frame; the other arguments are those of
    `estimate_normals`. The normals are in the sensor frame too: rotate them with the scan.
    """
    return estimate_normals(points_sensor, np.zeros(3), knn, max_incidence_deg, workers,
                            max_neighbor_dist_m=max_neighbor_dist_m, solver=solver,
                            wanted=wanted)


def refine_normals(points: np.ndarray, normals: np.ndarray, knn: int = 24,
                   workers: int = -1, share_cell_m: float = 0.0) -> np.ndarray:
    """
    Re-estimate (N,3) unit normals by kNN PCA over accumulated points, keeping each one's side.

    One scan's normals of sparse scan lines (far ground rings, distant facades) come from nearly
    collinear neighbours and tilt badly; the points of several scans together constrain the plane.
    Each new normal is flipped to the side of the given sensor-facing direction (a scan's normal
    or the ray back to the sensor, see `ingest`); where the accumulated neighbourhood is
    degenerate, the given direction is kept. `knn` 0 returns the
    normals unchanged. With `share_cell_m` > 0 one PCA per cube cell of that edge (cells counted
    from the points' minimum; the PCA at the cell's first point) serves all its points, each
    still flipped to its own side. Returns (N,3) float32.
    """
    nrm = np.asarray(normals, np.float32)
    pts = _check_points(points)
    if nrm.shape != pts.shape:
        raise ValueError(f'normals must have the shape of points {pts.shape}, got {nrm.shape}')
    if knn == 0 or len(pts) < 3:
        return nrm
    _check_params(knn, 90.0, None, 'closed_form')
    if share_cell_m > 0.0:
        first, inverse = _cell_representatives(pts, share_cell_m)
        valid, new = _pca_normals(pts, knn, workers, None, 'closed_form', at=first)
        valid, new = valid[first][inverse], new[first][inverse]
    else:
        valid, new = _pca_normals(pts, knn, workers, None, 'closed_form')
    flip = np.einsum('ij,ij->i', new, nrm) < 0.0
    new[flip] *= -1.0
    return np.where(valid[:, None], new, nrm).astype(np.float32)


def _cell_representatives(pts: np.ndarray, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each occupied cell, (N,) index of each point's cell in that list)."""
    cells = np.floor((pts - pts.min(axis=0)) / cell_m).astype(np.int64)
    dims = cells.max(axis=0) + 1
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _check_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {pts.shape}')
    if not np.issubdtype(pts.dtype, np.floating):
        pts = pts.astype(np.float32)
    return pts


def _check_origins(sensor_origins: np.ndarray, n: int) -> np.ndarray:
    origins = np.asarray(sensor_origins, dtype=np.float64)
    if origins.shape != (3,) and origins.shape != (n, 3):
        raise ValueError(f'sensor_origins must have shape (3,) or ({n}, 3), got {origins.shape}')
    if not np.all(np.isfinite(origins)):
        raise ValueError('sensor_origins must be finite')
    return origins


def _check_params(knn: int, max_incidence_deg: float, max_neighbor_dist_m: float | None,
                  solver: str) -> None:
    if int(knn) != knn or knn < 3:
        raise ValueError(f'knn must be an integer >= 3, got {knn}')
    if not 0.0 < max_incidence_deg <= 90.0:
        raise ValueError(f'max_incidence_deg must be in (0, 90], got {max_incidence_deg}')
    if max_neighbor_dist_m is not None and not max_neighbor_dist_m > 0.0:
        raise ValueError(f'max_neighbor_dist_m must be > 0 or None, got {max_neighbor_dist_m}')
    if solver not in _SOLVERS:
        raise ValueError(f'solver must be one of {_SOLVERS}, got {solver!r}')


def _pca_normals(pts: np.ndarray, knn: int, workers: int, max_dist_m: float | None,
                 solver: str, at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """
    Unoriented PCA normals of finite (N,3) points: ((N,) bool valid, (N,3) float32 normals).

    `at` (row indices) limits the work to those points (the neighbours still come from
    all); the other rows are returned invalid.
    """
    n = len(pts)
    k = min(int(knn), n)
    # float32 relative to the cloud's centre: exact enough at any distance from the frame origin.
    local = (pts - pts.mean(axis=0, dtype=np.float64)).astype(np.float32)
    tree = cKDTree(local, leafsize=16, balanced_tree=False, compact_nodes=False)
    # Querying in the tree's leaf order keeps neighbouring queries on the same tree nodes.
    order = tree.indices
    if at is not None:
        wanted = np.zeros(n, dtype=bool)
        wanted[at] = True
        order = order[wanted[order]]
    coords = [np.ascontiguousarray(local[:, axis]) for axis in range(3)]
    valid = np.zeros(n, dtype=bool)
    normals = np.zeros((n, 3), dtype=np.float32)
    upper = np.inf if max_dist_m is None else float(max_dist_m)
    for start in range(0, len(order), _CHUNK_POINTS):
        rows = order[start:start + _CHUNK_POINTS]
        dist, idx = kdtree_query.query(tree, local[rows], workers, k=k,
                                       distance_upper_bound=upper)
        cov, count = _covariances(coords, rows, idx, dist if max_dist_m is not None else None)
        ok, nrm = _smallest_eigenvectors(cov) if solver == 'closed_form' else _eigh_normals(cov)
        valid[rows] = ok & (count >= 3)
        normals[rows] = nrm
    return valid, normals


def _covariances(coords: list[np.ndarray], rows: np.ndarray, idx: np.ndarray,
                 dist: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """
    Neighbourhood covariances (C,6) float64 [xx, yy, zz, xy, xz, yz] and neighbour counts (C,).

    Offsets are taken from the query point, not the origin, so float32 keeps full precision far
    from the frame origin; `dist` (C,k) marks missing neighbours with inf (radius-limited query).
    """
    if dist is not None:
        missing = ~np.isfinite(dist)
        idx = np.where(missing, rows[:, None], idx)  # a missing neighbour adds a zero offset
        count = (~missing).sum(axis=1).astype(np.float64)
    else:
        count = np.full(len(rows), idx.shape[1], dtype=np.float64)
    offsets = [c[idx] - c[rows][:, None] for c in coords]  # three (C,k) float32
    ones = np.ones(idx.shape[1], dtype=np.float32)
    first = np.stack([o @ ones for o in offsets], axis=1).astype(np.float64)
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    second = np.stack([np.einsum('ij,ij->i', offsets[a], offsets[b]) for a, b in pairs], axis=1)
    inv = 1.0 / np.maximum(count, 1.0)
    mean = first * inv[:, None]
    cov = second.astype(np.float64) * inv[:, None]
    for col, (a, b) in enumerate(pairs):
        cov[:, col] -= mean[:, a] * mean[:, b]
    return cov, count


def _smallest_eigenvectors(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Closed-form unit eigenvector of the smallest eigenvalue of each (C,6) packed covariance.

    Eigenvalues from the trigonometric solution of the characteristic cubic; the eigenvector is
    the largest cross product of two rows of (A - lambda_min I). Returns ((C,) bool
    non-degenerate, (C,3) float32).
    """
    xx, yy, zz, xy, xz, yz = cov.T
    q = (xx + yy + zz) / 3.0
    p1 = xy * xy + xz * xz + yz * yz
    p2 = (xx - q) ** 2 + (yy - q) ** 2 + (zz - q) ** 2 + 2.0 * p1
    p = np.sqrt(p2 / 6.0)
    safe_p = np.where(p > 0.0, p, 1.0)
    bxx, byy, bzz = (xx - q) / safe_p, (yy - q) / safe_p, (zz - q) / safe_p
    bxy, bxz, byz = xy / safe_p, xz / safe_p, yz / safe_p
    det_b = (bxx * (byy * bzz - byz * byz) - bxy * (bxy * bzz - byz * bxz)
             + bxz * (bxy * byz - byy * bxz))
    phi = np.arccos(np.clip(det_b / 2.0, -1.0, 1.0)) / 3.0
    lam_max = q + 2.0 * p * np.cos(phi)
    lam_min = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    lam_mid = 3.0 * q - lam_max - lam_min
    vec, length = _null_vector(xx - lam_min, yy - lam_min, zz - lam_min, xy, xz, yz)
    ok = (p > 0.0) & (lam_mid - lam_min > _DEGENERATE_RATIO * lam_max) & (length > 0.0)
    vec /= np.where(length > 0.0, length, 1.0)[:, None]
    return ok, vec.astype(np.float32)


def _null_vector(mxx: np.ndarray, myy: np.ndarray, mzz: np.ndarray, mxy: np.ndarray,
                 mxz: np.ndarray, myz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Null direction of symmetric rank-2 matrices M (C,) entries: ((C,3) vector, (C,) norm).

    Each cross product of two rows of M is orthogonal to both, hence along the null vector; the
    longest of the three is the best conditioned.
    """
    rows = ((mxx, mxy, mxz), (mxy, myy, myz), (mxz, myz, mzz))
    best = np.zeros((len(mxx), 3))
    best_sq = np.full(len(mxx), -1.0)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        (ax, ay, az), (bx, by, bz) = rows[a], rows[b]
        cand = np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], axis=1)
        sq = np.einsum('ij,ij->i', cand, cand)
        better = sq > best_sq
        best[better] = cand[better]
        best_sq = np.where(better, sq, best_sq)
    return best, np.sqrt(best_sq)


def _eigh_normals(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference solver: batched `np.linalg.eigh` on (C,6) packed covariances, same outputs."""
    xx, yy, zz, xy, xz, yz = cov.T
    mats = np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1),
                     np.stack([xz, yz, zz], -1)], axis=1)
    vals, vecs = np.linalg.eigh(mats)
    ok = (vals[:, 2] > 0.0) & (vals[:, 1] - vals[:, 0] > _DEGENERATE_RATIO * vals[:, 2])
    return ok, vecs[:, :, 0].astype(np.float32)


def _orient(normals: np.ndarray, rays: np.ndarray,
            max_incidence_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Flip (M,3) normals toward (M,3) rays (point -> sensor); mask of non-grazing ones (M,)."""
    ray_len = np.linalg.norm(rays, axis=1)
    dots = np.einsum('ij,ij->i', normals.astype(np.float64), rays)
    sign = np.where(dots < 0.0, -1.0, 1.0).astype(np.float32)
    cos_limit = np.cos(np.deg2rad(max_incidence_deg))
    facing = (ray_len > 0.0) & (np.abs(dots) > cos_limit * ray_len)
    return normals * sign[:, None], facing

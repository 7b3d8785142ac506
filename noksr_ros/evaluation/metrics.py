"""
Mesh quality against a ground-truth mesh: the NKSR/NoKSR outdoor protocol.

Both meshes are sampled uniformly by area (seeded). Distances go from each sample set to the
*surface* of the other mesh (open3d `RaycastingScene.compute_distance`), not to its samples: at
street scale point-to-sample distances are badly biased. The papers' point-to-point variant is
reported beside it (keys ending in `_p2p`).

Only ground truth the LiDAR observed counts: with `observed_points`, GT samples farther than
`crop_m` from every observed point are dropped. Predicted samples count everywhere for accuracy and
precision unless `pred_crop_m` is given, which drops predicted samples farther than that from every
observed point (useful when a method extrapolates far beyond the data; say so when you use it).

The 0.5 m proximity crop still counts GT the LiDAR never saw: the back of a pole, the far side of
a thin wall or a car, a wall top beside a hit facade all lie within 0.5 m of input points (on the
held-out drives 1001-1003, 5-7 % of the cropped GT has no input point on its own plane). With
`surface_tol_m`, the scores are also reported on the *seen* GT (keys ending in `_seen`): samples
that, besides the proximity crop, have an input point within `crop_m` lying within
`surface_tol_m` of the sample's tangent plane (among its `SEEN_NEIGHBOURS` nearest input points),
i.e. on its own surface.

All distances are in metres. Keys of the returned dict:

- `accuracy`: mean distance predicted samples -> GT surface.
- `completeness`: mean distance GT samples -> predicted surface.
- `chamfer_l1`: (accuracy + completeness) / 2.
- `precision@5cm`, `recall@5cm`, `fscore@5cm`, ... one triple per tau (see `tau_key`).
- `accuracy_p2p`, `completeness_p2p`, `chamfer_l1_p2p`: the same against the other's samples
  (left out with `with_p2p=False`).
- `n_pred_samples`, `n_gt_samples`: sample counts after cropping.
- with `surface_tol_m`: `completeness_seen`, `chamfer_l1_seen`, `recall@..._seen`,
  `fscore@..._seen` and `n_gt_samples_seen` (accuracy and precision do not depend on the crop).

An empty prediction (no faces or no area) scores accuracy nan (no predicted samples to measure),
completeness and chamfer_l1 inf, precision, recall and F-score 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from noksr_ros import kdtree_query

# RaycastingScene.compute_distance on at most this many points per call bounds temporaries.
_QUERY_CHUNK = 1 << 20
# Input points examined per GT sample for the seen-surface crop (nearest first).
SEEN_NEIGHBOURS = 32


def tau_key(kind: str, tau_m: float) -> str:
    """Dict key of a thresholded metric, e.g. `tau_key('fscore', 0.1) == 'fscore@10cm'`."""
    return f'{kind}@{tau_m * 100.0:g}cm'


def check_mesh(vertices: np.ndarray, faces: np.ndarray,
               name: str = 'mesh') -> tuple[np.ndarray, np.ndarray]:
    """Validate a triangle mesh; returns ((V,3) float64 vertices, (F,3) int64 faces)."""
    verts = np.asarray(vertices, dtype=np.float64)
    tris = np.asarray(faces)
    if verts.size == 0:
        verts = verts.reshape(0, 3)
    if tris.size == 0:
        tris = tris.reshape(0, 3).astype(np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f'{name} vertices must have shape (V, 3), got {verts.shape}')
    if tris.ndim != 2 or tris.shape[1] != 3 or not np.issubdtype(tris.dtype, np.integer):
        raise ValueError(f'{name} faces must be integers of shape (F, 3), got {tris.shape} '
                         f'{tris.dtype}')
    if len(tris) and (tris.min() < 0 or tris.max() >= len(verts)):
        raise ValueError(f'{name} faces index vertices outside [0, {len(verts)})')
    if not np.all(np.isfinite(verts)):
        raise ValueError(f'{name} vertices must be finite')
    return verts, tris.astype(np.int64)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int,
                seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """
    Sample `n` points uniformly by area on a triangle mesh.

    Args:
        vertices: (V,3) float vertex positions.
        faces: (F,3) integer vertex indices.
        n: number of samples (>= 0).
        seed: seed of the numpy generator; the same seed gives the same samples.

    Returns:
        (n,3) float64 points in the mesh's frame; (0,3) when the mesh has no area.
    """
    return _sample(vertices, faces, n, seed)[0]


def sample_mesh_with_normals(vertices: np.ndarray, faces: np.ndarray, n: int,
                             seed: int | np.random.SeedSequence = 0
                             ) -> tuple[np.ndarray, np.ndarray]:
    """`sample_mesh` (same points) plus the unit normal of each sample's face: two (n,3)."""
    return _sample(vertices, faces, n, seed)


def _sample(vertices: np.ndarray, faces: np.ndarray, n: int,
            seed: int | np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    verts, tris = check_mesh(vertices, faces)
    if int(n) != n or n < 0:
        raise ValueError(f'n must be a non-negative integer, got {n}')
    corners = verts[tris]  # (F,3,3)
    edge1 = corners[:, 1] - corners[:, 0]
    edge2 = corners[:, 2] - corners[:, 0]
    cross = np.cross(edge1, edge2)
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    total = float(areas.sum())
    if n == 0 or not total > 0.0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas) / total
    face = np.minimum(np.searchsorted(cdf, rng.random(n), side='right'), len(tris) - 1)
    u, v = rng.random(n), rng.random(n)
    outside = u + v > 1.0  # reflect back into the triangle: uniform barycentrics
    u[outside], v[outside] = 1.0 - u[outside], 1.0 - v[outside]
    points = corners[face, 0] + u[:, None] * edge1[face] + v[:, None] * edge2[face]
    normals = cross[face] / np.maximum(2.0 * areas[face], 1e-300)[:, None]
    return points, normals


def seen_surface(points: np.ndarray, normals: np.ndarray, observed: cKDTree, crop_m: float,
                 tol_m: float) -> np.ndarray:
    """
    Bool (M,) mask of surface samples with an observed point on their own surface.

    A sample counts when one of its `SEEN_NEIGHBOURS` nearest observed points within `crop_m`
    lies within `tol_m` of the sample's tangent plane (unit `normals` (M,3)): the LiDAR hit that
    surface near the sample, not only some other surface within `crop_m`.
    """
    if not tol_m > 0.0:
        raise ValueError(f'surface_tol_m must be > 0 m, got {tol_m}')
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    seen = np.zeros(len(pts), dtype=bool)
    if observed.n == 0 or len(pts) == 0:
        return seen
    k = min(SEEN_NEIGHBOURS, observed.n)
    for start in range(0, len(pts), _QUERY_CHUNK // 8):
        chunk = slice(start, start + _QUERY_CHUNK // 8)
        dist, idx = kdtree_query.query(observed, pts[chunk], k=k, distance_upper_bound=crop_m)
        dist, idx = dist.reshape(len(dist), -1), idx.reshape(len(idx), -1)
        valid = np.isfinite(dist)
        offsets = observed.data[np.where(valid, idx, 0)] - pts[chunk][:, None]
        along = np.abs(np.einsum('mkj,mj->mk', offsets, normals[chunk]))
        seen[chunk] = (valid & (along <= tol_m)).any(axis=1)
    return seen


def surface_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                     offset: np.ndarray | None = None) -> np.ndarray:
    """
    Distance (M,) float64 from (M,3) points to the surface of a triangle mesh, in metres.

    `offset` (3,) is subtracted from both in float64 before open3d's float32 query, so far-off
    frames keep precision. A mesh without faces is at infinite distance.
    """
    verts, tris = check_mesh(vertices, faces)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(tris) == 0:
        return np.full(len(pts), np.inf)
    shift = np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor((verts - shift).astype(np.float32)),
                        o3d.core.Tensor(tris.astype(np.uint32)))
    out = np.empty(len(pts))
    for start in range(0, len(pts), _QUERY_CHUNK):
        chunk = (pts[start:start + _QUERY_CHUNK] - shift).astype(np.float32)
        out[start:start + len(chunk)] = scene.compute_distance(o3d.core.Tensor(chunk)).numpy()
    return out


def crop_to_observed(points: np.ndarray, observed_points: np.ndarray | cKDTree,
                     crop_m: float) -> np.ndarray:
    """
    Bool (M,) mask of (M,3) points within `crop_m` metres of some observed point.

    `observed_points` is (K,3) float, or a cKDTree over them (to reuse across calls).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    tree = observed_points if isinstance(observed_points, cKDTree) \
        else _observed_tree(observed_points)
    if not crop_m > 0.0:
        raise ValueError(f'crop distance must be > 0 m, got {crop_m}')
    if tree.n == 0 or len(pts) == 0:
        return np.zeros(len(pts), dtype=bool)
    dist, _ = kdtree_query.query(tree, pts, k=1, distance_upper_bound=crop_m)
    return np.isfinite(dist)


def _observed_tree(observed_points: np.ndarray) -> cKDTree:
    """A cKDTree over the finite rows of (K,3) observed points."""
    obs = np.asarray(observed_points, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != 3:
        raise ValueError(f'observed_points must have shape (K, 3), got {obs.shape}')
    return cKDTree(obs[np.all(np.isfinite(obs), axis=1)])


def mesh_quality(pred_vertices: np.ndarray, pred_faces: np.ndarray, gt_vertices: np.ndarray,
                 gt_faces: np.ndarray, *, n_samples: int = 1_000_000,
                 taus_m: Sequence[float] = (0.05, 0.10, 0.20),
                 observed_points: np.ndarray | None = None, crop_m: float = 0.5,
                 pred_crop_m: float | None = None, seed: int = 0,
                 with_p2p: bool = True, surface_tol_m: float | None = None) -> dict[str, float]:
    """
    Score a predicted mesh against the ground-truth mesh (see the module docstring).

    Args:
        pred_vertices: (V,3) float vertices of the predicted mesh, metres.
        pred_faces: (F,3) int faces of the predicted mesh.
        gt_vertices: (V',3) float vertices of the ground-truth mesh, same frame. Use its outer
            surface only: buried faces of overlapping primitives count as unobserved GT.
        gt_faces: (F',3) int faces of the ground-truth mesh.
        n_samples: samples drawn on each mesh before cropping.
        taus_m: thresholds of precision/recall/F-score, metres.
        observed_points: (K,3) input points; None scores all GT.
        crop_m: GT samples farther than this from every observed point are dropped.
        pred_crop_m: if given, predicted samples farther than this from every observed point are
            dropped too (needs observed_points); default None keeps them all.
        seed: seeds both samplers (GT and prediction get independent streams).
        with_p2p: also compute the point-to-point variant (two kNN trees over the samples: the
            slowest part at 1M samples; False leaves its keys out).
        surface_tol_m: also score against the seen GT only (see the module docstring; needs
            observed_points); None leaves the `_seen` keys out.

    Returns:
        dict of floats, distances in metres.
    """
    pred_v, pred_f = check_mesh(pred_vertices, pred_faces, 'pred')
    gt_v, gt_f = check_mesh(gt_vertices, gt_faces, 'gt')
    if pred_crop_m is not None and observed_points is None:
        raise ValueError('pred_crop_m needs observed_points')
    if surface_tol_m is not None and observed_points is None:
        raise ValueError('surface_tol_m needs observed_points')
    if len(gt_f) == 0:
        raise ValueError('the ground-truth mesh has no faces')
    gt_seed, pred_seed = np.random.SeedSequence(seed).spawn(2)
    gt_pts, gt_nrm = sample_mesh_with_normals(gt_v, gt_f, n_samples, gt_seed)
    pred_pts = sample_mesh(pred_v, pred_f, n_samples, pred_seed)
    seen = None
    if observed_points is not None:
        observed = _observed_tree(observed_points)
        near = crop_to_observed(gt_pts, observed, crop_m)
        gt_pts, gt_nrm = gt_pts[near], gt_nrm[near]
        if surface_tol_m is not None:
            seen = seen_surface(gt_pts, gt_nrm, observed, crop_m, surface_tol_m)
        if pred_crop_m is not None:
            pred_pts = pred_pts[crop_to_observed(pred_pts, observed, pred_crop_m)]
    if len(gt_pts) == 0:
        raise ValueError(f'no ground-truth samples within crop_m={crop_m} m of observed_points')
    offset = gt_v.min(axis=0)
    acc = surface_distance(gt_v, gt_f, pred_pts, offset)
    comp = surface_distance(pred_v, pred_f, gt_pts, offset)
    out = _distance_scores(acc, comp, taus_m)
    if seen is not None:
        if not seen.any():
            raise ValueError('no ground-truth sample lies on a surface the input points touch')
        seen_scores = _distance_scores(acc, comp[seen], taus_m)
        out.update({f'{key}_seen': value for key, value in seen_scores.items()
                    if not key.startswith(('accuracy', 'precision'))})
        out['n_gt_samples_seen'] = float(seen.sum())
    if with_p2p:
        out.update(_p2p_scores(pred_pts, gt_pts))
    out['n_pred_samples'] = float(len(pred_pts))
    out['n_gt_samples'] = float(len(gt_pts))
    return out


def _distance_scores(acc: np.ndarray, comp: np.ndarray,
                     taus_m: Sequence[float]) -> dict[str, float]:
    """Accuracy, completeness, Chamfer-L1 and P/R/F per tau from (M,) and (K,) distances."""
    accuracy = float(acc.mean()) if len(acc) else float('nan')
    completeness = float(comp.mean())
    chamfer = float('inf') if len(acc) == 0 else 0.5 * (accuracy + completeness)
    out = {'accuracy': accuracy, 'completeness': completeness, 'chamfer_l1': chamfer}
    for tau in taus_m:
        if not tau > 0.0:
            raise ValueError(f'taus_m must be > 0, got {tau}')
        precision = float(np.mean(acc <= tau)) if len(acc) else 0.0
        recall = float(np.mean(comp <= tau))
        both = precision + recall
        out[tau_key('precision', tau)] = precision
        out[tau_key('recall', tau)] = recall
        out[tau_key('fscore', tau)] = 2.0 * precision * recall / both if both > 0.0 else 0.0
    return out


def _p2p_scores(pred_pts: np.ndarray, gt_pts: np.ndarray) -> dict[str, float]:
    """The papers' point-to-point variant: distances between the two sample sets."""
    if len(pred_pts) == 0:
        return {'accuracy_p2p': float('nan'), 'completeness_p2p': float('inf'),
                'chamfer_l1_p2p': float('inf')}
    acc = float(kdtree_query.query(cKDTree(gt_pts), pred_pts, k=1)[0].mean())
    comp = float(kdtree_query.query(cKDTree(pred_pts), gt_pts, k=1)[0].mean())
    return {'accuracy_p2p': acc, 'completeness_p2p': comp, 'chamfer_l1_p2p': 0.5 * (acc + comp)}

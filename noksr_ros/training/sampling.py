"""
Training crops: input points of a cube plus SDF/UDF supervision from the ground-truth mesh.

The simulated towns are exact boolean unions (watertight), so the ground-truth signed distance is
computed exactly with open3d's RaycastingScene instead of the paper's 8-nearest-GT-points estimate.
Sign convention: positive inside (against the surface normal), negative outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from noksr_ros.normals import refine_normals


@dataclass(frozen=True)
class CropSpec:
    """Sizes of one training crop and its queries (noksr.md, scaled to a 2-core CPU)."""

    size_m: float = 12.8
    halo_m: float = 1.0
    max_points: int = 800_000
    near_queries: int = 6000
    band_queries: int = 6000
    surface_queries: int = 3000
    jitter_m: float = 0.05
    band_m: float = 0.3
    normals_knn: int = 24  # normals re-estimated over the crop: config normals.segment_knn
    normals_cell_m: float = 0.05  # ... shared per cell: config normals.segment_cell_m


@dataclass
class Crop:
    """One training example; all arrays float32 in the scene frame."""

    points: np.ndarray
    normals: np.ndarray
    queries: np.ndarray
    sdf: np.ndarray
    surface: np.ndarray


class TrainingScene:
    """Accumulated oriented input points of a drive and its exact ground truth."""

    def __init__(self, points: np.ndarray, normals: np.ndarray, gt_vertices: np.ndarray,
                 gt_faces: np.ndarray) -> None:
        if len(points) == 0:
            raise ValueError('a training scene needs input points')
        self.points = np.asarray(points, np.float32)
        self.normals = np.asarray(normals, np.float32)
        self.tree = cKDTree(self.points)
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(np.asarray(gt_vertices, np.float32))
        mesh.triangle.indices = o3d.core.Tensor(np.asarray(gt_faces, np.int32))
        self.raycast = o3d.t.geometry.RaycastingScene()
        self.raycast.add_triangles(mesh)
        legacy = mesh.to_legacy()
        legacy.compute_triangle_normals()
        self.gt_legacy = legacy

    def signed_distance(self, queries: np.ndarray) -> np.ndarray:
        """(Q,) float32 exact signed distance, positive inside the GT solid."""
        q = o3d.core.Tensor(np.asarray(queries, np.float32))
        return -self.raycast.compute_signed_distance(q).numpy().astype(np.float32)

    def gt_surface_samples(self, centre: np.ndarray, half: float, n: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Points (and unit normals) on the GT surface inside the crop, near observed points."""
        pts = self.points[rng.choice(len(self.points), size=min(len(self.points), n * 4))]
        pts = pts[np.all(np.abs(pts - centre) < half, axis=1)]
        if len(pts) == 0:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
        ans = self.raycast.compute_closest_points(o3d.core.Tensor(pts.astype(np.float32)))
        surf = ans['points'].numpy()
        normals = ans['primitive_normals'].numpy()
        # Degenerate (zero-area) GT triangles have NaN normals: never let them into a crop.
        ok = np.all(np.isfinite(surf), axis=1) & np.all(np.isfinite(normals), axis=1)
        surf, normals = surf[ok], normals[ok]
        return surf[:n].astype(np.float32), normals[:n].astype(np.float32)

    def sample_crop(self, spec: CropSpec, rng: np.random.Generator) -> Crop | None:
        """A random crop centred on an input point; None if it is too sparse to learn from."""
        centre = self.points[rng.integers(len(self.points))]
        half = spec.size_m / 2
        # A segment-sized cube plus its halo, at full density, exactly like a Reconstructor input.
        idx = self.tree.query_ball_point(centre, half + spec.halo_m, p=np.inf)
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) < 500:
            return None
        if len(idx) > spec.max_points:
            idx = rng.choice(idx, spec.max_points, replace=False)
        points = self.points[idx]
        normals = refine_normals(points, self.normals[idx], spec.normals_knn,
                                 share_cell_m=spec.normals_cell_m)
        surf, surf_n = self.gt_surface_samples(centre, half, spec.near_queries, rng)
        if len(surf) < 50:
            return None
        near = surf + surf_n * rng.normal(0, spec.jitter_m, (len(surf), 1)).astype(np.float32)
        anchor = points[rng.integers(len(points), size=spec.band_queries)]
        band = anchor + rng.uniform(-spec.band_m, spec.band_m, anchor.shape).astype(np.float32)
        queries = np.concatenate([near, band]).astype(np.float32)
        sdf = self.signed_distance(queries)
        finite = np.isfinite(sdf)
        surface = surf[rng.permutation(len(surf))[:spec.surface_queries]]
        return Crop(points, normals, queries[finite], sdf[finite], surface)

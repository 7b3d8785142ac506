"""
Classical baselines on the same input as ours: LiDAR TSDF fusion and screened Poisson.

- `tsdf_fusion`: every LiDAR ray integrated from its own scan's sensor origin into an open3d
  `t.geometry.VoxelBlockGrid`, meshed by its marching cubes (see `ray_tsdf` for why rays rather
  than open3d's pinhole-depth-image `integrate`). open3d 0.20's legacy `ScalableTSDFVolume`
  extracts nothing, so it is not used.
- `vdbfusion_fusion`: the LiDAR-native TSDF of the `vdbfusion` package, when it is importable
  (it is not a dependency; `vdbfusion_available()` says whether it can run).
- `poisson_reconstruction`: open3d's screened Poisson on the accumulated oriented points, with the
  octree depth chosen from the scene extent (`poisson_depth`) and low-density vertices trimmed by a
  stated quantile.

Every function returns ((V,3) float32 vertices, (F,3) int64 faces) in the input's frame, empty
arrays when there is nothing to mesh.
"""

from __future__ import annotations

from collections.abc import Iterable
import importlib
import logging
import math

import numpy as np
import open3d as o3d

from noksr_ros.errors import NoksrError
from noksr_ros.evaluation.ray_tsdf import RayTsdf

_LOG = logging.getLogger(__name__)
# (points_sensor (N,3) float32 metres, T_map_sensor (4,4)).
Scan = tuple[np.ndarray, np.ndarray]


class BaselineUnavailableError(NoksrError):
    """An optional baseline's package is not installed."""


def empty_mesh() -> tuple[np.ndarray, np.ndarray]:
    """((0,3) float32 vertices, (0,3) int64 faces)."""
    return np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)


def tsdf_fusion(scans: Iterable[Scan], voxel_size_m: float, sdf_trunc_m: float | None = None,
                max_range_m: float = 80.0, *, block_resolution: int = 8,
                min_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """
    Fuse LiDAR scans into a TSDF, ray by ray, and extract its zero level set.

    Args:
        scans: (points_sensor (N,3) float32 metres in the sensor frame, T_map_sensor (4,4))
            pairs; each ray runs from its scan's sensor origin to its point.
        voxel_size_m: grid spacing, metres (e.g. 0.1 or 0.05).
        sdf_trunc_m: truncation distance, metres (default 3 voxels).
        max_range_m: points farther than this from their sensor are ignored.
        block_resolution: voxels per block edge of the VoxelBlockGrid (4, 8 or 16).
        min_weight: marching cubes only uses grid points seen by at least this many scans.

    Returns:
        ((V,3) float32 vertices, (F,3) int64 faces) in the map frame.
    """
    fusion = RayTsdf(voxel_size_m, sdf_trunc_m, block_resolution)
    for points_sensor, pose in scans:
        fusion.integrate(points_sensor, pose, max_range_m)
    return fusion.extract(min_weight)


def vdbfusion_available() -> bool:
    """Whether the optional `vdbfusion` package can be imported."""
    try:
        importlib.import_module('vdbfusion')
    except ImportError:
        return False
    return True


def vdbfusion_fusion(scans: Iterable[Scan], voxel_size_m: float,
                     sdf_trunc_m: float | None = None, max_range_m: float = 80.0, *,
                     min_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """
    The same fusion with `vdbfusion.VDBVolume` (no space carving, no hole filling).

    Raises:
        BaselineUnavailableError: vdbfusion is not installed.
    """
    try:
        vdbfusion = importlib.import_module('vdbfusion')
    except ImportError as err:
        raise BaselineUnavailableError('vdbfusion is not available (pip install vdbfusion)') \
            from err
    trunc = 3.0 * voxel_size_m if sdf_trunc_m is None else sdf_trunc_m
    volume = vdbfusion.VDBVolume(voxel_size_m, trunc, False)
    for points_sensor, pose in scans:
        pts = np.asarray(points_sensor, dtype=np.float64)
        pts = pts[np.linalg.norm(pts, axis=1) <= max_range_m]
        pose = np.asarray(pose, dtype=np.float64)
        volume.integrate(pts @ pose[:3, :3].T + pose[:3, 3], pose)
    vertices, faces = volume.extract_triangle_mesh(False, min_weight)
    if len(faces) == 0:
        return empty_mesh()
    return np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.int64)


def poisson_depth(points: np.ndarray, voxel_size_m: float, scale: float = 1.1,
                  max_depth: int = 12) -> int:
    """
    Octree depth whose finest cell is about `voxel_size_m` over the points' extent.

    open3d's Poisson grid spans `scale` times the largest bounding-box side, split 2^depth times.
    The depth is clipped to [1, max_depth]: memory and time grow ~4-8x per level.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if not voxel_size_m > 0.0:
        raise ValueError(f'voxel_size_m must be > 0, got {voxel_size_m}')
    extent = float(np.max(np.ptp(pts, axis=0))) if len(pts) else 0.0
    if not extent > 0.0:
        return 1
    return int(np.clip(math.ceil(math.log2(scale * extent / voxel_size_m)), 1, max_depth))


def poisson_reconstruction(points_map: np.ndarray, normals_map: np.ndarray,
                           voxel_size_m: float = 0.1, *, depth: int | None = None,
                           density_quantile: float = 0.05, max_depth: int = 12,
                           workers: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """
    Screened Poisson surface of oriented points, low-density vertices trimmed.

    Args:
        points_map: (N,3) float points, map frame, metres.
        normals_map: (N,3) unit normals oriented toward the sensors (outward of the surface).
        voxel_size_m: finest octree cell wanted; sets the depth via `poisson_depth`.
        depth: explicit octree depth (overrides voxel_size_m).
        density_quantile: vertices whose Poisson density (points supporting them) is below this
            quantile of all vertex densities are removed, with their faces; 0 keeps all.
        max_depth: upper bound of the automatic depth.
        workers: threads (-1: all cores).

    Returns:
        ((V,3) float32 vertices, (F,3) int64 faces) in the map frame.
    """
    pts = np.asarray(points_map, dtype=np.float64)
    nrm = np.asarray(normals_map, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or nrm.shape != pts.shape:
        raise ValueError(f'points_map and normals_map must both be (N, 3), got {pts.shape} '
                         f'and {nrm.shape}')
    if not 0.0 <= density_quantile < 1.0:
        raise ValueError(f'density_quantile must be in [0, 1), got {density_quantile}')
    finite = np.all(np.isfinite(pts), axis=1) & np.all(np.isfinite(nrm), axis=1)
    pts, nrm = pts[finite], nrm[finite]
    if len(pts) < 4:
        return empty_mesh()
    depth = poisson_depth(pts, voxel_size_m, max_depth=max_depth) if depth is None else depth
    _LOG.info('poisson: %d points, octree depth %d', len(pts), depth)
    # Recentre: open3d's Poisson runs in float, far-off map frames would lose precision.
    centre = pts.mean(axis=0)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts - centre))
    cloud.normals = o3d.utility.Vector3dVector(nrm)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=int(depth), n_threads=int(workers))
    densities = np.asarray(densities)
    if density_quantile > 0.0 and len(densities):
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(faces) == 0:
        return empty_mesh()
    vertices = (np.asarray(mesh.vertices) + centre).astype(np.float32)
    return vertices, faces

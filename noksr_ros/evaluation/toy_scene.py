"""
A small street-like scene and a spinning-LiDAR simulator, for tests and benchmarks.

This is a fixture, not the project's data generator: a ground slab with two buildings, a car and
a pole, united exactly with manifold3d so the mesh has no buried faces, scanned by an ideal
spinning LiDAR (open3d `RaycastingScene`) from poses along a straight drive.
"""

from __future__ import annotations

from dataclasses import dataclass

import manifold3d
import numpy as np
import open3d as o3d

# (min corner, max corner) of each box, metres, map frame; z = 0 is the road surface.
_TOY_BOXES = (
    ((-20.0, -10.0, -1.0), (20.0, 10.0, 0.0)),   # ground slab
    ((-15.0, 5.0, 0.0), (-3.0, 10.0, 6.0)),      # building, left
    ((2.0, -10.0, 0.0), (15.0, -6.0, 8.0)),      # building, right
    ((4.0, 2.0, 0.0), (8.5, 3.8, 1.5)),          # parked car
    ((-2.2, -3.2, 0.0), (-1.8, -2.8, 4.0)),      # pole
)


def toy_street_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The toy street as one closed mesh: ((V,3) float64 vertices, (F,3) int64 faces), metres."""
    parts = [manifold3d.Manifold.cube(tuple(np.subtract(hi, lo))).translate(lo)
             for lo, hi in _TOY_BOXES]
    union = manifold3d.Manifold.batch_boolean(parts, manifold3d.OpType.Add)
    mesh = union.to_mesh()
    vertices = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    return vertices, np.asarray(mesh.tri_verts, dtype=np.int64)


def drive_poses(n: int, start_xy: tuple[float, float] = (-10.0, 0.0),
                end_xy: tuple[float, float] = (10.0, 0.0),
                height_m: float = 1.8) -> list[np.ndarray]:
    """`n` (4,4) float64 T_map_sensor poses evenly along a straight line, heading along it."""
    start, end = np.asarray(start_xy, float), np.asarray(end_xy, float)
    yaw = float(np.arctan2(*(end - start)[::-1]))
    rot = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0],
                    [0.0, 0.0, 1.0]])
    poses = []
    for frac in np.linspace(0.0, 1.0, n):
        pose = np.eye(4)
        pose[:3, :3] = rot
        pose[:2, 3] = start + frac * (end - start)
        pose[2, 3] = height_m
        poses.append(pose)
    return poses


@dataclass(frozen=True)
class LidarSpec:
    """Spinning LiDAR geometry: beams evenly spread over `elevation_deg`, full 360 azimuth."""

    n_beams: int = 32
    n_azimuth: int = 1024
    elevation_deg: tuple[float, float] = (-24.8, 2.0)
    max_range_m: float = 80.0
    range_noise_m: float = 0.0


class ToyLidar:
    """Ray-cast scans of a triangle mesh with an ideal spinning LiDAR."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray,
                 spec: LidarSpec | None = None) -> None:
        self.spec = spec or LidarSpec()
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)),
                                  o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)))
        self._dirs = self._beam_directions()

    def _beam_directions(self) -> np.ndarray:
        """(n_beams * n_azimuth, 3) float64 unit ray directions in the sensor frame."""
        spec = self.spec
        elev = np.deg2rad(np.linspace(*spec.elevation_deg, spec.n_beams))
        azim = np.linspace(0.0, 2.0 * np.pi, spec.n_azimuth, endpoint=False)
        el, az = np.meshgrid(elev, azim, indexing='ij')
        return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)],
                        axis=-1).reshape(-1, 3)

    def scan(self, pose: np.ndarray, seed: int = 0) -> np.ndarray:
        """Points (N,3) float32 in the sensor frame of one scan from `pose` (4,4) T_map_sensor."""
        pose = np.asarray(pose, dtype=np.float64)
        dirs_map = self._dirs @ pose[:3, :3].T
        rays = np.concatenate([np.broadcast_to(pose[:3, 3], dirs_map.shape), dirs_map], axis=1)
        hits = self._scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        ranges = hits['t_hit'].numpy().astype(np.float64)
        if self.spec.range_noise_m > 0.0:
            noise = np.random.default_rng(seed).normal(0.0, self.spec.range_noise_m, len(ranges))
            ranges = ranges + noise
        keep = np.isfinite(ranges) & (ranges > 0.0) & (ranges <= self.spec.max_range_m)
        return (self._dirs[keep] * ranges[keep, None]).astype(np.float32)

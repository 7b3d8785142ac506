"""
Scan filtering and frame changes: the numpy steps between a decoded cloud and the map.

Everything here is vectorised numpy on (N,3) float32 arrays; a 120k-point scan takes a few ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noksr_ros.config import IngestConfig


@dataclass(frozen=True)
class ScanFilter:
    """
    Range crop and ego-vehicle box removal in the sensor frame.

    `ego_box_m` is (xmin, ymin, zmin, xmax, ymax, zmax) in the sensor frame: points inside are
    the car itself (roof, mirrors) and would otherwise be mapped as a moving surface.
    """

    min_range_m: float
    max_range_m: float
    ego_box_m: tuple[float, float, float, float, float, float]

    @classmethod
    def from_config(cls, cfg: IngestConfig) -> ScanFilter:
        """Build from the `ingest` config section."""
        return cls(cfg.min_range_m, cfg.max_range_m, cfg.ego_box_m)

    def keep_mask(self, points_sensor: np.ndarray) -> np.ndarray:
        """Boolean (N,) mask of points to keep; `points_sensor` is (N,3) in the sensor frame."""
        p = np.asarray(points_sensor)
        r2 = np.einsum('ij,ij->i', p, p)
        keep = (r2 >= self.min_range_m ** 2) & (r2 <= self.max_range_m ** 2)
        lo = np.asarray(self.ego_box_m[:3], dtype=p.dtype)
        hi = np.asarray(self.ego_box_m[3:], dtype=p.dtype)
        inside_ego = np.all((p >= lo) & (p <= hi), axis=1)
        return keep & ~inside_ego

    def apply(self, points_sensor: np.ndarray) -> np.ndarray:
        """The kept rows of `points_sensor` (M,3)."""
        return points_sensor[self.keep_mask(points_sensor)]


def transform_points(points: np.ndarray, transform: np.ndarray,
                     offset_m: np.ndarray | None = None) -> np.ndarray:
    """
    Apply a 4x4 rigid transform to (N,3) points; returns float32.

    `offset_m` (3,) float64 is subtracted from the transform's translation first, in float64:
    this is how map-frame poses become map-local coordinates without losing float32 precision
    far from the map frame's origin (CARLA towns reach several km).
    """
    transform = np.asarray(transform, dtype=np.float64)
    if transform.shape != (4, 4) or not np.all(np.isfinite(transform)):
        raise ValueError(f'transform must be a finite 4x4 matrix, got shape {transform.shape}')
    rot = transform[:3, :3]
    trans = transform[:3, 3] - (0.0 if offset_m is None else np.asarray(offset_m, np.float64))
    p = np.asarray(points, dtype=np.float32)
    r = rot.astype(np.float32)
    # Explicit multiply-adds: a BLAS matmul of (N,3)x(3,3) is 30x slower with threaded OpenBLAS.
    out = np.empty_like(p)
    for i in range(3):
        out[:, i] = p[:, 0] * r[i, 0] + p[:, 1] * r[i, 1] + p[:, 2] * r[i, 2] + trans[i]
    return out

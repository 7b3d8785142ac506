"""
One scan from the sensor frame to oriented map-local points: filter, normals, transform.

Shared by the Reconstructor (online and offline) and the training-data builder, so the network
trains on exactly the kind of points it sees at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from noksr_ros.config import NoksrConfig
from noksr_ros.normals import estimate_normals_scan
from noksr_ros.preprocess import ScanFilter, transform_points


@dataclass(frozen=True)
class ScanIngestor:
    """
    Range/ego crop, orientation per point, rigid transform to map-local.

    With `scan_pca` each point gets its scan's kNN-PCA normal toward the sensor (grazing and
    degenerate points dropped); without, the unit ray from the point back to the sensor, which
    the per-segment normal estimation (`normals.refine_normals`) uses as the side to face. One
    scan's normals of sparse rings are poor and their filters dropped far ground wholesale; the
    segment's accumulated scans give better normals, so the per-scan PCA is skipped by default.
    """

    filter: ScanFilter
    knn: int
    max_incidence_deg: float
    scan_pca: bool  # no default: the config (normals.scan_pca) decides, see from_config

    @classmethod
    def from_config(cls, config: NoksrConfig, scan_pca: bool | None = None) -> ScanIngestor:
        """Build from the `ingest` and `normals` sections; `scan_pca` overrides the config."""
        pca = config.normals.scan_pca if scan_pca is None else scan_pca
        return cls(ScanFilter.from_config(config.ingest), config.normals.knn,
                   config.normals.max_incidence_deg, pca)

    def prepare(self, points_sensor: np.ndarray, pose: np.ndarray,
                origin_m: np.ndarray,
                skip: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """
        (points (M,3) float32, normals or sensor rays (M,3) float32) in the map-local frame.

        `points_sensor` (N,3) in the sensor frame; `pose` the 4x4 T_map_sensor; `origin_m` (3,)
        float64 map-frame position of the map-local origin. `skip` maps (N,3) map-local points
        to an (N,) bool mask of points not worth a PCA normal (`SegmentMap.full_cells`: their
        cells are full, the map would drop them); they still serve as neighbours, so every other
        point's normal is unchanged. The cap drops 31 % of the points of the held-out
        drive 1001, which bounds what is skipped there.
        """
        pose = np.asarray(pose, np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError('T_map_sensor must be a finite 4x4 matrix')
        pts = self.filter.apply(np.asarray(points_sensor, np.float32).reshape(-1, 3))
        if len(pts) < 3:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
        local = transform_points(pts, pose, origin_m)
        if self.scan_pca:
            wanted = None if skip is None else ~np.asarray(skip(local), dtype=bool)
            est = estimate_normals_scan(pts, knn=self.knn,
                                        max_incidence_deg=self.max_incidence_deg, wanted=wanted)
            local, directions = local[est.keep], est.normals
        else:
            distance = np.linalg.norm(pts, axis=1)
            at_sensor = distance < 1e-6
            local = local[~at_sensor]
            directions = -pts[~at_sensor] / distance[~at_sensor, None]
        rotation = np.eye(4)
        rotation[:3, :3] = pose[:3, :3]
        return local, transform_points(directions.astype(np.float32), rotation)

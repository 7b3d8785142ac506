"""
Normal estimation (kNN PCA, oriented toward the sensor) on one LiDAR-sized scan.

Scans the toy street with a 64-beam spinning LiDAR (about 120k points) and times
`estimate_normals_scan` for several k and both eigen solvers, next to the bare cKDTree kNN query
it is built on (the floor: same points, same k, same threads) and to open3d's C++
`estimate_normals` + `orient_normals_towards_camera_location` (a reference, not a dependency of
`noksr_ros.normals`). Medians of several runs.
Usage: python bench/bench_normals.py [--quick]
"""

from __future__ import annotations

import sys

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from bench.common import median_s, report
from noksr_ros.evaluation.toy_scene import LidarSpec, ToyLidar, drive_poses, toy_street_mesh
from noksr_ros.normals import estimate_normals_scan
from noksr_ros.process_memory import peak_rss_mb


def lidar_scan(n_azimuth: int) -> np.ndarray:
    """One scan (N,3) float32 in the sensor frame from the middle of the toy street."""
    lidar = ToyLidar(*toy_street_mesh(), LidarSpec(n_beams=64, n_azimuth=n_azimuth,
                                                   range_noise_m=0.01))
    return lidar.scan(drive_poses(3)[1])


def knn_floor_s(points: np.ndarray, knn: int, repeats: int) -> float:
    """Median time of building a cKDTree and querying every point's k nearest, as ours does."""
    def run() -> None:
        tree = cKDTree(points, leafsize=16, balanced_tree=False, compact_nodes=False)
        tree.query(points[tree.indices], k=knn, workers=-1)

    return median_s(run, repeats)


def open3d_normals(points: np.ndarray, knn: int) -> np.ndarray:
    """open3d's kNN-PCA normals, oriented toward the origin: (N,3) float64."""
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    return np.asarray(cloud.normals)


def main(quick: bool) -> None:
    repeats = 3 if quick else 7
    points = lidar_scan(2400)
    rows = []
    for knn, solver in ((16, 'closed_form'), (24, 'closed_form'), (24, 'eigh'),
                        (64, 'closed_form')):
        if quick and knn == 64:
            continue
        result = estimate_normals_scan(points, knn=knn, solver=solver)
        t_normals = median_s(lambda k=knn, s=solver: estimate_normals_scan(points, knn=k,
                                                                           solver=s), repeats)
        t_knn = knn_floor_s(points, knn, repeats)
        rows.append({'points': len(points), 'knn': knn, 'solver': solver,
                     'normals_ms': 1e3 * t_normals, 'knn_query_ms': 1e3 * t_knn,
                     'ratio_vs_knn': t_normals / t_knn,
                     'kept_share': float(result.keep.mean())})
    t_open3d = median_s(lambda: open3d_normals(points, 24), repeats)
    rows.append({'points': len(points), 'knn': 24, 'solver': 'open3d (ref)',
                 'normals_ms': 1e3 * t_open3d, 'knn_query_ms': rows[1]['knn_query_ms'],
                 'ratio_vs_knn': t_open3d / (1e-3 * rows[1]['knn_query_ms'])})
    report('normals', rows, ['points', 'knn', 'solver', 'normals_ms', 'knn_query_ms',
                             'ratio_vs_knn', 'kept_share'],
           {'peak_rss_mb': peak_rss_mb(), 'repeats': repeats})


if __name__ == '__main__':
    main('--quick' in sys.argv)

"""
Scan ingest throughput: PointCloud2 -> filtered numpy -> map-local -> SegmentMap.integrate.

Scans come from the project's LiDAR simulator on a generated town (64 beams x 1800 azimuths,
~105k points after dropouts, point_step 16 like the CARLA bridge), serialised as real PointCloud2
messages (rosbags types, no ROS needed). The map fills up as the car drives, so later scans are
integrated into a map of millions of points. Normal estimation (kNN-PCA) is timed in its own
column: it belongs to the model's input, not to ingest, and is the expensive part on a CPU.

Usage: python -m bench.bench_ingest [--scans N] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from bench.common import report
from noksr_ros.config import NoksrConfig
from noksr_ros.data.lidar import LidarSimulator, LidarSpec
from noksr_ros.data.town import generate_town
from noksr_ros.data.trajectory import Trajectory
from noksr_ros.io.bag_writer import CarlaMessages
from noksr_ros.io.pointcloud2 import read_points
from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.normals import estimate_normals_scan
from noksr_ros.preprocess import ScanFilter, transform_points
from noksr_ros.process_memory import peak_rss_mb


def make_clouds(n_scans: int, seed: int = 11) -> list[tuple[object, np.ndarray]]:
    """`n_scans` PointCloud2 messages (rosbags class) with their T_map_sensor poses."""
    town = generate_town(seed, length_m=max(60.0, n_scans * 0.8 + 20))
    spec = LidarSpec()
    sim = LidarSimulator(town.mesh_vertices, town.mesh_faces, spec)
    traj = Trajectory(town.route, speed_mps=8.0)
    msgs, rng = CarlaMessages(), np.random.default_rng(seed)
    t_base_sensor = spec.t_base_sensor()
    out = []
    for i in range(n_scans):
        pose = traj.pose_at(i * 0.1) @ t_base_sensor
        scan = sim.scan(pose, rng)
        stamp_ns = 1_700_000_000 * 10**9 + i * 10**8
        out.append((msgs.cloud(stamp_ns, 'ego_vehicle/lidar', scan.points, scan.intensity),
                    pose))
    return out


def main() -> None:
    n_scans = 20 if '--quick' in sys.argv else 60
    if '--scans' in sys.argv:
        n_scans = int(sys.argv[sys.argv.index('--scans') + 1])
    cfg = NoksrConfig()
    clouds = make_clouds(n_scans)
    filt = ScanFilter.from_config(cfg.ingest)
    origin = clouds[0][1][:3, 3].copy()
    seg_map = SegmentMap.from_config(cfg.mapping, origin_m=origin)
    rows = []
    for i, (msg, pose) in enumerate(clouds):
        t0 = time.perf_counter()
        cloud = read_points(msg)
        t1 = time.perf_counter()
        pts = filt.apply(cloud.points)
        local = transform_points(pts, pose, origin)
        normals = np.tile(np.float32([0, 0, 1]), (len(local), 1))  # placeholder: see docstring
        t2 = time.perf_counter()
        seg_map.integrate(local, normals, i * 0.1)
        t3 = time.perf_counter()
        est = estimate_normals_scan(pts, knn=cfg.normals.knn)
        t4 = time.perf_counter()
        rows.append({'scan': i, 'points': len(cloud.points), 'decode_ms': 1e3 * (t1 - t0),
                     'filter_transform_ms': 1e3 * (t2 - t1), 'integrate_ms': 1e3 * (t3 - t2),
                     'ingest_ms': 1e3 * (t3 - t0), 'normals_ms': 1e3 * (t4 - t3),
                     'kept_normals': int(est.keep.sum()),
                     'map_points': seg_map.stats().points_in_memory})
    cols = ['points', 'decode_ms', 'filter_transform_ms', 'integrate_ms', 'ingest_ms',
            'normals_ms', 'map_points']
    summary = {c: statistics.median(r[c] for r in rows) for c in cols}
    summary['ingest_p95_ms'] = float(np.percentile([r['ingest_ms'] for r in rows], 95))
    summary['scans'] = len(rows)
    summary['peak_rss_mb'] = peak_rss_mb()
    summary['goal_ingest_ms'] = 50.0
    summary['meets_goal'] = summary['ingest_ms'] < 50.0
    report('ingest', [summary], ['scans', 'points', 'decode_ms', 'filter_transform_ms',
                                 'integrate_ms', 'ingest_ms', 'ingest_p95_ms', 'normals_ms',
                                 'map_points', 'meets_goal'], {'per_scan': rows})


if __name__ == '__main__':
    main()

"""
Serialization codes and segment-map integration on this CPU.

Rows: median ms of Morton and Hilbert encoding (torch, `encode_points`, one curve) of 100k and
1M random points at 16 bits, and of `SegmentMap.integrate` of a 120k-point LiDAR-like scan into a
map that already holds about 3M points in about 40 segments (12.8 m, 5 cm cells, cap 3); for
that row `cpu_ms` (process time) is also given, as wall times suffer when the CPU is shared.
Usage: python -m bench.bench_serialization [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from bench.common import median_s, report
from noksr_ros.curves import encode
from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.model.serialization import encode_points

AREA_M = (102.4, 64.0)  # 8 x 5 segments of 12.8 m, one layer: 40 segments
SCAN_POINTS = 120_000
MAP_POINTS = 3_000_000


def street_scan(rng: np.random.Generator, sensor_xy: np.ndarray,
                n: int = SCAN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """A LiDAR-like scan: ground and building walls, denser near the sensor (range uniform)."""
    rng_m = rng.uniform(2.0, 50.0, n)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    xy = sensor_xy + np.c_[rng_m * np.cos(angle), rng_m * np.sin(angle)]
    xy = np.clip(xy, 0.0, np.array(AREA_M) - 1e-3)
    z = 0.3 + rng.normal(0.0, 0.01, n)
    normals = np.tile([0.0, 0.0, 1.0], (n, 1))
    wall = rng.random(n) < 0.35  # facades every 16 m along y
    xy[wall, 1] = np.clip(np.round(xy[wall, 1] / 16.0) * 16.0 + 0.2, 0.0, AREA_M[1] - 1e-3)
    z[wall] = rng.uniform(0.3, 10.0, wall.sum())
    normals[wall] = [0.0, 1.0, 0.0]
    return np.c_[xy, z].astype(np.float32), normals.astype(np.float32)


def random_sensor(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform((0.0, 0.0), AREA_M)


def bench_encoding(n: int, repeats: int) -> list[dict]:
    """Torch `encode_points` (quantise + encode) and numpy `curves.encode` of n cells."""
    xyz = torch.rand(n, 3) * 600.0
    cells = np.random.default_rng(0).integers(0, 2**16, (n, 3))
    rows = []
    default_threads = torch.get_num_threads()
    for order in ('z', 'hilbert'):
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            t = median_s(lambda o=order: encode_points(xyz, 0.01, (o,), 16), repeats)
            rows.append({'case': f'torch encode_points {order} ({threads} thr)', 'points': n,
                         'median_ms': 1e3 * t})
        torch.set_num_threads(default_threads)
        t = median_s(lambda o=order: encode(cells, o, 16), repeats)
        rows.append({'case': f'numpy curves.encode {order}', 'points': n, 'median_ms': 1e3 * t})
    return rows


def bench_integrate(scans: int) -> dict:
    rng = np.random.default_rng(0)
    seg_map = SegmentMap(12.8, 0.05, 3)
    stamp = 0.0
    while seg_map.stats().points_in_memory < MAP_POINTS:
        seg_map.integrate(*street_scan(rng, random_sensor(rng)), stamp)
        stamp += 0.1
    before = seg_map.stats()
    wall, cpu = [], []
    for _ in range(scans):
        points, normals = street_scan(rng, random_sensor(rng))
        t0, c0 = time.perf_counter(), time.process_time()
        seg_map.integrate(points, normals, stamp)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        stamp += 0.1
    return {'case': 'SegmentMap.integrate', 'points': SCAN_POINTS,
            'median_ms': 1e3 * statistics.median(wall), 'cpu_ms': 1e3 * statistics.median(cpu),
            'map_points': before.points_in_memory, 'segments': before.segments_in_memory}


def main(argv: list[str]) -> None:
    quick = '--quick' in argv
    rows = []
    for n in (100_000, 1_000_000):
        rows += bench_encoding(n, repeats=3 if quick else 7)
    rows.append(bench_integrate(scans=5 if quick else 20))
    report('serialization', rows,
           ['case', 'points', 'median_ms', 'cpu_ms', 'map_points', 'segments'],
           extra={'torch_threads': torch.get_num_threads()})


if __name__ == '__main__':
    main(sys.argv[1:])

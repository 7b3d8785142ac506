"""
Benchmark sparse marching cubes on a sphere band (CPU by default).

Usage: python bench/bench_meshing.py [--device cpu|cuda] [--repeats 5]
Prints a table (median/min over the repeats, and the median for the same corners in shuffled
order) and writes out/bench/meshing.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import statistics
import sys
import time

import torch

# Import noksr_ros from this source tree, not from a copy installed in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from noksr_ros.meshing import active_corners_near_points, marching_cubes_sparse  # noqa: E402

VOXEL_M = 0.1
# Sphere radii whose dilated point band holds about 200k and 1M corners at 0.1 m.
CASES = {'200k': 5.28, '1M': 11.8}


def sphere_points(radius_m: float, spacing_m: float) -> torch.Tensor:
    """(N,3) float32 points on a Fibonacci sphere, about `spacing_m` apart."""
    count = int(4 * math.pi * radius_m ** 2 / spacing_m ** 2)
    k = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / count
    phi = 2 * math.pi * k * 2 / (1 + math.sqrt(5))
    rho = (1 - z * z).sqrt()
    return (radius_m * torch.stack([rho * phi.cos(), rho * phi.sin(), z], 1)).float()


def sphere_band(radius_m: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Corners (M,3) int64 activated around the sphere surface and their SDF (M,) float32."""
    points = sphere_points(radius_m, VOXEL_M / 2).to(device)
    corners = active_corners_near_points(points, VOXEL_M, dilation_voxels=1)
    sdf = (radius_m - (corners.double() * VOXEL_M).norm(dim=1)).float()
    return corners, sdf


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn, repeats: int, device: torch.device) -> list[float]:
    """Wall times (s) of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def bench_case(name: str, radius_m: float, device: torch.device, repeats: int) -> dict:
    """Time `marching_cubes_sparse` on one sphere band; returns one result row."""
    start = time.perf_counter()
    corners, sdf = sphere_band(radius_m, device)
    activation_s = time.perf_counter() - start
    vertices, faces = marching_cubes_sparse(corners, sdf, VOXEL_M)
    times = time_call(lambda: marching_cubes_sparse(corners, sdf, VOXEL_M), repeats, device)
    # Unsorted input takes the sort path (activation returns sorted corners, which skips it).
    perm = torch.randperm(corners.shape[0], generator=torch.Generator().manual_seed(0))
    shuffled, shuffled_sdf = corners[perm.to(device)], sdf[perm.to(device)]
    times_shuffled = time_call(lambda: marching_cubes_sparse(shuffled, shuffled_sdf, VOXEL_M),
                               repeats, device)
    return {'case': name, 'radius_m': radius_m, 'voxel_m': VOXEL_M,
            'corners': int(corners.shape[0]), 'vertices': int(vertices.shape[0]),
            'faces': int(faces.shape[0]), 'median_s': statistics.median(times),
            'min_s': min(times), 'median_shuffled_s': statistics.median(times_shuffled),
            'activation_s': activation_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--out', default='out/bench/meshing.json')
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [bench_case(name, radius, device, args.repeats) for name, radius in CASES.items()]
    header = ' '.join(f'{h:>9}' for h in ('case', 'corners', 'vertices', 'faces', 'median s',
                                          'min s', 'shuffled'))
    print(f'marching_cubes_sparse on {device}, {torch.get_num_threads()} threads')
    print(header)
    for r in rows:
        print(f'{r["case"]:>9} {r["corners"]:>9} {r["vertices"]:>9} {r["faces"]:>9} '
              f'{r["median_s"]:>9.3f} {r["min_s"]:>9.3f} {r["median_shuffled_s"]:>9.3f}')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {'device': str(device), 'threads': torch.get_num_threads(),
            'torch': torch.__version__, 'repeats': args.repeats}
    out.write_text(json.dumps({'meta': meta, 'results': rows}, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()

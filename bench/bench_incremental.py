"""
Incremental vs batch reconstruction of the same drive, side by side in one process (issue 4).

- batch: integrate every scan, then reconstruct every segment once (`finish()`).
- incremental (offline scheduling, the `noksr reconstruct` default: debounce 1 s, no max_wait):
  after every scan, `update()`; a segment is rebuilt once it has had no new points for 1 s of scan
  time, then `finish()`.
- incremental (live scheduling, config/carla.yaml: debounce 1 s, max_wait 2 s, max_wait_growth 1,
  max_wait_radius 10 m): as above, but a segment within 10 m of the car that keeps receiving
  points is rebuilt after 2 s if it was never built or has twice the points of its last build: the
  price of a map that is fresh around the car.
- incremental (live, every max_wait): max_wait_growth 0 and no radius, i.e. every segment still
  receiving points is rebuilt every 2 s (the scheduling before those two settings existed).

Reports wall / network / meshing seconds, segment reconstructions, the time ratio (goal <= 1.5x)
and the symmetric Chamfer distance between the two final meshes (they should agree).

    python -m bench.bench_incremental [--length-m 40] [--seed 1104] [--modes incremental_live]

Prints a table and writes out/bench/<name>.json (default incremental.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile
import time

import numpy as np

from bench.common import report
from noksr_ros.config import NoksrConfig, read_yaml_values
from noksr_ros.data.drive import simulate_drive
from noksr_ros.offline import model_from_config, npz_source
from noksr_ros.reconstructor import Reconstructor

ROOT = Path(__file__).resolve().parents[1]
MODES = ('batch', 'incremental_offline', 'incremental_live', 'incremental_live_every_max_wait')


def _run(scans: list, config: NoksrConfig, mode: str) -> dict:
    incremental = mode != 'batch'
    model, device = model_from_config(config)
    rec = Reconstructor(config, model, device)
    t0 = time.perf_counter()
    network = meshing = 0.0
    rebuilt = 0
    for stamp, points, pose in scans:
        rec.integrate(stamp, points, pose)
        if incremental:
            step = rec.update(max_segments=1_000_000)
            network, meshing = network + step.network_s, meshing + step.meshing_s
            rebuilt += len(step.reconstructed)
    rest = rec.finish()
    network, meshing = network + rest.network_s, meshing + rest.meshing_s
    rebuilt += len(rest.reconstructed)
    wall = time.perf_counter() - t0
    vertices, faces = rec.full_mesh()
    return {'mode': mode, 'wall_s': wall,
            'network_s': network, 'meshing_s': meshing, 'reconstructions': rebuilt,
            'segments': len(rec.map.keys()), 'faces': len(faces), '_vertices': vertices,
            '_faces': faces}


def _chamfer_cm(a: tuple, b: tuple) -> float:
    """Symmetric mean distance from each mesh's vertices to the other surface (exact, cm)."""
    import open3d as o3d

    def one_way(points: np.ndarray, mesh: tuple) -> float:
        if len(points) == 0 or len(mesh[1]) == 0:
            return float('nan')
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(mesh[0].astype(np.float32)),
                            o3d.core.Tensor(mesh[1].astype(np.uint32)))
        query = o3d.core.Tensor(points.astype(np.float32))
        return float(scene.compute_distance(query).numpy().mean())

    return 100 * 0.5 * (one_way(a[0], b) + one_way(b[0], a))


def main() -> None:
    """Run both modes on one simulated drive and report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--length-m', type=float, default=40.0)
    parser.add_argument('--seed', type=int, default=1104)
    parser.add_argument('--modes', default=','.join(MODES),
                        help=f'comma-separated subset of {",".join(MODES)} (batch always runs)')
    parser.add_argument('--name', default='incremental', help='JSON name under out/bench/')
    args = parser.parse_args()
    modes = [m for m in MODES if m == 'batch' or m in args.modes.split(',')]
    live = read_yaml_values(ROOT / 'config' / 'carla.yaml')
    keys = ('reconstruct.debounce_s', 'reconstruct.max_wait_s', 'reconstruct.max_wait_growth',
            'reconstruct.max_wait_radius_m')
    offline = NoksrConfig().with_overrides({'model.device': 'auto'})
    config = offline.with_overrides({k: live[k] for k in keys})
    every = config.with_overrides({'reconstruct.max_wait_growth': 0.0,
                                   'reconstruct.max_wait_radius_m': 0.0})
    with tempfile.TemporaryDirectory(prefix='noksr-bench-inc-') as tmp:
        drive = simulate_drive(args.seed, Path(tmp) / 'drive', length_m=args.length_m,
                               write_bag=False, progress=False)
        scans = list(npz_source(drive.out_dir).scans)
    configs = {'batch': offline, 'incremental_offline': offline, 'incremental_live': config,
               'incremental_live_every_max_wait': every}
    runs = [_run(scans, configs[mode], mode) for mode in modes]
    batch = runs[0]
    rows = []
    for run in runs:
        row = {k: v for k, v in run.items() if not k.startswith('_')}
        row['ratio_to_batch'] = run['wall_s'] / batch['wall_s']
        row['chamfer_to_batch_cm'] = _chamfer_cm((batch['_vertices'], batch['_faces']),
                                                 (run['_vertices'], run['_faces']))
        rows.append(row)
    report(args.name, rows, ['mode', 'wall_s', 'network_s', 'meshing_s', 'reconstructions',
                                 'segments', 'faces', 'ratio_to_batch', 'chamfer_to_batch_cm'],
           extra={'scans': len(scans), 'drive': {'seed': args.seed, 'length_m': args.length_m}})
    for row in rows[1:]:
        print(f"{row['mode']} / batch time: {row['ratio_to_batch']:.2f}x (goal <= 1.5x); "
              f"Chamfer to the batch mesh {row['chamfer_to_batch_cm']:.3f} cm")


if __name__ == '__main__':
    main()

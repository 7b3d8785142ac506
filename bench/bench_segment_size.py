"""
Segment size vs quality and memory (issue 4): the supplementary's Table 11 on our drives.

Why: segments exist so that peak memory stays bounded by one segment's forward pass instead of
the whole scene's. The paper reports peak memory falling 20.4 -> 5.0 GB from 1 to ~50 segments
while the Chamfer distance degrades by less than 0.1 cm, because each segment sees its
neighbours' points within `mapping.halo_m`. This bench checks both claims on one held-out
simulated drive.

The drive is reconstructed in batch (`reconstruct_drive`, as `noksr reconstruct`) once per
`mapping.segment_size_m`, each run in a fresh spawned process so its wall time and peak RSS
(VmHWM, the model and torch included) are its own, then scored against the drive's exact
ground truth with `noksr evaluate`'s protocol (`compare.score_row`: GT cropped to 0.5 m of the
input points; CD = Chamfer-L1 in cm, F@10 cm in %).

Segment sizes are picked from the input points so that the scene holds about 1, 10 and 50
segments (`--targets`; or give `--sizes`). The segment lattice starts at the map origin, which the
Reconstructor puts at the first scan's sensor position: the scene then straddles the origin on
every axis and could never be a single segment. So every run (all rows alike) is fed one empty
scan first, at a pose just below the scene's bounding-box corner, which moves the map origin (and
the lattice) there; nothing else changes. `ingest.max_range_m` is capped (default 30 m, the same
for every row, and for the GT crop) so that a single segment covering the scene fits in memory.

Peak RSS is that of the whole process (torch and the model: ~0.3 GB); `above_baseline_mb` is
that peak minus the peak right after loading the model, i.e. what the map and the forward passes
added, the part segments can shrink. `noksr reconstruct` runs
with glibc malloc as it comes, which may keep freed network buffers mapped and so blur the rows;
`--allocator tuned` applies the live node's settings (`noksr_ros.allocator.tune_allocator`) in
each run, so the peak follows the memory actually in use more closely.

    python -m bench.bench_segment_size [--seed 1001] [--length-m 40] [--scan-rate-hz 10]
        [--max-range-m 30] [--targets 1,10,50] [--sizes 110.0,25.6,12.8] [--samples 1000000]
        [--allocator default|tuned] [--name segment_size]

The drive is cached under out/bench/drives/ (re-runs skip the simulation). Prints a table and
writes out/bench/<name>.json (default segment_size.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.common import OUT_DIR, report
from noksr_ros.process_memory import peak_rss_mb

ANCHOR_MARGIN_M = 2.0  # the anchor sits this far below the points' bounding-box corner


def cached_drive(seed: int, length_m: float, scan_rate_hz: float = 10.0) -> Path:
    """Simulate the drive once (npz + GT mesh, no bag) under out/bench/drives/; reuse it after."""
    from noksr_ros.data.drive import simulate_drive

    out = OUT_DIR / 'drives' / f'seed{seed}_{length_m:g}m_{scan_rate_hz:g}hz'
    if not (out / 'npz' / 'drive.json').exists() or not (out / 'gt_mesh.ply').exists():
        print(f'simulating seed {seed}, {length_m:g} m at {scan_rate_hz:g} Hz -> {out}')
        simulate_drive(seed, out, length_m=length_m, scan_rate_hz=scan_rate_hz,
                       write_bag=False, overwrite=True, progress=False)
    return out


def segment_count(points: np.ndarray, size_m: float, halo_m: float) -> int:
    """Segments a map anchored at the origin would hold: those whose cube or halo has points."""
    from noksr_ros.segment_grid import halo_segments

    return len(halo_segments(points, size_m, halo_m))


def pick_sizes(points: np.ndarray, targets: list[int], voxel_m: float, halo_m: float
               ) -> list[float]:
    """
    For each target count, the segment size (a multiple of `voxel_m`) closest to it (log).

    `points` are relative to the map origin (all coordinates >= 0).
    """
    # One point per 0.25 m cell: the same extent and (up to a few boundary cells) the same halo
    # contacts as all points, at a fraction of the cost.
    _, first = np.unique(np.floor(points / 0.25).astype(np.int64), axis=0, return_index=True)
    sample = points[first]
    extent = float(np.max(points.max(axis=0)))
    top = (extent + 2 * halo_m + 1.0) / voxel_m
    steps = np.unique(np.round(np.geomspace(4, top, 200)).astype(int))
    counts = {int(s): segment_count(sample, s * voxel_m, halo_m) for s in steps}
    sizes = []
    for target in targets:
        # Ties (the same count over a range of sizes): the smallest size.
        best = min(counts, key=lambda s: (abs(np.log(counts[s] / target)), s))
        sizes.append(round(best * voxel_m, 6))
    return sizes


def _child(drive: str, overrides: dict[str, Any], anchor_m: list[float], tuned: bool = False
           ) -> dict[str, Any]:
    """Body of the spawned process: batch reconstruction with the map origin at `anchor_m`."""
    if tuned:  # before torch starts its threads, as the node does
        from noksr_ros.allocator import tune_allocator

        tune_allocator()
    from noksr_ros.config import NoksrConfig
    from noksr_ros.offline import DriveSource, model_from_config, npz_source, reconstruct_drive

    cfg = NoksrConfig().with_overrides(overrides)
    t0 = time.perf_counter()
    model, device = model_from_config(cfg)
    baseline_mb = peak_rss_mb()
    source = npz_source(drive)

    def scans():
        anchor = np.eye(4)
        anchor[:3, 3] = anchor_m
        first = True
        for stamp, points, pose in source.scans:
            if first:  # empty: sets the map origin only (see the module docstring)
                yield stamp - 0.05, np.zeros((0, 3), np.float32), anchor
                first = False
            yield stamp, points, pose

    result = reconstruct_drive(DriveSource(scans(), None, source.description), cfg, model,
                               device, progress=False)
    wall = time.perf_counter() - t0
    return {'vertices': np.asarray(result.vertices, np.float64),
            'faces': np.asarray(result.faces, np.int64), 'segments': result.segments,
            'failed': len(result.failed), 'network_s': result.network_s,
            'meshing_s': result.meshing_s, 'wall_s': wall,
            'peak_rss_mb': peak_rss_mb(),
            'baseline_rss_mb': baseline_mb}


def run_isolated(drive: Path, overrides: dict[str, Any], anchor_m: np.ndarray,
                 tuned: bool = False) -> dict:
    """`compare.run_isolated` with the anchored source: a fresh spawned process per run."""
    from noksr_ros.evaluation.compare import in_fresh_process

    return in_fresh_process(_child, str(drive), overrides, [float(a) for a in anchor_m], tuned)


def main() -> None:
    """Simulate (or reuse) the drive, reconstruct it at each segment size, score, report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--seed', type=int, default=1001)
    parser.add_argument('--length-m', type=float, default=40.0)
    parser.add_argument('--scan-rate-hz', type=float, default=10.0)
    parser.add_argument('--max-range-m', type=float, default=30.0,
                        help='ingest.max_range_m for every row (and the GT crop)')
    parser.add_argument('--targets', default='1,10,50', help='segment counts to aim for')
    parser.add_argument('--sizes', default='', help='segment sizes (m), instead of --targets')
    parser.add_argument('--samples', type=int, default=1_000_000,
                        help='surface samples per mesh for the metrics')
    parser.add_argument('--allocator', choices=('default', 'tuned'), default='default',
                        help="'tuned': the live node's glibc malloc settings in each run")
    parser.add_argument('--name', default='segment_size', help='out/bench/<name>.json')
    args = parser.parse_args()
    from noksr_ros.config import NoksrConfig
    from noksr_ros.evaluation.compare import observed_points, score_row
    from noksr_ros.io.ply import read_ply
    from noksr_ros.reconstructor import Reconstructor

    drive = cached_drive(args.seed, args.length_m, args.scan_rate_hz)
    base = {'ingest.max_range_m': args.max_range_m}
    cfg = NoksrConfig().with_overrides(base)
    observed = observed_points(drive, base)
    anchor = np.floor(observed.min(axis=0)) - ANCHOR_MARGIN_M
    extent = observed.max(axis=0) - anchor
    halo = Reconstructor.halo_m.fget(SimpleNamespace(config=cfg))  # the halo it will use
    if args.sizes:
        sizes = [float(s) for s in args.sizes.split(',')]
    else:
        sizes = pick_sizes(observed - anchor, [int(t) for t in args.targets.split(',')],
                           cfg.meshing.voxel_size_m, halo)
    print(f'{len(observed)} input points, extent {np.round(extent, 1).tolist()} m from the '
          f'anchor; halo {halo} m; segment sizes {sizes}')
    gt_v, gt_f = read_ply(drive / 'gt_mesh.ply')
    rows = []
    for size in sizes:
        overrides = {**base, 'mapping.segment_size_m': size}
        print(f'segment_size_m={size} ...', flush=True)
        run = run_isolated(drive, overrides, anchor, args.allocator == 'tuned')
        row = score_row(drive.name, f'noksr_{size:g}m', run['vertices'], run['faces'], gt_v,
                        gt_f, observed, args.samples)
        rows.append({'segment_size_m': size, 'segments': run['segments'],
                     'expected_segments': segment_count(observed - anchor, size, halo),
                     'cd_cm': row['cd_cm'], 'acc_cm': row['acc_cm'], 'comp_cm': row['comp_cm'],
                     'f10': row['f10'], 'faces': row['faces'], 'wall_s': run['wall_s'],
                     'network_s': run['network_s'], 'peak_rss_mb': run['peak_rss_mb'],
                     'above_baseline_mb': run['peak_rss_mb'] - run['baseline_rss_mb'],
                     'failed_segments': run['failed']})
        print(f"  {run['segments']} segments, CD {row['cd_cm']:.3f} cm, F@10 {row['f10']:.1f}, "
              f"{run['wall_s']:.0f} s, peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    report(args.name, rows, ['segment_size_m', 'segments', 'cd_cm', 'acc_cm', 'comp_cm',
                                  'f10', 'faces', 'wall_s', 'network_s', 'peak_rss_mb',
                                  'above_baseline_mb', 'failed_segments'],
           extra={'drive': {'seed': args.seed, 'length_m': args.length_m,
                            'scan_rate_hz': args.scan_rate_hz, 'path': str(drive)},
                  'ingest.max_range_m': args.max_range_m, 'anchor_m': anchor.tolist(),
                  'extent_m': extent.tolist(), 'halo_m': halo, 'samples': args.samples,
                  'allocator': args.allocator})
    largest, smallest = rows[0], rows[-1]
    print(f"peak RSS {largest['peak_rss_mb']:.0f} MB ({largest['segments']} segments) -> "
          f"{smallest['peak_rss_mb']:.0f} MB ({smallest['segments']} segments); above the "
          f"model-loaded baseline {largest['above_baseline_mb']:.0f} -> "
          f"{smallest['above_baseline_mb']:.0f} MB; CD change "
          f"{smallest['cd_cm'] - largest['cd_cm']:+.3f} cm (paper: < 0.1 cm)")


if __name__ == '__main__':
    main()

"""
One forward pass over several segments against one pass per segment: is batching faster (issue 4).

Takes the segments of a simulated drive as the Reconstructor would feed them (own points + halo,
the corners each owns) and times, for groups of 1, 2, 4 and 8 neighbouring segments, the network
run once per segment against one run over the group's points and corners together (halo points
that two segments share are kept once, as a batched pass would). Median of `--repeats` runs each,
side by side in one process. The batched values are not used for anything: only the time counts.

Such a grouped pass is not exact: each segment's values then depend on the points of the others.
An exact batched pass (segments kept apart inside one call) can save at most the fixed cost of a
call per segment, so the bench also times a pass over a tiny input (256 points and corners of one
segment; `fixed_s`) and reports `exact_max_speedup` = separate / (separate - (n - 1) * fixed).

    python -m bench.bench_batching [--length-m 40] [--seed 1104] [--repeats 3]

Prints a table and writes out/bench/batching.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile

import numpy as np

from bench.common import median_s, report
from noksr_ros.config import NoksrConfig
from noksr_ros.data.drive import simulate_drive
from noksr_ros.normals import refine_normals
from noksr_ros.offline import model_from_config, npz_source
from noksr_ros.reconstructor import Reconstructor
from noksr_ros.segment_grid import active_corners, corner_box, owned


def _segment_inputs(rec: Reconstructor, key: int) -> tuple[np.ndarray, ...]:
    """(points, normals, corners) of one segment exactly as `compute_corners` builds them."""
    seg = rec.map.get(key)
    halo_p, halo_n = rec.map.gather_halo(key, rec.halo_m)
    points = np.concatenate([seg.points, halo_p])
    normals = refine_normals(points, np.concatenate([seg.normals, halo_n]),
                             rec.config.normals.segment_knn,
                             share_cell_m=rec.config.normals.segment_cell_m)
    lo, hi = corner_box(seg.ijk, rec.seg_vox)
    voxel = rec.config.meshing.voxel_size_m
    corners = owned(active_corners(points, voxel, rec.config.meshing.dilation_voxels), lo, hi)
    return points, normals, corners


def main() -> None:
    """Time per-segment against grouped forward passes and report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--length-m', type=float, default=40.0)
    parser.add_argument('--seed', type=int, default=1104)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    config = NoksrConfig().with_overrides({'model.device': 'auto'})
    model, device = model_from_config(config)
    rec = Reconstructor(config, model, device)
    with tempfile.TemporaryDirectory(prefix='noksr-bench-batch-') as tmp:
        drive = simulate_drive(args.seed, Path(tmp) / 'drive', length_m=args.length_m,
                               write_bag=False, progress=False)
        for stamp, points, pose in npz_source(drive.out_dir).scans:
            rec.integrate(stamp, points, pose)
    keys = rec.pending(force=True)  # nearest to the last pose first: neighbouring segments
    busy = [k for k in keys if len(rec.map.get(k).points) > 1000][:8]
    inputs = [_segment_inputs(rec, k) for k in busy]
    voxel = config.meshing.voxel_size_m
    tiny = tuple(a[:256] for a in inputs[0])
    fixed = median_s(lambda: rec.evaluate(*tiny, voxel), repeats=max(5, args.repeats))
    rows = []
    for size in (1, 2, 4, 8):
        group = inputs[:size]
        if len(group) < size:
            break

        def separate(group=group) -> None:
            for points, normals, corners in group:
                rec.evaluate(points, normals, corners, voxel)

        points = np.concatenate([g[0] for g in group])
        _, first = np.unique(points, axis=0, return_index=True)  # shared halo points once
        first.sort()
        batch = (points[first], np.concatenate([g[1] for g in group])[first],
                 np.concatenate([g[2] for g in group]))

        def together(batch=batch) -> None:
            rec.evaluate(*batch, voxel)

        t_sep = median_s(separate, repeats=args.repeats)
        t_all = median_s(together, repeats=args.repeats)
        rows.append({'segments': size, 'points': int(sum(len(g[0]) for g in group)),
                     'points_batched': len(first), 'corners': len(batch[2]),
                     'separate_s': t_sep, 'batched_s': t_all, 'speedup': t_sep / t_all,
                     'exact_max_speedup': t_sep / max(t_sep - (size - 1) * fixed, 1e-9)})
    report('batching', rows, ['segments', 'points', 'points_batched', 'corners', 'separate_s',
                              'batched_s', 'speedup', 'exact_max_speedup'],
           extra={'device': str(device), 'drive': {'seed': args.seed, 'length_m': args.length_m},
                  'fixed_s': fixed})
    print(f'fixed cost of a forward pass (256 points and corners): {fixed * 1000:.1f} ms')


if __name__ == '__main__':
    main()

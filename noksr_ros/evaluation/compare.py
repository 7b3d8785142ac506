"""
`noksr evaluate`: ours and the classical baselines on the same simulated drives, one table.

Each method runs in a fresh process (spawn) so its wall time and peak RSS are its own; the mesh
comes back and is scored against the drive's exact ground truth with the protocol of
`metrics.mesh_quality` (GT cropped to 0.5 m around the accumulated input points, the same crop for
every method); the `*_seen` columns score against the GT that input points lie on (the proximity
crop also counts backs of poles, far sides of thin walls: see `metrics`).

Methods (all on the same scans of the drive):
- `noksr`: the Reconstructor in batch mode (ingest, normals, segments, network, meshing).
- `tsdf_10cm`, `tsdf_5cm`: LiDAR ray TSDF fusion (open3d VoxelBlockGrid) at 0.1 m and 0.05 m.
- `poisson`: screened Poisson (open3d) on the accumulated oriented points at ~0.1 m octree cells,
  5% lowest-density vertices trimmed; its time includes the same ingest and normals as ours.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
import multiprocessing
from pathlib import Path
import time
from typing import Any, TypeVar

import numpy as np

from noksr_ros.process_memory import peak_rss_mb

T = TypeVar('T')

METHODS = ('noksr', 'tsdf_10cm', 'tsdf_5cm', 'poisson')
CROP_M = 0.5
# The seen-GT scores (`*_seen`): GT with an input point on its own plane within CROP_M, this
# close to the plane (4x the simulated range noise of 2 cm: noise moves points along the ray).
SEEN_TOL_M = 0.08


@dataclass
class MethodRun:
    """A method's mesh (map frame) with its wall time and the peak RSS of its process."""

    vertices: np.ndarray
    faces: np.ndarray
    wall_s: float
    peak_rss_mb: float


def _run_method(method: str, drive: str, overrides: dict[str, Any]) -> MethodRun:
    """Body of the child process: build one method's mesh of one drive."""
    from noksr_ros.config import NoksrConfig

    cfg = NoksrConfig().with_overrides(overrides)
    voxel = cfg.meshing.voxel_size_m
    # Imports (torch ~1.1 s, open3d ~0.5 s here) are process start-up, not reconstruction: each
    # method imports what it needs before the clock starts (and nothing else: peak RSS).
    if method == 'noksr':
        from noksr_ros.offline import model_from_config, npz_source, reconstruct_drive
    elif method.startswith('tsdf_'):
        from noksr_ros.evaluation.baselines import tsdf_fusion
        from noksr_ros.offline import npz_source
    elif method == 'poisson':
        from noksr_ros.evaluation.baselines import poisson_reconstruction
        from noksr_ros.normals import refine_normals
        from noksr_ros.training.scenes import accumulate_drive
    t0 = time.perf_counter()
    if method == 'noksr':
        model, device = model_from_config(cfg)
        result = reconstruct_drive(npz_source(drive), cfg, model, device, progress=False)
        vertices, faces = result.vertices, result.faces
    elif method.startswith('tsdf_'):
        size = {'tsdf_10cm': 0.10, 'tsdf_5cm': 0.05}[method]
        scans = ((points, pose) for _, points, pose in npz_source(drive).scans)
        vertices, faces = tsdf_fusion(scans, size,
                                      max_range_m=cfg.ingest.max_range_m)
    elif method == 'poisson':
        # Our input points, with normals estimated as ours are (PCA over the accumulated
        # points, facing the sensor), over the whole drive at once.
        points, rays, origin = accumulate_drive(drive, cfg, progress=False)
        normals = refine_normals(points, rays, cfg.normals.segment_knn or cfg.normals.knn,
                                 share_cell_m=cfg.normals.segment_cell_m)
        vertices, faces = poisson_reconstruction(points.astype(np.float64) + origin, normals,
                                                 voxel)
    else:
        raise ValueError(f'unknown method {method!r}; valid: {", ".join(METHODS)}')
    wall = time.perf_counter() - t0
    rss = peak_rss_mb()
    return MethodRun(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), wall, rss)


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a fresh spawned process: its own peak RSS, no caches shared with us."""
    ctx = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def run_isolated(method: str, drive: str | Path, overrides: dict[str, Any]) -> MethodRun:
    """Run `method` on `drive` in a fresh spawned process (own peak RSS, no shared caches)."""
    return in_fresh_process(_run_method, method, str(drive), overrides)


def observed_points(drive: str | Path, overrides: dict[str, Any]) -> np.ndarray:
    """
    Accumulated input points of the drive in the map frame (the evaluation crop).

    Every point the range filter and density cap keep, whatever the normal settings: the crop
    must not shrink where a method's filters drop points (grazing hits of per-scan normals).
    """
    from noksr_ros.config import NoksrConfig
    from noksr_ros.training.scenes import accumulate_drive

    points, _, origin = accumulate_drive(drive, NoksrConfig().with_overrides(overrides),
                                         progress=False, scan_pca=False)
    return points.astype(np.float64) + origin


def evaluate_drive(drive: str | Path, methods: tuple[str, ...] = METHODS,
                   overrides: dict[str, Any] | None = None, n_samples: int = 1_000_000,
                   log=print) -> list[dict[str, Any]]:
    """One row per method: mesh quality (cm, F in %) plus time and peak RSS."""
    from noksr_ros.io.ply import read_ply

    overrides = dict(overrides or {})
    drive = Path(drive)
    gt_v, gt_f = read_ply(drive / 'gt_mesh.ply')
    observed = observed_points(drive, overrides)
    rows = []
    for method in methods:
        log(f'{drive.name}: {method} ...')
        run = run_isolated(method, drive, overrides)
        row = score_row(drive.name, method, run.vertices, run.faces, gt_v, gt_f, observed,
                        n_samples)
        row.update(time_s=run.wall_s, peak_rss_mb=run.peak_rss_mb)
        rows.append(row)
        log(f'  CD {row["cd_cm"]:.2f} cm, F@10 {row["f10"]:.1f}, {run.wall_s:.1f} s')
    return rows


def score_row(drive: str, method: str, vertices: np.ndarray, faces: np.ndarray,
              gt_vertices: np.ndarray, gt_faces: np.ndarray, observed: np.ndarray,
              n_samples: int = 1_000_000) -> dict[str, Any]:
    """Quality of one mesh against the ground truth: CD/accuracy/completeness in cm, F in %."""
    from noksr_ros.evaluation.metrics import mesh_quality, tau_key

    q = mesh_quality(vertices, faces, gt_vertices, gt_faces, n_samples=n_samples,
                     observed_points=observed, crop_m=CROP_M, with_p2p=False,
                     surface_tol_m=SEEN_TOL_M)
    row = {'drive': drive, 'method': method, 'cd_cm': 100 * q['chamfer_l1'],
           'acc_cm': 100 * q['accuracy'], 'comp_cm': 100 * q['completeness']}
    for tau in (0.05, 0.10, 0.20):
        row[f'f{round(tau * 100)}'] = 100 * q[tau_key('fscore', tau)]
    row['cd_seen_cm'] = 100 * q['chamfer_l1_seen']
    row['f10_seen'] = 100 * q[tau_key('fscore', 0.10) + '_seen']
    row['p10'] = 100 * q[tau_key('precision', 0.10)]
    row['r10'] = 100 * q[tau_key('recall', 0.10)]
    row['r10_seen'] = 100 * q[tau_key('recall', 0.10) + '_seen']
    row['faces'] = len(faces)
    return row


def mean_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-method means over drives (drive = 'mean'), in METHODS order."""
    out = []
    for method in dict.fromkeys(r['method'] for r in rows):
        mine = [r for r in rows if r['method'] == method]
        mean = {'drive': 'mean', 'method': method}
        for key, value in mine[0].items():
            if isinstance(value, (int, float)) and key not in ('drive', 'method'):
                mean[key] = float(np.mean([r[key] for r in mine]))
        out.append(mean)
    return out

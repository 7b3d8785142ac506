"""
Training scenes from simulated drives: accumulate scans exactly as at run time, load the GT.

The accumulated points are cached next to the drive (`training_points.npz`) because normal
estimation of a few hundred scans takes a minute on a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from noksr_ros.config import NoksrConfig
from noksr_ros.data.npz_drive import iter_npz_drive, read_drive_json, resolve_npz_dir
from noksr_ros.ingest import ScanIngestor
from noksr_ros.io.ply import read_ply
from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.training.sampling import TrainingScene

CACHE_NAME = 'training_points.npz'  # with per-scan normals (normals.scan_pca)
CACHE_NAME_RAYS = 'training_points_rays.npz'  # with sensor rays


def accumulate_drive(drive_dir: str | Path, config: NoksrConfig, progress: bool = True,
                     scan_pca: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    (points (N,3) float32 map-local, directions (N,3), origin_m (3,) float64) of a whole drive.

    Same ingest and density cap as the Reconstructor; the map-local origin is the first pose.
    The directions are normals or sensor rays as `normals.scan_pca` says (`scan_pca` overrides:
    a baseline that needs normals asks for them).
    """
    ingest = ScanIngestor.from_config(config, scan_pca)
    seg_map, origin = None, None
    npz_dir = resolve_npz_dir(drive_dir)
    total = read_drive_json(npz_dir).get('num_scans')
    for stamp_ns, points, _, pose in tqdm(iter_npz_drive(npz_dir), total=total, leave=False,
                                          desc='accumulate', disable=not progress):
        if seg_map is None:
            origin = np.asarray(pose, np.float64)[:3, 3].copy()
            seg_map = SegmentMap.from_config(config.mapping, origin_m=origin)
        local, normals = ingest.prepare(points, pose, origin, skip=seg_map.full_cells)
        seg_map.integrate(local, normals, stamp_ns * 1e-9)
    if seg_map is None:
        raise ValueError(f'drive {drive_dir} has no scans')
    segments = [seg_map.get(k) for k in seg_map.keys()]
    return (np.concatenate([s.points for s in segments]),
            np.concatenate([s.normals for s in segments]), origin)


def load_training_scene(drive_dir: str | Path, config: NoksrConfig) -> TrainingScene:
    """TrainingScene of a simulated drive (GT moved to the same map-local frame), cached."""
    drive_dir = Path(drive_dir)
    cache = drive_dir / (CACHE_NAME if config.normals.scan_pca else CACHE_NAME_RAYS)
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            points, normals, origin = data['points'], data['normals'], data['origin_m']
    else:
        points, normals, origin = accumulate_drive(drive_dir, config)
        np.savez(cache, points=points, normals=normals, origin_m=origin)
    vertices, faces = read_ply(drive_dir / 'gt_mesh.ply')
    return TrainingScene(points, normals, vertices - origin, faces)

"""
Run the model on one segment: its points (plus halo) -> SDF/UDF at the corners it owns.

Numpy in, numpy out; torch and the device stay inside. GPU memory is released after each call so a
long drive never accumulates cached blocks.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
import torch

from noksr_ros.model.noksr import NoksrModel


def point_distance(points: np.ndarray, corners_ijk: np.ndarray, voxel_size_m: float,
                   cap_m: float) -> np.ndarray:
    """
    (M,) float32 distance from each corner to the nearest input point, capped at `cap_m`.

    Exact, hence identical for a corner whoever computes it, as long as the points within `cap_m`
    are all present: the seam-safe trimming field.
    """
    if len(corners_ijk) == 0 or len(points) == 0:
        return np.full(len(corners_ijk), cap_m, np.float32)
    tree = cKDTree(np.asarray(points, np.float64))
    dist, _ = tree.query(corners_ijk * voxel_size_m, distance_upper_bound=cap_m, workers=-1)
    return np.minimum(dist, cap_m).astype(np.float32)


def corner_values(model: NoksrModel, points: np.ndarray, normals: np.ndarray,
                  corners_ijk: np.ndarray, voxel_size_m: float,
                  device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """
    (sdf (M,), udf (M,)) float32 at lattice corners (M,3) from oriented points (N,3).

    With no points every corner is 'far' (sdf -clamp outside, udf +inf): nothing gets meshed.
    """
    m = len(corners_ijk)
    if m == 0 or len(points) == 0:
        return (np.full(m, -model.spec.clamp_m, np.float32), np.full(m, np.inf, np.float32))
    try:
        with torch.no_grad():
            pts = torch.from_numpy(np.ascontiguousarray(points, np.float32)).to(device)
            nrm = torch.from_numpy(np.ascontiguousarray(normals, np.float32)).to(device)
            enc = model.encode(pts, nrm)
            query = torch.from_numpy((corners_ijk * voxel_size_m).astype(np.float32)).to(device)
            sdf, udf = model.decode(enc, query)
            return sdf.cpu().numpy(), udf.cpu().numpy()
    finally:
        if device.type == 'cuda':
            torch.cuda.empty_cache()

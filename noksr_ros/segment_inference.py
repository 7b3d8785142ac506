"""
Run the model on one segment: its points (plus halo) -> SDF/UDF at the corners it owns.

Numpy in, numpy out; torch and the device stay inside. GPU memory is released after each call so a
long drive never accumulates cached blocks. A forward pass that runs out of memory (a dense segment
on a small GPU, or a capped process) is retried with smaller query chunks, then on the CPU; only
when nothing fits does the caller get `InferenceMemoryError`; the segment then stays dirty.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
import threading

import numpy as np
from scipy.spatial import cKDTree
import torch

from noksr_ros import kdtree_query
from noksr_ros.errors import InferenceMemoryError
from noksr_ros.model.noksr import NoksrModel

MIN_QUERY_CHUNK = 256  # below this, smaller chunks no longer save memory worth having
CHUNK_SHRINK = 4


# How the CPU side says it: torch's allocator, and oneDNN when its scratch buffers cannot be had.
CPU_OOM_MESSAGES = ("can't allocate memory", 'out of memory', 'could not create a primitive')


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU paths a RuntimeError with one of the above."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in CPU_OOM_MESSAGES)


@dataclass
class MemoryFallbacks:
    """How often forward passes ran out of memory and how they recovered (for diagnostics)."""

    out_of_memory: int = 0   # out-of-memory errors caught
    smaller_chunks: int = 0  # segments finished with a smaller query chunk than configured
    cpu_fallbacks: int = 0   # segments finished on the CPU after the device ran out
    onednn_off: int = 0      # segments finished on the CPU with oneDNN kernels switched off
    failed: int = 0          # segments that did not fit anywhere (left dirty, retried later)


# Input points whose centroid decides whether data lie around a corner or off to one side.
SIDE_NEIGHBOURS = 32
# Corners per neighbour query of that test: about 1 MB of temporaries, so that a process close
# to its memory limit after a forward pass still finishes the segment.
SIDE_CHUNK = 1024


def point_distance(points: np.ndarray, corners_ijk: np.ndarray, voxel_size_m: float,
                   cap_m: float) -> np.ndarray:
    """
    (M,) float32 distance from each corner to the nearest input point, capped at `cap_m`.

    Exact, hence identical for a corner whoever computes it, as long as the points within `cap_m`
    are all present: the seam-safe trimming field.
    """
    return trim_distance(points, corners_ijk, voxel_size_m, cap_m)


def trim_distance(points: np.ndarray, corners_ijk: np.ndarray, voxel_size_m: float,
                  cap_m: float, near_m: float | None = None, trim_m: float = 0.0,
                  side_ratio: float = 1.0, sdf: np.ndarray | None = None) -> np.ndarray:
    """
    The trimming field: `point_distance`, set to `cap_m` where the data lie off to one side.

    With `near_m` (and the corners' `sdf`), a corner near the surface (|sdf| < 2 voxels: only
    such corners sit on edges that carry vertices) farther than `near_m` but not beyond `trim_m`
    from the data gets `cap_m` (its faces are trimmed) when the centroid of its
    `SIDE_NEIGHBOURS` nearest points (within `cap_m`) is at least `side_ratio` times their mean
    distance away from it: the data lie on one side, so a surface there would extend past an edge
    (a wall's end, a car's roof line) where the ground truth turns. A corner in a gap between scan
    lines has data around it (centroid near the corner) and keeps its distance. Like the distance
    itself, this depends only on the points within `cap_m` and the corner's own value:
    seam-safe with a wide enough halo.
    """
    if len(corners_ijk) == 0 or len(points) == 0:
        return np.full(len(corners_ijk), cap_m, np.float32)
    # Unbalanced, non-compact nodes: twice as fast to build, queries no slower, same results.
    pts = np.asarray(points, np.float64)
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)
    query = corners_ijk * voxel_size_m
    dist, _ = kdtree_query.query(tree, query, distance_upper_bound=cap_m)
    dist = np.minimum(dist, cap_m).astype(np.float32)
    if near_m is None or near_m >= trim_m or sdf is None:
        return dist
    ask = np.flatnonzero((dist > near_m) & (dist <= trim_m)
                         & (np.abs(sdf) < 2.0 * voxel_size_m))
    if len(ask) == 0:
        return dist
    k = min(SIDE_NEIGHBOURS, len(pts))
    for start in range(0, len(ask), SIDE_CHUNK):
        rows = ask[start:start + SIDE_CHUNK]
        one_sided = _one_sided(tree, pts, query[rows], k, cap_m, side_ratio)
        dist[rows[one_sided]] = np.float32(cap_m)
    return dist


def _one_sided(tree: cKDTree, pts: np.ndarray, query: np.ndarray, k: int, cap_m: float,
               side_ratio: float) -> np.ndarray:
    """(C,) bool: the centroid of each query's k nearest points is off to one side."""
    nd, ni = kdtree_query.query(tree, query, k=k, distance_upper_bound=cap_m)
    nd, ni = nd.reshape(len(query), k), ni.reshape(len(query), k)
    found = np.isfinite(nd)
    count = np.maximum(found.sum(axis=1), 1)
    offsets = np.where(found[..., None], pts[np.where(found, ni, 0)] - query[:, None], 0.0)
    centroid_off = np.linalg.norm(offsets.sum(axis=1), axis=1) / count
    mean_dist = np.where(found, nd, 0.0).sum(axis=1) / count
    return centroid_off >= side_ratio * mean_dist


def _forward(model: NoksrModel, points: np.ndarray, normals: np.ndarray, query_m: np.ndarray,
             device: torch.device, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with torch.no_grad():
            pts = torch.from_numpy(np.ascontiguousarray(points, np.float32)).to(device)
            nrm = torch.from_numpy(np.ascontiguousarray(normals, np.float32)).to(device)
            enc = model.encode(pts, nrm)
            sdf, udf = model.decode(enc, torch.from_numpy(query_m).to(device), chunk)
            return sdf.cpu().numpy(), udf.cpu().numpy()
    finally:
        if device.type == 'cuda':
            torch.cuda.empty_cache()


class CornerEvaluator:
    """
    SDF/UDF at lattice corners from oriented points, with the out-of-memory fallbacks.

    One per Reconstructor; `fallbacks` counts what happened. The CPU copy of the model for the
    device fallback is made only the first time it is needed.
    """

    def __init__(self, model: NoksrModel, device: torch.device) -> None:
        self.model, self.device = model, device
        self.fallbacks = MemoryFallbacks()
        self._cpu_model: NoksrModel | None = None
        self._lock = threading.Lock()

    def __call__(self, points: np.ndarray, normals: np.ndarray, corners_ijk: np.ndarray,
                 voxel_size_m: float) -> tuple[np.ndarray, np.ndarray]:
        """
        (sdf (M,), udf (M,)) float32 at lattice corners (M,3) from oriented points (N,3).

        With no points every corner is 'far' (sdf -clamp outside, udf +inf): nothing gets meshed.
        """
        m = len(corners_ijk)
        if m == 0 or len(points) == 0:
            return (np.full(m, -self.model.spec.clamp_m, np.float32),
                    np.full(m, np.inf, np.float32))
        query_m = (corners_ijk * voxel_size_m).astype(np.float32)
        values = self._shrinking(self.model, self.device, points, normals, query_m)
        if values is None and self.device.type != 'cpu':
            values = self._shrinking(self._model_on_cpu(), torch.device('cpu'), points, normals,
                                     query_m)
            if values is not None:
                self.fallbacks.cpu_fallbacks += 1
        if values is None:
            # oneDNN can keep failing once its kernels could not be created under memory
            # pressure (seen with a capped address space): the plain CPU kernels still work.
            with torch.backends.mkldnn.flags(enabled=False):
                values = self._shrinking(self._model_on_cpu(), torch.device('cpu'), points,
                                         normals, query_m)
            if values is not None:
                self.fallbacks.onednn_off += 1
        if values is None:
            self.fallbacks.failed += 1
            raise InferenceMemoryError(
                f'a forward pass over {len(points)} points and {m} corners does not fit in '
                f'memory even in chunks of {MIN_QUERY_CHUNK} queries; the segment stays dirty '
                'and is retried later')
        return values

    def _shrinking(self, model: NoksrModel, device: torch.device, points: np.ndarray,
                   normals: np.ndarray, query_m: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """The values with ever smaller chunks on `device`; None when even the smallest fails."""
        chunk = model.spec.query_chunk
        while True:
            try:
                values = _forward(model, points, normals, query_m, device, chunk)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, see below
                if not is_out_of_memory(exc):
                    raise
                self.fallbacks.out_of_memory += 1
                if chunk <= MIN_QUERY_CHUNK:
                    return None
                chunk = max(MIN_QUERY_CHUNK, chunk // CHUNK_SHRINK)
                continue
            if chunk < model.spec.query_chunk:
                self.fallbacks.smaller_chunks += 1
            return values

    def _model_on_cpu(self) -> NoksrModel:
        if self.device.type == 'cpu':
            return self.model
        with self._lock:
            if self._cpu_model is None:
                self._cpu_model = copy.deepcopy(self.model).to('cpu').eval()
            return self._cpu_model

"""
The one orchestrator: scans in, per-segment meshes out. Used by the ROS node and the CLI alike.

integrate(stamp, points_sensor, T_map_sensor)   filter, normals, map-local, SegmentMap
update(max_segments)                           dirty segments nearest the vehicle first:
network -> owned corner values -> re-mesh the
segment and the neighbours that read them
finish()                                       everything pending, no debounce
export_mesh(path)                              the whole map (memory + store) as one PLY
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
import time

import numpy as np
import torch

from noksr_ros.config import NoksrConfig
from noksr_ros.errors import InferenceMemoryError
from noksr_ros.ingest import ScanIngestor
from noksr_ros.mapping.keys import key_from_ijk
from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.mapping.store import SegmentStore
from noksr_ros.model.noksr import NoksrModel
from noksr_ros.segment_grid import halo_segments, voxels_per_segment
from noksr_ros.segment_inference import CornerEvaluator
from noksr_ros.segment_mesher import SegmentMesh, SegmentMesher, map_frame_mesh, write_map_mesh

RETRY_AFTER_S = 5.0  # scan time before a segment that ran out of memory is tried again


@dataclass
class UpdateResult:
    """What one `update()` changed: new meshes by key, removed keys, timings in seconds."""

    meshes: dict[int, SegmentMesh] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)
    reconstructed: list[int] = field(default_factory=list)
    network_s: float = 0.0
    meshing_s: float = 0.0
    failed: dict[int, str] = field(default_factory=dict)  # key -> why (left dirty, retried)


@dataclass
class IntegrateResult:
    """Counts of one integrated scan."""

    points_in: int
    points_kept: int
    touched: set[int]


class Reconstructor:
    """Incremental NoKSR over a segment map; see the module docstring for the flow."""

    def __init__(self, config: NoksrConfig, model: NoksrModel,
                 device: torch.device = torch.device('cpu')) -> None:
        self.config, self.model, self.device = config, model.to(device).eval(), device
        self.evaluate = CornerEvaluator(self.model, device)
        self.failed: dict[int, tuple[float, str]] = {}  # key -> (scan stamp of the failure, why)
        mapping = config.mapping
        # Resume an existing store with its own origin; otherwise wait for the first pose.
        resumable = mapping.store_dir and SegmentStore(mapping.store_dir).read_meta() is not None
        self.map = SegmentMap.from_config(mapping) if resumable else None
        self.ingest = ScanIngestor.from_config(config)
        self.seg_vox = voxels_per_segment(mapping.segment_size_m, config.meshing.voxel_size_m)
        self.mesher = None if self.map is None else self._make_mesher()
        self.vehicle_m = np.zeros(3)
        self.latest_stamp_s = -np.inf
        self._dirty_since: dict[int, float] = {}  # scan stamp at which a segment became dirty
        self._built_points: dict[int, int] = {}  # own points at a segment's last reconstruction
        self.scans = 0

    @property
    def halo_m(self) -> float:
        """
        Halo actually used: the configured one, widened when needed.

        Corner activity and the trimming distance depend on points that far away, so they are
        exact at segment faces only with a halo at least this wide.
        """
        mesh = self.config.meshing
        return max(self.config.mapping.halo_m, (mesh.dilation_voxels + 2) * mesh.voxel_size_m,
                   2 * mesh.udf_trim_m + mesh.voxel_size_m)

    def _make_mesher(self) -> SegmentMesher:
        mesh = self.config.meshing
        return SegmentMesher(self.map, self.seg_vox, mesh.voxel_size_m, mesh.udf_trim_m,
                             mesh.trim_source, mesh.dilation_voxels,
                             self.config.normals.segment_knn,
                             self.config.normals.segment_cell_m,
                             mesh.trim_near_m, mesh.trim_side_ratio)

    def _start_map(self, first_pose: np.ndarray) -> None:
        """Create the map with its origin at the first sensor position."""
        self.map = SegmentMap.from_config(self.config.mapping, origin_m=first_pose[:3, 3])
        self.mesher = self._make_mesher()

    @property
    def origin_m(self) -> np.ndarray | None:
        """Map-frame position of the map-local origin (float64), set by the first scan."""
        return None if self.map is None else self.map.origin_m

    def integrate(self, stamp_s: float, points_sensor: np.ndarray,
                  T_map_sensor: np.ndarray) -> IntegrateResult:  # noqa: N803
        """Add one scan: (N,3) float32 sensor-frame points and the 4x4 sensor pose in the map."""
        pose = np.asarray(T_map_sensor, np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError('T_map_sensor must be a finite 4x4 matrix')
        if self.map is None:
            self._start_map(pose)
        local, normals = self.ingest.prepare(points_sensor, pose, self.map.origin_m,
                                             skip=self.map.full_cells)
        touched = self.map.integrate(local, normals, stamp_s)
        for key in touched:
            self._dirty_since.setdefault(key, stamp_s)
        self._dirty_halo_neighbours(local, stamp_s)
        self.vehicle_m = pose[:3, 3] - self.map.origin_m
        self.latest_stamp_s = max(self.latest_stamp_s, stamp_s)
        self.scans += 1
        return IntegrateResult(len(points_sensor), len(local), touched)

    def _dirty_halo_neighbours(self, local: np.ndarray, stamp_s: float) -> None:
        """Segments whose halo received points must be recomputed too (their context changed)."""
        cfg = self.config.mapping
        for ijk in halo_segments(local, cfg.segment_size_m, self.halo_m):
            key = int(key_from_ijk(ijk, cfg.curve))
            self.map.touch(key, ijk, stamp_s)
            self._dirty_since.setdefault(key, stamp_s)

    def pending(self, force: bool = False) -> list[int]:
        """
        Dirty segment keys ready for reconstruction, nearest to the vehicle first.

        Ready: no new points for `debounce_s`, or `force`, or due early (`_due_early`). A segment
        whose forward pass ran out of memory waits `RETRY_AFTER_S` unless forced.
        """
        if self.map is None:
            return []
        debounce = 0.0 if force else self.config.reconstruct.debounce_s
        latest = self.latest_stamp_s

        def ready_now(key: int) -> bool:
            if not force and key in self.failed and latest - self.failed[key][0] < RETRY_AFTER_S:
                return False
            quiet = latest - self.map.get(key).last_update_stamp_s >= debounce
            return quiet or self._due_early(key)

        ready = [k for k in self.map.dirty_keys('reconstruct') if ready_now(k)]
        return sorted(ready, key=lambda k: (self._distance_m(k), k))

    def _distance_m(self, key: int) -> float:
        size = self.config.mapping.segment_size_m
        return float(np.linalg.norm((self.map.get(key).ijk + 0.5) * size - self.vehicle_m))

    def _due_early(self, key: int) -> bool:
        """
        Whether a segment still receiving points is rebuilt now, for a fresh map near the car.

        It must have been dirty for `max_wait_s`, lie within `max_wait_radius_m` of the vehicle,
        and be new or grown by `max_wait_growth` since its last build. Rebuilding at every
        `max_wait_s` would cost a forward pass per period for as long as the segment is in view;
        growth-triggered rebuilds cost a geometric series, and far segments wait for debounce.
        """
        cfg = self.config.reconstruct
        waited = self.latest_stamp_s - self._dirty_since.get(key, self.latest_stamp_s)
        if not (cfg.max_wait_s > 0 and waited >= cfg.max_wait_s):
            return False
        if cfg.max_wait_radius_m > 0 and self._distance_m(key) > cfg.max_wait_radius_m:
            return False
        built, now = self._built_points.get(key), len(self.map.get(key).points)
        return built is None or (now > built and now >= (1 + cfg.max_wait_growth) * built)

    def update(self, max_segments: int | None = None, force: bool = False,
               stop: Callable[[], bool] | None = None, skip: Collection[int] = ()
               ) -> UpdateResult:
        """
        Reconstruct up to `max_segments` ready segments and re-mesh what reads their corners.

        `stop()` is checked between segments: when true, the rest stay dirty for later. A segment
        whose forward pass fits nowhere in memory stays dirty, is listed in `result.failed` and
        is retried after `RETRY_AFTER_S` of newer scans (or when forced).
        """
        limit = max_segments or self.config.reconstruct.max_segments_per_update
        result = UpdateResult()
        remesh: set[int] = set()
        for key in [k for k in self.pending(force) if k not in skip][:limit]:
            if stop is not None and stop():
                break
            t0 = time.perf_counter()
            revision = self.map.get(key).revision
            try:
                remesh |= self.mesher.compute_corners(key, self.evaluate, self.halo_m)
            except InferenceMemoryError as exc:
                self.failed[key] = (self.latest_stamp_s, str(exc))
                result.failed[key] = str(exc)
                continue
            self.failed.pop(key, None)
            self._built_points[key] = len(self.map.get(key).points)
            if self.map.mark_clean(key, 'reconstruct', revision):
                self._dirty_since.pop(key, None)
            result.reconstructed.append(key)
            result.network_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for key in sorted(remesh):
            result.meshes[key] = self.mesher.mesh(key)
        result.meshing_s = time.perf_counter() - t0
        self._evict()
        return result

    def finish(self) -> UpdateResult:
        """Reconstruct everything still dirty (end of a drive or an offline run)."""
        total = UpdateResult()
        while [k for k in self.pending(force=True) if k not in total.failed]:
            step = self.update(max_segments=1_000_000, force=True, skip=total.failed)
            total.meshes.update(step.meshes)
            total.reconstructed += step.reconstructed
            total.network_s += step.network_s
            total.meshing_s += step.meshing_s
            total.failed.update(step.failed)
        return total

    def checkpoint(self) -> list[int]:
        """With a store: write every changed segment and the pending work (see SegmentMap)."""
        if self.map is None or self.map.store is None:
            return []
        return self.map.checkpoint()

    def _evict(self) -> None:
        if self.map is not None and self.map.store is not None:
            self.map.evict_far(self.vehicle_m, self.config.mapping.keep_radius_m)

    def meshes(self) -> list[SegmentMesh]:
        """Current mesh of every segment (memory and store), for full-map publishing/export."""
        if self.map is None:
            return []
        return [self.mesher.stored_mesh(k) for k in self.map.keys()]

    def full_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Every segment's mesh (memory and store) welded into one: (V,3) float64 map frame, F."""
        if self.map is None:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        return map_frame_mesh(self.meshes(), self.origin_m)

    def export_mesh(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """Write `full_mesh()` as one PLY in the map frame; returns (V, F)."""
        return write_map_mesh(path, self.meshes(), self.origin_m)

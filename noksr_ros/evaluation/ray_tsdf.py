"""
Ray-based LiDAR TSDF fusion stored in an open3d VoxelBlockGrid.

open3d's `VoxelBlockGrid.integrate` only takes pinhole depth images; a spinning LiDAR's rings
alias into a pinhole z-buffer (empty rows where pixels are finer than the beam spacing, mixed
depths where they are coarser, worst on the ground at grazing angles). So every LiDAR ray is
integrated from its own scan's sensor origin, as LiDAR-native TSDF (vdbfusion) does, in numpy:

- each ray is sampled every half voxel within +-sdf_trunc of its hit; the grid cells the samples
  fall in are collected per scan, each with the mean range of the rays through it;
- each such cell updates its 8 grid points (corners), so a ray leaves a gap-free band of cells
  with all corners observed, which marching cubes needs;
- a grid point g gets the projective signed distance along the ray, range - |g - origin|
  (positive in free space, negative behind the surface), clipped to +-sdf_trunc; grid points
  more than sdf_trunc behind the surface are not updated;
- one scan's updates of the same grid point are averaged, then fused with weight 1 per scan
  into the running weighted average, like per-frame depth-image integration;
- the result lives in the grid's `tsdf` (normalised by sdf_trunc, as open3d stores it) and
  `weight` attributes, and open3d's `extract_triangle_mesh` runs marching cubes on it.

Grid points are at integer multiples of the voxel size in the map frame (open3d's convention).
"""

from __future__ import annotations

import math

import numpy as np
import open3d as o3d

from noksr_ros.errors import NoksrError

# The 8 corners of a grid cell, (8,3) int, as offsets from its lowest corner.
_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
# Above this many cells in a scan's block bounding box, blocks are deduplicated by sorting.
_DENSE_BLOCK_LIMIT = 1 << 23


class RayTsdf:
    """LiDAR TSDF: integrate scans ray by ray, then extract the zero level set (CPU)."""

    def __init__(self, voxel_size_m: float, sdf_trunc_m: float | None = None,
                 block_resolution: int = 8, initial_blocks: int = 4096) -> None:
        if not voxel_size_m > 0.0:
            raise ValueError(f'voxel_size_m must be > 0, got {voxel_size_m}')
        if block_resolution not in (4, 8, 16):
            raise ValueError(f'block_resolution must be 4, 8 or 16, got {block_resolution}')
        self.voxel_size_m = float(voxel_size_m)
        self.sdf_trunc_m = 3.0 * self.voxel_size_m if sdf_trunc_m is None else float(sdf_trunc_m)
        if not self.sdf_trunc_m >= self.voxel_size_m:
            raise ValueError(f'sdf_trunc_m must be >= voxel_size_m, got {sdf_trunc_m}')
        self.res = int(block_resolution)
        self._res_bits = self.res.bit_length() - 1  # res is a power of two
        self.grid = o3d.t.geometry.VoxelBlockGrid(
            attr_names=('tsdf', 'weight'), attr_dtypes=(o3d.core.float32, o3d.core.float32),
            attr_channels=(1, 1), voxel_size=self.voxel_size_m, block_resolution=self.res,
            block_count=initial_blocks, device=o3d.core.Device('CPU:0'))
        half_steps = int(math.ceil(2.0 * self.sdf_trunc_m / self.voxel_size_m))
        self._steps_m = np.linspace(-self.sdf_trunc_m, self.sdf_trunc_m, 2 * half_steps + 1)

    def integrate(self, points_sensor: np.ndarray, pose: np.ndarray,
                  max_range_m: float = 80.0) -> None:
        """Integrate one scan: (N,3) points in the sensor frame, (4,4) T_map_sensor."""
        cells, sdf, valid = self._corner_updates(points_sensor, pose, max_range_m)
        if len(sdf) == 0:
            return
        per_block = self.res ** 3
        block_keys, local_block = _dedupe_blocks([c >> self._res_bits for c in cells])
        buf = self._activate(block_keys)
        lx, ly, lz = (c & (self.res - 1) for c in cells)
        # Layout within a block: x fastest, then y, then z (voxel_coordinates_and_flattened_...).
        slot = local_block * per_block + (lz * self.res + ly) * self.res + lx
        size = len(block_keys) * per_block
        count = np.bincount(slot, weights=valid, minlength=size)
        sums = np.bincount(slot, weights=np.where(valid, sdf, 0.0), minlength=size)
        touched = np.flatnonzero(count)
        flat = buf[touched // per_block] * per_block + touched % per_block
        tsdf, weight = self._attributes()
        old_w = weight[flat]
        new_tsdf = sums[touched] / (count[touched] * self.sdf_trunc_m)
        tsdf[flat] = (tsdf[flat] * old_w + new_tsdf) / (old_w + 1.0)
        weight[flat] = old_w + 1.0

    def extract(self, min_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """
        Marching cubes of the fused field: ((V,3) float32, (F,3) int64), map frame.

        Only cells whose 8 corners were seen by at least `min_weight` scans produce faces.
        """
        empty = np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)
        if self.grid.hashmap().size() == 0:
            return empty
        # open3d keeps corners with weight > threshold; weights here are whole scan counts.
        try:
            mesh = self.grid.extract_triangle_mesh(weight_threshold=float(min_weight) - 0.5)
        except RuntimeError as err:  # open3d fails instead of returning an empty mesh
            if 'has shape {0}' in str(err):
                return empty
            raise
        if 'positions' not in mesh.vertex or 'indices' not in mesh.triangle:
            return empty
        return (mesh.vertex.positions.numpy().astype(np.float32),
                mesh.triangle.indices.numpy().astype(np.int64))

    def _corner_updates(self, points_sensor: np.ndarray, pose: np.ndarray, max_range_m: float
                        ) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """
        Corner updates of one scan's rays.

        Returns the grid points as three (M,) int64 coordinate columns, their SDF (M,) float64
        in metres, and a (M,) bool mask of the updates to apply (the others lie more than
        sdf_trunc behind the surface).
        """
        pts, pose = _check_scan(points_sensor, pose)
        if not 0.0 < max_range_m < np.inf:
            raise ValueError(f'max_range_m must be finite and > 0, got {max_range_m}')
        ranges = np.linalg.norm(pts, axis=1)
        ok = np.isfinite(ranges) & (ranges > 0.0) & (ranges <= max_range_m)
        pts, ranges = pts[ok], ranges[ok]
        # Cells are counted from the origin's cell, in float32 cell units: small numbers, exact
        # enough, half the memory traffic of float64 on the (N, S, 3) samples.
        origin_cells = pose[:3, 3] / self.voxel_size_m
        origin_int = np.floor(origin_cells).astype(np.int64)
        origin_frac = (origin_cells - origin_int).astype(np.float32)
        dirs = ((pts / ranges[:, None]) @ pose[:3, :3].T / self.voxel_size_m).astype(np.float32)
        along = np.maximum(ranges[:, None] + self._steps_m[None, :], 0.0).astype(np.float32)
        rel = np.floor(origin_frac + dirs[:, None, :] * along[..., None]).astype(np.int64)
        reach = int(math.ceil((max_range_m + self.sdf_trunc_m) / self.voxel_size_m)) + 2
        keys = _pack(rel, reach)  # (N,S): consecutive samples of a ray often share a cell
        first = np.ones(keys.shape, dtype=bool)
        first[:, 1:] = keys[:, 1:] != keys[:, :-1]
        # Rays of one scan share cells (many near the sensor): reduce to unique cells, with the
        # mean range of the rays through them (the SDF is linear in the range).
        uniq, inverse = np.unique(keys[first], return_inverse=True)
        ray_range = np.broadcast_to(ranges[:, None], keys.shape)[first]
        mean_range = np.bincount(inverse, ray_range) / np.bincount(inverse)
        base = _unpack(uniq, reach)  # (U,3) lowest corners, relative to the origin's cell
        # |corner - origin|^2 = |e|^2 + 2 v c.e + v^2 |c|^2, e = (base - origin_frac) * v.
        vox = self.voxel_size_m
        rel_m = (base - origin_frac.astype(np.float64)) * vox
        dist_sq = (np.einsum('ij,ij->i', rel_m, rel_m)[:, None] + 2.0 * vox * rel_m @ _CORNERS.T
                   + vox * vox * np.sum(_CORNERS ** 2, axis=1))
        sdf = mean_range[:, None] - np.sqrt(np.maximum(dist_sq, 0.0))  # (U,8)
        cells = tuple((base[:, axis, None] + (_CORNERS[:, axis] + origin_int[axis])).reshape(-1)
                      for axis in range(3))
        valid = (sdf >= -self.sdf_trunc_m).reshape(-1)
        return cells, np.minimum(sdf, self.sdf_trunc_m).reshape(-1), valid

    def _activate(self, block_keys: np.ndarray) -> np.ndarray:
        """Buffer indices (B,) int64 of (B,3) block keys; new blocks are activated and cleared."""
        hashmap = self.grid.hashmap()
        keys = o3d.core.Tensor(block_keys.astype(np.int32))
        new_buf, new_mask = hashmap.activate(keys)
        buf, found = hashmap.find(keys)
        if not np.all(found.numpy()):
            raise NoksrError('VoxelBlockGrid failed to activate blocks')
        fresh = new_buf.numpy()[new_mask.numpy()].astype(np.int64)
        for attr in self._attributes():  # open3d does not clear reused buffer slots
            attr.reshape(-1, self.res ** 3)[fresh] = 0.0
        return buf.numpy().astype(np.int64)

    def _attributes(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat float32 views of the tsdf and weight buffers (valid until blocks are added)."""
        tsdf = self.grid.attribute('tsdf').numpy().reshape(-1)
        weight = self.grid.attribute('weight').numpy().reshape(-1)
        return tsdf, weight


def _check_scan(points_sensor: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points_sensor, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f'points_sensor must have shape (N, 3), got {pts.shape}')
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f'T_map_sensor must be a finite 4x4 matrix, got shape {pose.shape}')
    return pts, pose


def _pack(cells: np.ndarray, reach: int) -> np.ndarray:
    """(..., 3) int64 cells within +-reach -> (...) int64 keys (lexicographic order)."""
    width = 2 * reach + 1
    shifted = cells + reach
    return (shifted[..., 0] * width + shifted[..., 1]) * width + shifted[..., 2]


def _unpack(keys: np.ndarray, reach: int) -> np.ndarray:
    """Inverse of `_pack`: (M,) int64 -> (M,3) int64."""
    width = 2 * reach + 1
    xy, z = np.divmod(keys, width)
    x, y = np.divmod(xy, width)
    return np.stack([x, y, z], axis=1) - reach


def _dedupe_blocks(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """
    Unique block coordinates (B,3) int64 of three (M,) columns, and each row's index (M,).

    A dense occupancy array over the scan's block bounding box avoids sorting millions of rows.
    """
    lo = np.array([b.min() for b in blocks])
    dims = np.array([b.max() for b in blocks]) - lo + 1
    lin = ((blocks[0] - lo[0]) * dims[1] + (blocks[1] - lo[1])) * dims[2] + (blocks[2] - lo[2])
    if int(np.prod(dims)) > _DENSE_BLOCK_LIMIT:
        uniq, inverse = np.unique(lin, return_inverse=True)
    else:
        present = np.zeros(int(np.prod(dims)), dtype=bool)
        present[lin] = True
        uniq = np.flatnonzero(present)
        inverse = (np.cumsum(present, dtype=np.int32) - 1)[lin].astype(np.int64)
    keys = np.stack(np.unravel_index(uniq, dims), axis=1) + lo
    return keys, inverse.reshape(-1)

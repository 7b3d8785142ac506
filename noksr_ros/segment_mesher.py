"""
Per-segment corner values and meshes on the global lattice (see `segment_grid`).

`compute_corners` runs the network once for a segment (own points + halo, normals re-estimated over
them all) and stores the values of the corners it owns; `mesh` runs marching cubes over the cubes
the segment owns, reading the + face corners of its neighbours, so no network runs when only a
neighbour changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from noksr_ros.errors import InferenceMemoryError
from noksr_ros.mapping.keys import key_from_ijk
from noksr_ros.mapping.segment import Segment
from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.meshing import cubes_in_box, marching_cubes_sparse, weld_by_edge_ids
from noksr_ros.normals import refine_normals
from noksr_ros.segment_grid import (
    READ_OFFSETS,
    READER_OFFSETS,
    active_corners,
    corner_box,
    face_corners,
    owned,
)
from noksr_ros.segment_inference import CornerEvaluator, trim_distance


@dataclass
class SegmentMesh:
    """
    Mesh of one segment in the map-local frame (add the map origin for the map frame).

    vertices (V,3) float32, faces (F,3) int32, edge_ids (V,) int64 global lattice edge ids.
    """

    key: int
    vertices: np.ndarray
    faces: np.ndarray
    edge_ids: np.ndarray
    revision: int


class SegmentMesher:
    """Corner values and meshes of the segments of one SegmentMap."""

    def __init__(self, segment_map: SegmentMap, seg_vox: int, voxel_size_m: float,
                 udf_trim_m: float, trim_source: str = 'points', dilation_voxels: int = 2,
                 normals_knn: int = 0, normals_cell_m: float = 0.0,
                 trim_near_m: float | None = None, trim_side_ratio: float = 1.0) -> None:
        self.map, self.seg_vox = segment_map, seg_vox
        self.trim_near_m, self.trim_side_ratio = trim_near_m, trim_side_ratio
        self.normals_knn, self.normals_cell_m = normals_knn, normals_cell_m
        self.voxel_size_m, self.udf_trim_m = voxel_size_m, udf_trim_m
        self.trim_field = 'dist' if trim_source == 'points' else 'udf'
        self.dilation_voxels = dilation_voxels

    def _existing(self, ijk: np.ndarray, offsets: np.ndarray) -> list[int]:
        keys = [int(k) for k in key_from_ijk(ijk[None] + offsets, self.map.curve)]
        return [k for k in keys if k in self.map]

    def compute_corners(self, key: int, evaluate: CornerEvaluator, halo_m: float) -> set[int]:
        """
        Evaluate the corners `key` owns; return the keys whose meshes must be redone.

        Out of memory anywhere on the way (the forward pass has its own fallbacks; the normals,
        corners and trimming field are numpy) raises `InferenceMemoryError` before anything is
        stored: the segment keeps its last values and stays dirty.
        """
        try:
            return self._compute_corners(key, evaluate, halo_m)
        except MemoryError as exc:
            raise InferenceMemoryError(f'segment {key}: out of memory outside the forward pass '
                                       f'({exc}); the segment stays dirty and is retried '
                                       'later') from exc

    def _compute_corners(self, key: int, evaluate: CornerEvaluator, halo_m: float) -> set[int]:
        seg = self.map.get(key)
        halo_pts, halo_nrm = self.map.gather_halo(key, halo_m)
        points = np.concatenate([seg.points, halo_pts])
        normals = refine_normals(points, np.concatenate([seg.normals, halo_nrm]),
                                 self.normals_knn, share_cell_m=self.normals_cell_m)
        lo, hi = corner_box(seg.ijk, self.seg_vox)
        corners = owned(active_corners(points, self.voxel_size_m, self.dilation_voxels), lo, hi)
        sdf, udf = evaluate(points, normals, corners, self.voxel_size_m)
        dist = trim_distance(points, corners, self.voxel_size_m, 2 * self.udf_trim_m + 1e-3,
                             self.trim_near_m, self.udf_trim_m, self.trim_side_ratio, sdf)
        seg.grid.update(ijk=corners, sdf=sdf.astype(np.float32), udf=udf.astype(np.float32),
                        dist=dist)
        seg.dirty['persist'] = True
        return {key, *self._existing(seg.ijk, READER_OFFSETS)}

    def _read_corners(self, seg: Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = corner_box(seg.ijk, self.seg_vox)
        field = self.trim_field
        parts = [(seg.grid.get('ijk'), seg.grid.get('sdf'), seg.grid.get(field))]
        for nkey in self._existing(seg.ijk, READ_OFFSETS):
            other = self.map.get(nkey)
            if 'ijk' not in other.grid:
                continue
            mask = face_corners(other.grid['ijk'], lo, hi)
            parts.append((other.grid['ijk'][mask], other.grid['sdf'][mask],
                          other.grid[field][mask]))
        parts = [p for p in parts if p[0] is not None and len(p[0])]
        if not parts:
            return np.zeros((0, 3), np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
        return tuple(np.concatenate(a) for a in zip(*parts))

    def mesh(self, key: int) -> SegmentMesh:
        """Re-mesh segment `key` from stored corner values; stores and returns a SegmentMesh."""
        seg = self.map.get(key)
        ijk, sdf, udf = self._read_corners(seg)
        lo, hi = corner_box(seg.ijk, self.seg_vox)
        verts, faces, edges = marching_cubes_sparse(
            torch.from_numpy(ijk), torch.from_numpy(sdf), self.voxel_size_m,
            udf=torch.from_numpy(udf), udf_trim_m=self.udf_trim_m,
            cube_mask_fn=cubes_in_box(tuple(lo), tuple(hi)), return_edge_ids=True)
        seg.mesh_vertices = verts.numpy().astype(np.float32)
        seg.mesh_faces = faces.numpy().astype(np.int32)
        seg.grid['edges'] = edges.numpy()
        seg.dirty['publish'] = seg.dirty['persist'] = True
        return SegmentMesh(key, seg.mesh_vertices, seg.mesh_faces, seg.grid['edges'],
                           seg.revision)

    def stored_mesh(self, key: int) -> SegmentMesh:
        """The last mesh of `key` without reloading an evicted segment into memory."""
        seg = self.map.peek(key)
        edges = seg.grid.get('edges', np.zeros(0, np.int64))
        return SegmentMesh(key, seg.mesh_vertices, seg.mesh_faces, edges, seg.revision)

    @staticmethod
    def welded(meshes: list[SegmentMesh]) -> tuple[np.ndarray, np.ndarray]:
        """Join segment meshes into one, merging border vertices by their global edge id."""
        parts = [(torch.from_numpy(m.vertices), torch.from_numpy(m.faces.astype(np.int64)),
                  torch.from_numpy(m.edge_ids)) for m in meshes if len(m.faces)]
        if not parts:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
        verts, faces, _ = weld_by_edge_ids(parts)
        return verts.numpy(), faces.numpy()


def map_frame_mesh(meshes: Iterable[SegmentMesh], origin_m: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """
    Weld segment meshes in key order and shift them into the map frame: (V,3) float64, F.

    Key order is the order a /noksr/mesh_segments consumer joins them in, so a saved or exported
    PLY and a consumer's copy hold the same arrays.
    """
    ordered = sorted(meshes, key=lambda m: m.key)
    vertices, faces = SegmentMesher.welded(ordered)
    origin = np.zeros(3) if origin_m is None else np.asarray(origin_m, np.float64)
    return vertices.astype(np.float64) + origin, faces


def write_map_mesh(path: str | Path, meshes: Iterable[SegmentMesh], origin_m: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Write `map_frame_mesh` as one PLY (atomically, see io.ply); returns (V, F)."""
    from noksr_ros.io.ply import write_ply

    vertices, faces = map_frame_mesh(meshes, origin_m)
    write_ply(path, vertices, faces)
    return vertices, faces

"""
Segment meshes -> TRIANGLE_LIST marker specs for `/noksr/mesh` (no ROS import).

One marker per segment in namespace `ros.marker_ns`, coloured by height or normal; DELETE for
removed segments and DELETEALL (first in the array) when the map was cleared. Segment keys are
63-bit serialization codes while marker ids are int32, so ids are handed out per key in order of
first appearance and stay fixed for the life of the node.
"""

from __future__ import annotations

import numpy as np

from noksr_ros.config import RosConfig
from noksr_ros.live.mesh_cache import MeshChanges
from noksr_ros.meshcolor import face_soup, height_colors, normal_colors
from noksr_ros.ros.marker_cdr import MarkerSpec, delete_all_marker, delete_marker, triangle_marker
from noksr_ros.segment_mesher import SegmentMesh


class MarkerIds:
    """Stable int32 marker id per segment key."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def __call__(self, key: int) -> int:
        """The id of `key`, assigned on first use."""
        if key not in self._ids:
            if len(self._ids) >= 2**31 - 1:
                raise OverflowError('more than 2**31 - 1 segments: marker ids exhausted')
            self._ids[key] = len(self._ids)
        return self._ids[key]

    def known(self, key: int) -> bool:
        """Whether `key` already has an id."""
        return key in self._ids

    def reset(self) -> None:
        """Forget every id (after a map clear)."""
        self._ids.clear()


def segment_marker(mesh: SegmentMesh, origin_m: np.ndarray, marker_id: int, cfg: RosConfig,
                   stamp_ns: int) -> MarkerSpec:
    """The TRIANGLE_LIST marker of one segment mesh, in the map frame; empty mesh: DELETE."""
    if len(mesh.faces) == 0:
        return delete_marker(cfg.marker_ns, marker_id, cfg.map_frame, stamp_ns)
    vertices = mesh.vertices.astype(np.float64) + origin_m
    if cfg.color_mode == 'normal':
        colors = normal_colors(vertices, mesh.faces)
    else:
        z_min, z_max = cfg.color_z_range_m
        colors = height_colors(vertices, z_min, z_max)
    points, corner_colors = face_soup(vertices, mesh.faces, colors)
    return triangle_marker(cfg.marker_ns, marker_id, points, corner_colors,
                           frame_id=cfg.map_frame, stamp_ns=stamp_ns)


def change_markers(changes: MeshChanges, ids: MarkerIds, cfg: RosConfig) -> list[MarkerSpec]:
    """Markers for `changes`: DELETEALL first when cleared, then DELETEs, then meshes by key."""
    markers: list[MarkerSpec] = []
    stamp_ns = max(int(changes.stamp_ns), 0)
    if changes.cleared:
        ids.reset()
        markers.append(delete_all_marker(cfg.marker_ns, cfg.map_frame, stamp_ns))
    for key in sorted(changes.removed):
        if ids.known(key):
            markers.append(delete_marker(cfg.marker_ns, ids(key), cfg.map_frame, stamp_ns))
    if changes.meshes and changes.origin_m is None:
        raise ValueError('segment meshes without a map origin')
    for key in sorted(changes.meshes):
        mesh = changes.meshes[key]
        if len(mesh.faces) == 0 and not ids.known(key):
            continue  # never shown: nothing to delete
        markers.append(segment_marker(mesh, changes.origin_m, ids(key), cfg, stamp_ns))
    return markers

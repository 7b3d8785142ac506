"""
The indexed mesh stream of `/noksr/mesh_segments` as plain data (no ROS import).

`SegmentStream` (node side) turns the pipeline's `MeshChanges` into numbered `MapUpdate`s: a
revision per segment mesh, a sequence number per message, full-map resends, and updates split
to a byte budget. `MeshMapCopy` (consumer side) applies them and knows whether it holds the map
exactly: it detects lost messages by the sequence and resynchronises on the next full update.
`segment_msgs` converts both ways between these and the generated messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from noksr_ros.live.mesh_cache import MeshChanges
from noksr_ros.mapping.keys import ijk_from_key
from noksr_ros.segment_mesher import SegmentMesh

# Bytes of one segment on the wire besides its arrays (header, key, index, origin, lengths).
SEGMENT_OVERHEAD_BYTES = 160


@dataclass(frozen=True)
class StreamSegment:
    """
    One segment mesh as it travels.

    vertices (V,3) float32 relative to `origin_m` (3,) float64 (map frame, m); faces (F,3)
    integer indices; vertex_ids (V,) int64 global lattice edge ids (equal ids are the same point
    across segments); normals (V,3) float32 or None; index (3,) the segment cube's index.
    """

    key: int
    revision: int
    index: tuple[int, int, int]
    size_m: float
    origin_m: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    vertex_ids: np.ndarray
    normals: np.ndarray | None = None

    def nbytes(self) -> int:
        """Approximate size of this segment in a message (with normals when it has them)."""
        per_vertex = 12 + 8 + (12 if self.normals is not None else 0)
        return SEGMENT_OVERHEAD_BYTES + per_vertex * len(self.vertices) + 12 * len(self.faces)


@dataclass
class MapUpdate:
    """One message of the stream; see msg/MeshMapUpdate.msg for the consumer's rules."""

    sequence: int
    stamp_ns: int
    full: bool = False
    map_keys: list[int] = field(default_factory=list)
    segments: list[StreamSegment] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    parts_left: int = 0


@dataclass(frozen=True)
class StreamStatus:
    """The published map: newest sequence, keys ascending with their revisions, totals."""

    sequence: int
    keys: list[int]
    revisions: list[int]
    vertices: int
    triangles: int


class SegmentStream:
    """Producer side: revisions, sequence numbers, full resends, size-bounded messages."""

    def __init__(self, segment_size_m: float, curve: str, max_message_bytes: int,
                 normals: bool = True) -> None:
        self.segment_size_m, self.curve = segment_size_m, curve
        self.max_message_bytes, self.normals = max_message_bytes, normals
        self.sequence = 0
        self._next_revision = 1
        self._published: dict[int, tuple[int, int, int]] = {}  # key -> (revision, V, F)

    def updates(self, changes: MeshChanges, full: bool = False) -> list[MapUpdate]:
        """
        The messages that publish `changes`; a full resend when `full` or the map was cleared.

        A full resend needs `changes.snapshot` (take_changes(snapshot=True)), except after a
        clear, when `changes.meshes` already is the whole map.
        """
        full = full or changes.cleared
        if changes.cleared:
            self._published.clear()
        for key, mesh in changes.meshes.items():
            self._published[key] = (self._new_revision(), len(mesh.vertices), len(mesh.faces))
        for key in changes.removed:
            self._published.pop(key, None)
        if full:
            if changes.snapshot is None and not changes.cleared:
                raise ValueError('a full resend needs take_changes(snapshot=True)')
            meshes = changes.snapshot if changes.snapshot is not None else changes.meshes
            for key in set(self._published) - set(meshes):
                del self._published[key]
            for key, mesh in meshes.items():
                if key not in self._published:
                    self._published[key] = (self._new_revision(), len(mesh.vertices),
                                            len(mesh.faces))
            removed: list[int] = []
        else:
            meshes = changes.meshes
            removed = sorted(changes.removed)
        if not full and not meshes and not removed:
            return []
        origin = (np.zeros(3) if changes.origin_m is None else
                  np.asarray(changes.origin_m, np.float64))
        segments = [self._segment(meshes[k], origin) for k in sorted(meshes)]
        return self._split(segments, removed, full, max(int(changes.stamp_ns), 0))

    def status(self) -> StreamStatus:
        """What a consumer that applied every update so far holds."""
        keys = sorted(self._published)
        values = [self._published[k] for k in keys]
        return StreamStatus(self.sequence, keys, [v[0] for v in values],
                            sum(v[1] for v in values), sum(v[2] for v in values))

    def _new_revision(self) -> int:
        self._next_revision += 1
        return self._next_revision - 1

    def _segment(self, mesh: SegmentMesh, origin: np.ndarray) -> StreamSegment:
        ijk = ijk_from_key(mesh.key, self.curve)
        normals = None
        if self.normals:
            from noksr_ros.meshcolor import vertex_normals

            normals = (vertex_normals(mesh.vertices, mesh.faces).astype(np.float32)
                       if len(mesh.faces) else np.zeros((len(mesh.vertices), 3), np.float32))
        return StreamSegment(int(mesh.key), self._published[mesh.key][0],
                             (int(ijk[0]), int(ijk[1]), int(ijk[2])), self.segment_size_m, origin,
                             mesh.vertices, mesh.faces, mesh.edge_ids, normals)

    def _split(self, segments: list[StreamSegment], removed: list[int], full: bool,
               stamp_ns: int) -> list[MapUpdate]:
        """Consecutive messages of at most max_message_bytes (a bigger segment goes alone)."""
        groups: list[list[StreamSegment]] = [[]]
        size = 0
        for seg in segments:
            if groups[-1] and size + seg.nbytes() > self.max_message_bytes:
                groups.append([])
                size = 0
            groups[-1].append(seg)
            size += seg.nbytes()
        out = []
        for i, group in enumerate(groups):
            self.sequence += 1
            first = i == 0
            out.append(MapUpdate(self.sequence, stamp_ns, full and first,
                                 [s.key for s in segments] if full and first else [], group,
                                 removed if first else [], len(groups) - 1 - i))
        return out


class MeshMapCopy:
    """
    Consumer side: the map rebuilt from the stream, and whether it is exact.

    `consistent` is true once a full update has been applied completely with no message lost
    since; a lost message (sequence gap) makes it false until the next full update is complete.
    """

    def __init__(self) -> None:
        self.segments: dict[int, StreamSegment] = {}
        self.sequence = 0
        self.gaps = 0
        self.fulls = 0
        self._synced = False
        self._parts_left = 0

    @property
    def synced(self) -> bool:
        """Whether a full update arrived and no message was lost since (parts may be pending)."""
        return self._synced

    @property
    def consistent(self) -> bool:
        """Whether `segments` is exactly the node's map as of `sequence`."""
        return self._synced and self._parts_left == 0

    def apply(self, update: MapUpdate) -> None:
        """Apply one message (in arrival order)."""
        if update.full:
            self._synced = True
            self.fulls += 1
            keep = set(update.map_keys)
            self.segments = {k: s for k, s in self.segments.items() if k in keep}
        elif update.sequence != self.sequence + 1:
            if self.sequence:
                self.gaps += 1
            self._synced = False
        for seg in update.segments:
            self.segments[seg.key] = seg
        for key in update.removed:
            self.segments.pop(key, None)
        self.sequence = update.sequence
        self._parts_left = update.parts_left

    def matches(self, status: StreamStatus) -> bool:
        """Whether this copy holds exactly the keys and revisions `status` names."""
        keys = sorted(self.segments)
        return (status.sequence == self.sequence and status.keys == keys
                and status.revisions == [self.segments[k].revision for k in keys])

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The map welded along seams: (V,3) float64 map-frame vertices, (F,3) int64 faces."""
        parts = [self.segments[k] for k in sorted(self.segments)]
        vertices, faces = weld_segments(parts)
        origin = parts[0].origin_m if parts else np.zeros(3)
        return vertices.astype(np.float64) + origin, faces


def weld_segments(parts: list[StreamSegment]) -> tuple[np.ndarray, np.ndarray]:
    """
    Join segment meshes, merging vertices with the same global id; (V,3), (F,3) int64.

    The numpy twin of `SegmentMesher.welded` (the node's ~/save_mesh): vertices sorted by id,
    each taking its position from the first part that holds it, faces in part order.
    """
    parts = [p for p in parts if len(p.faces)]
    if not parts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    vertices = np.concatenate([p.vertices for p in parts])
    ids = np.concatenate([p.vertex_ids for p in parts])
    starts = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    faces = np.concatenate([p.faces.astype(np.int64) + s for p, s in zip(parts, starts,
                                                                          strict=True)])
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return vertices[first], inverse.reshape(-1)[faces]

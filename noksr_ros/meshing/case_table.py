"""
Marching cubes case table, generated from cube geometry when this module is imported.

Sign convention: a corner is INSIDE when its SDF is >= 0 (NoKSR's SDF is positive inside, i.e.
against the surface normal) and OUTSIDE when it is < 0. Triangles are wound so that their
right-hand normal points from inside to outside, the direction of the surface normal.

Cube geometry (all generated below, nothing is hand-typed):

* corner `n` in [0, 8) sits at offset (n & 1, (n >> 1) & 1, (n >> 2) & 1) from the lower corner;
  a case index is the 8-bit mask with bit `n` set when corner `n` is inside;
* edge `e` in [0, 12) runs along axis `e // 4` from its lower corner to the corner one step up;
* face `(axis, side)` holds the 4 corners whose coordinate on `axis` equals `side`.

How a case is built: on each face, walk the 4 corners counter-clockwise as seen from outside the
cube; a crossed edge is an 'entry' (outside -> inside) or an 'exit' (inside -> outside). Each
entry is joined to the next exit along the walk. On a face with two inside corners on a diagonal
(the ambiguous face) this cuts every inside corner off on its own, a rule that depends on the
face's 4 corner signs only, so the two cubes sharing the face draw the same segments and the mesh
has no cracks. A crossed cube edge is an entry on one of its two faces and an exit on the other,
so the directed segments chain into closed loops on the cube boundary; each loop is
fan-triangulated. Directed entry -> exit, the inside part of the face lies to the right as seen
from outside the cube, which is what winds the triangles outward.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
import itertools

import torch

NUM_CORNERS = 8
NUM_EDGES = 12
NUM_CASES = 256


def corner_offset(corner: int) -> tuple[int, int, int]:
    """Offset (x, y, z) in {0, 1}^3 of a cube corner from the cube's lower corner."""
    return corner & 1, (corner >> 1) & 1, (corner >> 2) & 1


def corner_index(offset: tuple[int, int, int]) -> int:
    """Inverse of `corner_offset`."""
    return offset[0] | (offset[1] << 1) | (offset[2] << 2)


def _build_edges() -> list[tuple[int, int, int]]:
    """The 12 cube edges as (lower corner, upper corner, axis), edge `e` along axis `e // 4`."""
    edges = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for hi_b, hi_a in itertools.product((0, 1), repeat=2):
            lower = [0, 0, 0]
            lower[others[0]], lower[others[1]] = hi_a, hi_b
            upper = list(lower)
            upper[axis] = 1
            edges.append((corner_index(tuple(lower)), corner_index(tuple(upper)), axis))
    return edges


EDGES: tuple[tuple[int, int, int], ...] = tuple(_build_edges())
_EDGE_OF_PAIR = {frozenset(e[:2]): i for i, e in enumerate(EDGES)}


def _build_faces() -> list[tuple[int, ...]]:
    """The 6 faces as 4 corners, counter-clockwise when seen from outside the cube."""
    faces = []
    for axis, side in itertools.product(range(3), (0, 1)):
        u, v = (axis + 1) % 3, (axis + 2) % 3  # e_u x e_v = e_axis: (u, v) is right-handed
        ring = []
        for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
            offset = [0, 0, 0]
            offset[axis], offset[u], offset[v] = side, du, dv
            ring.append(corner_index(tuple(offset)))
        # The ring is counter-clockwise seen from +axis; the lower face is seen from -axis.
        faces.append(tuple(ring) if side == 1 else tuple(reversed(ring)))
    return faces


FACES: tuple[tuple[int, ...], ...] = tuple(_build_faces())


def face_segments(case: int, face: tuple[int, ...]) -> list[tuple[int, int]]:
    """Directed iso-segments (entry edge, exit edge) of one face for one case."""
    inside = [(case >> c) & 1 for c in face]
    entries, exits = [], []
    for i in range(4):
        if inside[i] != inside[(i + 1) % 4]:
            edge = _EDGE_OF_PAIR[frozenset((face[i], face[(i + 1) % 4]))]
            (entries if inside[(i + 1) % 4] else exits).append((i, edge))
    segments = []
    for pos, edge in entries:
        # The next exit walking counter-clockwise from this entry: it closes this inside arc.
        exit_edge = min(exits, key=lambda item: (item[0] - pos) % 4)[1]
        segments.append((edge, exit_edge))
    return segments


def case_loops(case: int) -> list[list[int]]:
    """Closed loops of crossed edges for one case, each starting at its smallest edge."""
    successor = {}
    for face in FACES:
        for start, end in face_segments(case, face):
            successor[start] = end
    loops = []
    for first in sorted(successor):
        if any(first in loop for loop in loops):
            continue
        loop = [first]
        while successor[loop[-1]] != first:
            loop.append(successor[loop[-1]])
        loops.append(loop)
    return loops


def _faces_of_edge(edge: int) -> frozenset[int]:
    lower, upper, _ = EDGES[edge]
    return frozenset(f for f, ring in enumerate(FACES) if lower in ring and upper in ring)


def _fan_apex(loop: list[int]) -> int:
    """
    Position of the first loop vertex whose fan has no diagonal lying in a cube face.

    Two vertices on edges of one face are joined by a segment in that face's plane; the cube on
    the other side of the face may join them too, and the surface would then touch itself along
    that segment (an edge with four faces). Every loop of this table has such an apex.
    """
    count = len(loop)
    for apex in range(count):
        others = [loop[(apex + i) % count] for i in range(2, count - 1)]
        if not any(_faces_of_edge(loop[apex]) & _faces_of_edge(o) for o in others):
            return apex
    raise RuntimeError(f'no valid fan for loop {loop}')  # never reached, checked by tests


def case_triangles(case: int) -> list[tuple[int, int, int]]:
    """
    Triangles (3 edge indices, wound outward) of one case: a fan over every loop.

    The fan's apex is chosen by `_fan_apex` so that every inner diagonal crosses the cube's
    interior.
    """
    triangles = []
    for loop in case_loops(case):
        apex = _fan_apex(loop)
        ring = loop[apex:] + loop[:apex]
        triangles += [(ring[0], ring[i], ring[i + 1]) for i in range(1, len(ring) - 1)]
    return triangles


@dataclass(frozen=True)
class CaseTable:
    """
    The generated table as tensors on one device.

    Attributes:
        triangles: (256, T, 3) int64 edge indices per case, rows past `counts` are -1.
        counts: (256,) int64 number of triangles per case.
        edge_corners: (12, 2) int64 lower and upper corner of each edge.
        edge_axes: (12,) int64 axis of each edge.
        corner_offsets: (8, 3) int64 offset of each corner from the cube's lower corner.

    """

    triangles: torch.Tensor
    counts: torch.Tensor
    edge_corners: torch.Tensor
    edge_axes: torch.Tensor
    corner_offsets: torch.Tensor


def _build_table() -> CaseTable:
    per_case = [case_triangles(case) for case in range(NUM_CASES)]
    width = max(len(tris) for tris in per_case)
    triangles = torch.full((NUM_CASES, width, 3), -1, dtype=torch.long)
    for case, tris in enumerate(per_case):
        if tris:
            triangles[case, :len(tris)] = torch.tensor(tris, dtype=torch.long)
    return CaseTable(
        triangles=triangles,
        counts=torch.tensor([len(t) for t in per_case], dtype=torch.long),
        edge_corners=torch.tensor([e[:2] for e in EDGES], dtype=torch.long),
        edge_axes=torch.tensor([e[2] for e in EDGES], dtype=torch.long),
        corner_offsets=torch.tensor([corner_offset(c) for c in range(NUM_CORNERS)],
                                    dtype=torch.long),
    )


_CPU_TABLE = _build_table()


@lru_cache(maxsize=8)
def case_table(device: torch.device | str = 'cpu') -> CaseTable:
    """The case table on `device` (built once at import, copied once per device)."""
    device = torch.device(device)
    if device.type == 'cpu':
        return _CPU_TABLE
    return CaseTable(*(getattr(_CPU_TABLE, f).to(device)
                       for f in CaseTable.__dataclass_fields__))

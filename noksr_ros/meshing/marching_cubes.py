"""
Sparse marching cubes in plain PyTorch (CPU or CUDA, fully vectorised).

SIGN CONVENTION: sdf > 0 is INSIDE (against the surface normal, as NoKSR predicts it), sdf < 0 is
OUTSIDE, and sdf == 0 counts as inside. Faces are wound so their right-hand normal points from
inside to outside, i.e. along the surface normal.

The input is a sparse set of corners of a global lattice (world position = origin + ijk * voxel).
A cube, named by its lower corner c, is meshed when all 8 corners c + {0,1}^3 are present with a
finite SDF: corners whose SDF is NaN or infinite count as missing, so the cubes touching them are
skipped. A vertex is the linear zero crossing on a crossed edge, computed in float64 from the
edge's two corner values in a fixed lower -> upper order, so every caller that sees the same two
values gets the bit-identical vertex. Vertices are deduplicated by their global edge id
(`pack_ijk(lower corner) * 3 + axis`), which is also what stitches separately meshed boxes.

A corner whose SDF is exactly 0 is inside, so the vertices of its crossed edges all sit on that
corner: distinct vertices (distinct edge ids) at one position, and possibly zero-area faces. The
mesh stays closed and manifold by edge id; exact zeros are rare with learned SDFs.
"""

from __future__ import annotations

import torch

from noksr_ros.meshing.case_table import CaseTable, case_table
from noksr_ros.meshing.lattice import CubeMaskFn, SortedKeys, check_ijk, key_step, pack_ijk

TRIM_MODES = ('any', 'all')

# Key offset of each cube corner from the cube's lower corner (corner n = x | y << 1 | z << 2).
_CORNER_KEY_STEPS = tuple(sum(key_step(a) for a in range(3) if (n >> a) & 1) for n in range(8))


def _empty_mesh(device: torch.device, return_edge_ids: bool) -> tuple[torch.Tensor, ...]:
    mesh = (torch.zeros((0, 3), dtype=torch.float32, device=device),
            torch.zeros((0, 3), dtype=torch.long, device=device))
    return mesh + (torch.zeros(0, dtype=torch.long, device=device),) if return_edge_ids else mesh


def _check_values(values: torch.Tensor, count: int, name: str, device: torch.device) -> None:
    if values.shape != (count,) or not values.dtype.is_floating_point:
        raise ValueError(f'{name} must be a float tensor of shape ({count},), got '
                         f'{values.dtype} {tuple(values.shape)}')
    if values.device != device:
        raise ValueError(f'{name} is on {values.device} but corner_ijk is on {device}')


def _check_inputs(ijk: torch.Tensor, sdf: torch.Tensor, voxel_size_m: float,
                  udf: torch.Tensor | None, udf_trim_m: float | None, trim_mode: str) -> None:
    _check_values(sdf, ijk.shape[0], 'sdf', ijk.device)
    if not voxel_size_m > 0:
        raise ValueError(f'voxel_size_m must be > 0, got {voxel_size_m}')
    if (udf is None) != (udf_trim_m is None):
        raise ValueError('udf and udf_trim_m must be given together (both or neither)')
    if udf is not None:
        _check_values(udf, ijk.shape[0], 'udf', ijk.device)
    if trim_mode not in TRIM_MODES:
        raise ValueError(f'trim_mode must be one of {TRIM_MODES}, got {trim_mode!r}')


def _sorted_corners(ijk: torch.Tensor, sdf: torch.Tensor, udf: torch.Tensor | None
                    ) -> tuple[SortedKeys, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Drop corners with a non-finite SDF, sort the rest by key, reject duplicates."""
    present = torch.isfinite(sdf)
    if not bool(present.all()):  # the common all-finite case skips these copies
        ijk, sdf = ijk[present], sdf[present]
        udf = None if udf is None else udf[present]
    index = SortedKeys(pack_ijk(ijk))
    if index.has_duplicates():
        raise ValueError('corner_ijk must not contain the same corner twice')
    if index.presorted:
        return index, ijk, sdf, udf
    udf = None if udf is None else udf[index.order]
    return index, ijk[index.order], sdf[index.order], udf


def _cube_mask(cube_mask_fn: CubeMaskFn, ijk: torch.Tensor) -> torch.Tensor:
    """Call the caller's cube filter on (M,3) lower corners and check its (M,) bool answer."""
    mask = cube_mask_fn(ijk)
    if mask.shape != (ijk.shape[0],) or mask.dtype != torch.bool or mask.device != ijk.device:
        raise ValueError(f'cube_mask_fn must return a ({ijk.shape[0]},) bool tensor on '
                         f'{ijk.device}, got {mask.dtype} {tuple(mask.shape)} on {mask.device}')
    return mask


def _cube_corners(index: SortedKeys, lower: torch.Tensor) -> torch.Tensor:
    """
    (8,L) sorted positions of the corners of the cubes with lower corners `lower` (L,).

    A missing corner is -1. Corners 1-3 (+x, +y, +x+y) are binary-searched; corners 4-7 are the
    +z neighbours of corners 0-3, whose key is the next possible key, so if present they are the
    very next entry of the sorted keys: a comparison instead of a search.
    """
    corners = torch.empty((8, lower.shape[0]), dtype=torch.long, device=lower.device)
    corners[0] = lower
    lower_keys = index.keys[lower]
    for corner in (1, 2, 3):
        corners[corner] = index.find(lower_keys + _CORNER_KEY_STEPS[corner])
    last = index.size - 1
    for corner in (4, 5, 6, 7):
        # A missing base corner (-1) gives position 0, which only matches by accident; such a
        # cube is dropped anyway because its base corner is -1.
        nxt = (corners[corner - 4] + 1).clamp_(max=last)
        hit = index.keys[nxt] == lower_keys + _CORNER_KEY_STEPS[corner]
        corners[corner] = torch.where(hit, nxt, -1)
    return corners


def _cut_cubes(corners: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Cases (K,) and corners (K,8) of the complete cubes whose case is neither 0 nor 255.

    `corners` is (8,L) from `_cube_corners`, `inside` (M,) bool per sorted corner.
    """
    complete = (corners >= 0).all(dim=0)
    case = torch.zeros(corners.shape[1], dtype=torch.long, device=corners.device)
    for c in range(8):
        case |= inside[corners[c].clamp(min=0)].long() << c
    keep = torch.nonzero(complete & (case > 0) & (case < 255)).squeeze(1)
    return case[keep], corners[:, keep].T


def _triangle_edges(table: CaseTable, case: torch.Tensor, cubes: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower and upper sorted corner positions (T,3) of every triangle vertex's edge, and axes."""
    counts = table.counts[case]
    cube_of_tri = torch.repeat_interleave(torch.arange(case.shape[0], device=case.device), counts)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(cube_of_tri.shape[0], device=case.device) - first[cube_of_tri]
    edges = table.triangles[case[cube_of_tri], slot]  # (T,3) local edge indices
    row = (cube_of_tri * 8)[:, None]
    flat = cubes.reshape(-1)
    lo = flat[row + table.edge_corners[edges, 0]]
    hi = flat[row + table.edge_corners[edges, 1]]
    return lo, hi, table.edge_axes[edges]


def _weld_edges(lo: torch.Tensor, hi: torch.Tensor, axis: torch.Tensor, size: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Deduplicate triangle vertices by edge, without sorting.

    Edge slot `3 * lower position + axis` is dense in [0, 3M) and ordered like the global edge
    id, so a mark-and-cumsum pass numbers the vertices in edge-id order.

    Returns the slots (V,) of the vertices, the upper corner position of each (V,), faces (T,3).
    """
    slot = lo * 3 + axis
    used = torch.zeros(3 * size, dtype=torch.bool, device=lo.device)
    used[slot] = True
    # Every write to one slot carries the same corner, so scatter order does not matter.
    upper = torch.empty(3 * size, dtype=torch.long, device=lo.device)
    upper[slot] = hi
    vertex_of_slot = torch.cumsum(used, 0) - 1
    slots = torch.nonzero(used).squeeze(1)
    return slots, upper[slots], vertex_of_slot[slot]


def _crossing(sdf: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(V,) float64 zero-crossing parameter in [0, 1) from the lower towards the upper corner."""
    s_lo, s_hi = sdf[lo].double(), sdf[hi].double()
    return s_lo / (s_lo - s_hi)  # the signs differ (>= 0 vs < 0): never 0 / 0


def _positions(ijk: torch.Tensor, lo: torch.Tensor, axis: torch.Tensor, t: torch.Tensor,
               voxel_size_m: float, origin_m: torch.Tensor | None) -> torch.Tensor:
    """(V,3) float32 world positions of the vertices, computed in float64."""
    local = ijk[lo].double()
    local[torch.arange(local.shape[0], device=local.device), axis] += t
    world = local * voxel_size_m
    if origin_m is not None:
        world = world + torch.as_tensor(origin_m, dtype=torch.float64, device=world.device)
    return world.float()


def _keep_faces(faces: torch.Tensor, near: torch.Tensor, trim_mode: str) -> torch.Tensor:
    """Faces (F',3) to keep given a near-data flag per vertex (V,) bool."""
    face_near = near[faces]
    keep = face_near.all(dim=1) if trim_mode == 'any' else face_near.any(dim=1)
    return faces[keep]


def _compact(faces: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop unreferenced vertices: (V,) bool mask of kept vertices and remapped faces (F,3)."""
    used = torch.zeros(count, dtype=torch.bool, device=faces.device)
    used[faces.reshape(-1)] = True
    new_index = torch.cumsum(used.long(), 0) - 1
    return used, new_index[faces]


def marching_cubes_sparse(corner_ijk: torch.Tensor, sdf: torch.Tensor, voxel_size_m: float,
                          origin_m: torch.Tensor | None = None, udf: torch.Tensor | None = None,
                          udf_trim_m: float | None = None, cube_mask_fn: CubeMaskFn | None = None,
                          trim_mode: str = 'any', return_edge_ids: bool = False
                          ) -> tuple[torch.Tensor, ...]:
    """
    Mesh the zero level set of an SDF sampled on a sparse set of lattice corners.

    Args:
        corner_ijk: (M,3) integer lattice coordinates, unique, in [IJK_MIN, IJK_MAX]; their
            device is where the work runs.
        sdf: (M,) float SDF per corner in metres, > 0 inside. NaN/inf marks a missing corner.
        voxel_size_m: lattice spacing in metres (> 0).
        origin_m: (3,) world position of corner (0, 0, 0); zeros when None.
        udf: (M,) float unsigned distance to the data per corner, metres; NaN counts as far.
        udf_trim_m: faces are removed where the interpolated vertex UDF exceeds this.
        cube_mask_fn: maps lower-corner ijk (L,3) int64 to a (L,) bool mask of the cubes to mesh,
            e.g. `cubes_in_box(lo, hi)`; the other cubes still lend their corners.
        trim_mode: 'any' removes a face when any vertex is far (NoKSR keeps vertices with
            UDF < threshold), 'all' only when all three are.
        return_edge_ids: also return the (V,) int64 global edge id of every vertex.

    Returns:
        vertices (V,3) float32 metres, faces (F,3) int64 wound outward, and with
        `return_edge_ids` the edge ids (V,) int64. Vertices are sorted by edge id and all are
        referenced by a face. No crossing gives empty tensors of these shapes and dtypes.

    """
    ijk = check_ijk(corner_ijk, 'corner_ijk')
    _check_inputs(ijk, sdf, voxel_size_m, udf, udf_trim_m, trim_mode)
    index, ijk, sdf, udf = _sorted_corners(ijk, sdf, udf)
    lower = torch.arange(index.size, device=ijk.device)
    if cube_mask_fn is not None:
        lower = lower[_cube_mask(cube_mask_fn, ijk)]
    case, cubes = _cut_cubes(_cube_corners(index, lower), sdf >= 0)
    if case.shape[0] == 0:
        return _empty_mesh(ijk.device, return_edge_ids)
    lo, hi, axis = _triangle_edges(case_table(ijk.device), case, cubes)
    slots, hi, faces = _weld_edges(lo, hi, axis, index.size)
    lo, axis = slots // 3, slots % 3
    t = _crossing(sdf, lo, hi)
    if udf is not None:
        vertex_udf = torch.lerp(udf[lo].double(), udf[hi].double(), t)
        faces = _keep_faces(faces, vertex_udf <= udf_trim_m, trim_mode)
        used, faces = _compact(faces, slots.shape[0])
        lo, axis, t = lo[used], axis[used], t[used]
    vertices = _positions(ijk, lo, axis, t, voxel_size_m, origin_m)
    if not return_edge_ids:
        return vertices, faces
    return vertices, faces, index.keys[lo] * 3 + axis

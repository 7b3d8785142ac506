"""
Sparse marching cubes for NoKSR meshes, in plain PyTorch (CPU or CUDA).

SIGN CONVENTION: sdf > 0 is INSIDE (against the surface normal), sdf < 0 is OUTSIDE, and
sdf == 0 counts as inside. Faces are wound so their normals point from inside to outside.

Corners live on one global lattice (world position = origin + ijk * voxel). Meshing only the
cubes whose lower corner lies in a half-open box, while reading the corner values of the
neighbouring boxes, gives meshes whose border vertices are bit-identical and carry the same global
edge ids, so `weld_by_edge_ids` joins them without cracks.
"""

from noksr_ros.meshing.case_table import CaseTable, case_table
from noksr_ros.meshing.lattice import (
    IJK_MAX,
    IJK_MIN,
    active_corners_near_points,
    cubes_in_box,
    pack_ijk,
    unpack_keys,
)
from noksr_ros.meshing.marching_cubes import marching_cubes_sparse
from noksr_ros.meshing.topology import euler_characteristic, is_watertight, weld_by_edge_ids

__all__ = [
    'CaseTable', 'IJK_MAX', 'IJK_MIN', 'active_corners_near_points', 'case_table', 'cubes_in_box',
    'euler_characteristic', 'is_watertight', 'marching_cubes_sparse', 'pack_ijk', 'unpack_keys',
    'weld_by_edge_ids',
]

"""
The global corner lattice: packed int64 keys, sorted lookup, ownership boxes, activation.

A lattice corner is an integer triple `ijk`; its world position is `origin_m + ijk * voxel_m`.
Keys pack `ijk + 2**19` into 20 bits per axis (x major), so sorting keys sorts corners
lexicographically by (i, j, k). Twenty bits, not 21, because an edge id is `key * 3 + axis` and
must still fit in a signed int64. Valid coordinates are `IJK_MIN <= ijk <= IJK_MAX`: one below the
top of the field, so the upper corner of every cube is representable (about +-52 km at 0.1 m).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

KEY_BITS = 20
KEY_OFFSET = 1 << (KEY_BITS - 1)
IJK_MIN = -KEY_OFFSET
IJK_MAX = KEY_OFFSET - 2
_FIELD_MASK = (1 << KEY_BITS) - 1

CubeMaskFn = Callable[[torch.Tensor], torch.Tensor]


def check_ijk(ijk: torch.Tensor, name: str) -> torch.Tensor:
    """Validate (M,3) integer lattice coordinates; returns them as int64."""
    if ijk.ndim != 2 or ijk.shape[1] != 3:
        raise ValueError(f'{name} must have shape (M,3), got {tuple(ijk.shape)}')
    if ijk.dtype.is_floating_point or ijk.dtype == torch.bool or ijk.is_complex():
        raise ValueError(f'{name} must be an integer tensor, got {ijk.dtype}')
    ijk = ijk.long()
    if ijk.numel() and (ijk.min() < IJK_MIN or ijk.max() > IJK_MAX):
        raise ValueError(f'{name} must lie in [{IJK_MIN}, {IJK_MAX}] on every axis, '
                         f'got [{int(ijk.min())}, {int(ijk.max())}]')
    return ijk


def pack_ijk(ijk: torch.Tensor) -> torch.Tensor:
    """(M,3) int64 in-range coordinates -> (M,) int64 keys, ordered like (i, j, k)."""
    biased = ijk + KEY_OFFSET
    return (biased[:, 0] << (2 * KEY_BITS)) | (biased[:, 1] << KEY_BITS) | biased[:, 2]


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """(M,) int64 keys -> (M,3) int64 coordinates; the inverse of `pack_ijk`."""
    fields = [(keys >> (2 * KEY_BITS)) & _FIELD_MASK, (keys >> KEY_BITS) & _FIELD_MASK,
              keys & _FIELD_MASK]
    return torch.stack(fields, dim=1) - KEY_OFFSET


def key_step(axis: int) -> int:
    """Key difference between a corner and its neighbour one step up along `axis`."""
    return 1 << (KEY_BITS * (2 - axis))


class SortedKeys:
    """
    Sorted corner keys with `torch.searchsorted` lookup.

    Args:
        keys: (M,) int64 unique keys (not necessarily sorted).

    """

    def __init__(self, keys: torch.Tensor) -> None:
        self.size = int(keys.shape[0])
        # Corners often arrive sorted (e.g. from `active_corners_near_points`): skip the sort.
        self.presorted = bool((keys[1:] > keys[:-1]).all())
        if self.presorted:
            self.keys, self.order = keys, torch.arange(self.size, device=keys.device)
        else:
            self.keys, self.order = torch.sort(keys)

    def has_duplicates(self) -> bool:
        """Whether any key occurs more than once."""
        if self.presorted or self.size < 2:
            return False
        return bool((self.keys[1:] == self.keys[:-1]).any())

    def find(self, query: torch.Tensor) -> torch.Tensor:
        """Sorted positions (Q,) int64 of `query` (Q,) keys; -1 where a key is absent."""
        if self.size == 0:
            return torch.full_like(query, -1)
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.size - 1)
        return torch.where(self.keys[pos] == query, pos, torch.full_like(pos, -1))


def cubes_in_box(lo_ijk: torch.Tensor | tuple[int, int, int],
                 hi_ijk: torch.Tensor | tuple[int, int, int]) -> CubeMaskFn:
    """
    A `cube_mask_fn` keeping the cubes whose lower corner lies in the box [lo, hi).

    Half-open boxes that tile the lattice give every cube to exactly one box; a box meshed with
    the corner values up to and including `hi` (its neighbours' corners) shares bit-identical
    border vertices with the boxes next to it.
    """
    lo = torch.as_tensor(lo_ijk, dtype=torch.long).reshape(3)
    hi = torch.as_tensor(hi_ijk, dtype=torch.long).reshape(3)

    def mask(lower_ijk: torch.Tensor) -> torch.Tensor:
        lo_d, hi_d = lo.to(lower_ijk.device), hi.to(lower_ijk.device)
        return ((lower_ijk >= lo_d) & (lower_ijk < hi_d)).all(dim=1)

    return mask


def _dilate_along(keys: torch.Tensor, axis: int, lo: int, hi: int) -> torch.Tensor:
    """Unique keys of every key shifted by lo..hi steps along one axis."""
    steps = torch.arange(lo, hi + 1, device=keys.device) * key_step(axis)
    return torch.unique((keys[:, None] + steps[None, :]).reshape(-1))


def active_corners_near_points(points: torch.Tensor, voxel_size_m: float,
                               dilation_voxels: int = 1,
                               origin_m: torch.Tensor | None = None) -> torch.Tensor:
    """
    Lattice corners of the voxels that contain points, dilated by `dilation_voxels`.

    Args:
        points: (N,3) float points in metres, same frame as `origin_m`.
        voxel_size_m: lattice spacing in metres (> 0).
        dilation_voxels: extra corners on each side of each axis (>= 0); 0 gives the 8 corners of
            every occupied voxel.
        origin_m: (3,) world position of corner (0, 0, 0); zeros when None.

    Returns:
        (M,3) int64 unique corners on `points.device`, sorted lexicographically by (i, j, k).

    """
    if points.ndim != 2 or points.shape[1] != 3 or not points.dtype.is_floating_point:
        raise ValueError(f'points must be a float (N,3) tensor, got {points.dtype} '
                         f'{tuple(points.shape)}')
    if not voxel_size_m > 0:
        raise ValueError(f'voxel_size_m must be > 0, got {voxel_size_m}')
    if dilation_voxels < 0:
        raise ValueError(f'dilation_voxels must be >= 0, got {dilation_voxels}')
    if points.shape[0] == 0:
        return torch.zeros((0, 3), dtype=torch.long, device=points.device)
    if not torch.isfinite(points).all():
        raise ValueError('points must be finite')
    local = points.double()
    if origin_m is not None:
        local = local - torch.as_tensor(origin_m, dtype=torch.float64, device=points.device)
    voxels = torch.floor(local / voxel_size_m).long()
    reach = (voxels.min() - dilation_voxels, voxels.max() + 1 + dilation_voxels)
    if reach[0] < IJK_MIN or reach[1] > IJK_MAX:
        raise ValueError(f'points reach lattice coordinates {int(reach[0])}..{int(reach[1])}, '
                         f'outside [{IJK_MIN}, {IJK_MAX}]')
    keys = torch.unique(pack_ijk(voxels))
    for axis in range(3):
        keys = _dilate_along(keys, axis, -dilation_voxels, 1 + dilation_voxels)
    return unpack_keys(keys)

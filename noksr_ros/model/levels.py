"""
The sparse voxel pyramid a forward pass works on: cells, positions and curve orders per level.

Built once per forward pass from the input points (in a local, non-negative frame) and shared by
the backbone (convolution neighbour maps, attention orders) and the decoder (neighbour search).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from noksr_ros.curves import encode
from noksr_ros.model.sparse import BITS, CellIndex, neighbour_map, pack_cells

CODE_BITS = 21


@dataclass
class Level:
    """
    One level of the pyramid.

    cells: (M,3) int64 cell coordinates at `grid_m`; xyz: (M,3) float32 mean position of the
    points in each cell (local frame, metres); counts: (M,) points per cell; parent: (M_finer,)
    row of each cell of the finer level in this level (None at level 0); orders: curve name ->
    (perm (M,), codes sorted (M,)) for attention patches and neighbour search. The cell hash
    (`index`, for sparse convolution) and the curve-sorted positions are built on first use.
    """

    grid_m: float
    cells: torch.Tensor
    xyz: torch.Tensor
    counts: torch.Tensor
    parent: torch.Tensor | None
    orders: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _nbr: dict[int, torch.Tensor] = field(default_factory=dict)
    _index: CellIndex | None = None
    _sorted_xyz: dict[str, torch.Tensor] = field(default_factory=dict)
    _rank: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def index(self) -> CellIndex:
        """Hash of the cells (sparse convolution's neighbour lookups)."""
        if self._index is None:
            self._index = CellIndex(self.cells)
        return self._index

    @property
    def size(self) -> int:
        """Number of cells."""
        return self.cells.shape[0]

    def neighbours(self, kernel_size: int) -> torch.Tensor:
        """(M,K) cached neighbour map for a cubic kernel (M marks a missing cell)."""
        if kernel_size not in self._nbr:
            self._nbr[kernel_size] = neighbour_map(self.index, kernel_size)
        return self._nbr[kernel_size]

    def order(self, curve: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(perm, sorted codes) of this level along `curve` (computed once, stable sort)."""
        if curve not in self.orders:
            codes = encode(self.cells, curve, CODE_BITS)
            sorted_codes, perm = torch.sort(codes, stable=True)
            self.orders[curve] = (perm, sorted_codes)
        return self.orders[curve]

    def rank(self, curve: str) -> torch.Tensor:
        """(M,) position of each cell in `curve` order (the inverse of `order(curve)[0]`)."""
        if curve not in self._rank:
            perm = self.order(curve)[0]
            self._rank[curve] = torch.empty_like(perm).index_copy_(
                0, perm, torch.arange(perm.shape[0], device=perm.device))
        return self._rank[curve]

    def sorted_xyz(self, curve: str) -> torch.Tensor:
        """(M,3) cell positions in `curve` order: a window of the order reads contiguous rows."""
        if curve not in self._sorted_xyz:
            self._sorted_xyz[curve] = self.xyz[self.order(curve)[0]]
        return self._sorted_xyz[curve]


def _scatter_mean(values: torch.Tensor, inverse: torch.Tensor, size: int,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    w = torch.ones_like(inverse, dtype=values.dtype) if weights is None else weights
    total = values.new_zeros(size, values.shape[1]).index_add_(0, inverse, values * w[:, None])
    norm = values.new_zeros(size).index_add_(0, inverse, w)
    return total / norm.clamp_min(1e-12)[:, None]


def unique_cells(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Unique rows of (M,3) non-negative int64 cells, sorted by packed key, and the inverse.

    Packing into one int64 key makes this a 1-D unique, several times faster than unique(dim=0).
    """
    keys = pack_cells(cells)
    if keys.numel() and bool((keys < 0).any()):
        raise ValueError(f'cell coordinates must lie in [0, 2**{BITS}); the point cloud spans '
                         'too many cells for this grid size')
    ukeys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    mask = (1 << BITS) - 1
    unique = torch.stack([ukeys >> (2 * BITS), (ukeys >> BITS) & mask, ukeys & mask], dim=1)
    return unique, inverse


def build_pyramid(xyz: torch.Tensor, grid_m: float, num_levels: int
                  ) -> tuple[list[Level], torch.Tensor]:
    """
    Voxelise points (N,3) float32, local frame, all >= 0, into `num_levels` levels.

    Level i has cells of `grid_m * 2**i`. Returns the levels and the (N,) row of each input point
    in level 0.
    """
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f'xyz must be (N,3), got {tuple(xyz.shape)}')
    if xyz.shape[0] and bool((xyz < 0).any()):
        raise ValueError('xyz must be in a non-negative local frame (subtract the minimum first)')
    cells = torch.floor(xyz / grid_m).long()
    cells0, inv0 = unique_cells(cells)
    counts0 = torch.bincount(inv0, minlength=cells0.shape[0]).to(xyz.dtype)
    mean0 = _scatter_mean(xyz, inv0, cells0.shape[0])
    levels = [Level(grid_m, cells0, mean0, counts0, None)]
    for i in range(1, num_levels):
        prev = levels[-1]
        cells_i, inv = unique_cells(torch.div(prev.cells, 2, rounding_mode='floor'))
        counts = prev.counts.new_zeros(cells_i.shape[0]).index_add_(0, inv, prev.counts)
        mean = _scatter_mean(prev.xyz, inv, cells_i.shape[0], prev.counts)
        levels.append(Level(grid_m * 2 ** i, cells_i, mean, counts, inv))
    return levels, inv0

"""
Sparse voxel tensors in plain PyTorch: hashed cell lookup, neighbour maps, sparse convolution.

A level of the backbone is a set of occupied integer cells. Cells are packed into int64 keys
(21 bits per axis), sorted once, and looked up with `torch.searchsorted`; a missing cell is an
explicit miss (index == M, which points at a zero padding row), never a wrap-around index -1.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from noksr_ros.model.gather import take_rows

BITS = 21
_MASK = (1 << BITS) - 1


def pack_cells(cells: torch.Tensor) -> torch.Tensor:
    """(M,3) int64 non-negative cells -> (M,) int64 keys (x major). Out-of-range cells -> -1."""
    ok = ((cells >= 0) & (cells <= _MASK)).all(dim=1)
    keys = (cells[:, 0] << (2 * BITS)) | (cells[:, 1] << BITS) | cells[:, 2]
    return torch.where(ok, keys, torch.full_like(keys, -1))


class CellIndex:
    """
    Sorted lookup table from integer cells to their row in a level.

    `cells` is (M,3) int64, unique, non-negative. `lookup` returns rows in [0, M], with M meaning
    'not present'.
    """

    def __init__(self, cells: torch.Tensor) -> None:
        self.cells = cells
        keys = pack_cells(cells)
        self.sorted_keys, self.order = torch.sort(keys, stable=True)
        self.size = cells.shape[0]

    def lookup(self, query_cells: torch.Tensor) -> torch.Tensor:
        """Rows of `query_cells` (Q,3) in this level; M where absent."""
        if self.size == 0:
            return torch.zeros(query_cells.shape[0], dtype=torch.long, device=query_cells.device)
        keys = pack_cells(query_cells)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp(max=self.size - 1)
        hit = (self.sorted_keys[pos] == keys) & (keys >= 0)
        return torch.where(hit, self.order[pos], torch.full_like(pos, self.size))


def kernel_offsets(kernel_size: int, device: torch.device) -> torch.Tensor:
    """(K,3) int64 offsets of a cubic kernel of odd size, centre included."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f'kernel_size must be odd and positive, got {kernel_size}')
    r = kernel_size // 2
    offs = list(itertools.product(range(-r, r + 1), repeat=3))
    return torch.tensor(offs, dtype=torch.long, device=device)


def neighbour_map(index: CellIndex, kernel_size: int) -> torch.Tensor:
    """(M,K) rows of each cell's neighbours at every kernel offset; M marks a missing cell."""
    offs = kernel_offsets(kernel_size, index.cells.device)
    query = (index.cells[:, None, :] + offs[None]).reshape(-1, 3)
    return index.lookup(query).reshape(index.size, offs.shape[0])


class SparseConv(nn.Module):
    """
    Submanifold sparse 3D convolution over a precomputed neighbour map.

    Output cells are the input cells; a missing neighbour contributes zero. Work is chunked so
    the gathered (chunk, K, C_in) tensor stays small.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True, chunk: int = 32768) -> None:
        super().__init__()
        k = kernel_size ** 3
        self.kernel_size = kernel_size
        bound = 1.0 / (k * in_channels) ** 0.5
        self.weight = nn.Parameter(torch.empty(k * in_channels, out_channels).uniform_(-bound,
                                                                                     bound))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.chunk = chunk

    def forward(self, feats: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """`feats` (M,C_in), `nbr` (M,K) from `neighbour_map` -> (M,C_out)."""
        padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])], dim=0)
        outs = []
        for start in range(0, nbr.shape[0], self.chunk):
            rows = nbr[start:start + self.chunk]
            gathered = take_rows(padded, rows).reshape(rows.shape[0], -1)
            outs.append(gathered @ self.weight)
        out = torch.cat(outs, dim=0) if outs else feats.new_zeros(0, self.weight.shape[1])
        return out + self.bias if self.bias is not None else out

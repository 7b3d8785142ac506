"""
Neighbours of query points in one pyramid level: serialization search or exact kNN.

Serialization search (the 'kernel-free' part of NoKSR): encode the query's cell with the level's
curve, binary-search it in the level's sorted codes, take `window` entries around the insertion
position, drop candidates outside the array (explicitly, never a wrapped index) and beyond
`radius_m`. Several curves are united and duplicates removed. Exact kNN has the same output type.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch

from noksr_ros.curves import encode
from noksr_ros.model.gather import take_rows
from noksr_ros.model.levels import CODE_BITS, Level

_MAX_CELL = (1 << CODE_BITS) - 1


@dataclass
class Neighbours:
    """
    Candidate neighbours of Q queries: rows into a level, validity, distances (metres).

    index: (Q,K) int64, always a valid row (masked entries point at row 0); mask: (Q,K) bool;
    dist: (Q,K) float, +inf where masked.
    """

    index: torch.Tensor
    mask: torch.Tensor
    dist: torch.Tensor

    def pairs(self, xyz: torch.Tensor, query: torch.Tensor) -> Pairs:
        """
        The valid (query, row) pairs only: most candidates are masked (about 60 % here).

        `xyz` are the level's cell positions and `query` the queries these neighbours were found
        for; each pair carries its offset (neighbour - query), which every consumer needs.

        The pair count is padded up to one of a few sizes (steps of 2^(1/4)) with neutral pairs
        (query 0, row 0, distance +inf: weight 0, never the nearest). Tensors of ever-changing
        sizes fragment glibc's heap (measured: +270 MB RSS over one drive); repeated sizes reuse
        the freed blocks.
        """
        qi, slot = self.mask.nonzero(as_tuple=True)
        row, dist = self.index[qi, slot], self.dist[qi, slot]
        pad = _padded_size(len(qi)) - len(qi)
        if pad:
            zeros = qi.new_zeros(pad)
            qi, row = torch.cat([qi, zeros]), torch.cat([row, zeros])
            dist = torch.cat([dist, dist.new_full((pad,), float('inf'))])
        return Pairs(qi, row, dist, self.mask.shape[0], take_rows(xyz, row) - take_rows(query, qi))


def _padded_size(n: int) -> int:
    """Smallest size >= n among 1024 * 2^(i/4) (n itself when zero)."""
    if n == 0:
        return 0
    step = max(0, math.ceil(4 * math.log2(n / 1024)))
    size = math.ceil(1024 * 2 ** (step / 4))
    return size if size >= n else math.ceil(1024 * 2 ** ((step + 1) / 4))


@dataclass
class Pairs:
    """Valid neighbour pairs, flat and sorted by query: work per pair, pooled per query."""

    query: torch.Tensor
    row: torch.Tensor
    dist: torch.Tensor
    count: int
    offset: torch.Tensor  # (P,3) neighbour position - query position

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-query sum of per-pair `values` (P,...) -> (count,...); 0 without pairs."""
        out = values.new_zeros((self.count,) + tuple(values.shape[1:]))
        return out.index_add_(0, self.query, values)


def _finish(level: Level, query: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor,
            radius_m: float) -> Neighbours:
    rows = torch.where(valid, rows, torch.zeros_like(rows))
    dist = torch.linalg.vector_norm(take_rows(level.xyz, rows) - query[:, None, :], dim=-1)
    return _within(rows, valid, dist, radius_m)


def _within(rows: torch.Tensor, valid: torch.Tensor, dist: torch.Tensor,
            radius_m: float) -> Neighbours:
    """Neighbours with the invalid rows at 0 and everything beyond `radius_m` masked (inf)."""
    mask = valid & (dist <= radius_m)
    return Neighbours(torch.where(valid, rows, torch.zeros_like(rows)), mask,
                      torch.where(mask, dist, torch.full_like(dist, float('inf'))))


def _seen_in(rows: torch.Tensor, windows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
             ) -> torch.Tensor:
    """
    (Q,K) bool: candidate `rows` that an earlier curve's window already holds.

    An earlier window is a contiguous run [lo, hi) of that curve's order (clipped to the array),
    so membership is a range test on the row's rank in that order: O(K) per query instead of
    comparing against every earlier candidate (O(K^2)).
    """
    seen = torch.zeros_like(rows, dtype=torch.bool)
    for rank, lo, hi in windows:
        r = take_rows(rank, rows)
        seen |= (r >= lo[:, None]) & (r < hi[:, None])
    return seen


# Curves whose code of a cell twice as large is the code shifted right by 3 bits.
MORTON_CURVES = ('z', 'z-trans')


def query_codes(query: torch.Tensor, grid_m: float, curves: tuple[str, ...]
                ) -> dict[str, torch.Tensor]:
    """Codes along each curve of the cells of `grid_m` holding `query` (Q,3) local-frame points."""
    cells = torch.floor(query / grid_m).long().clamp(0, _MAX_CELL)
    return {curve: encode(cells, curve, CODE_BITS, validate=False) for curve in curves}


def coarser_codes(codes: dict[str, torch.Tensor], levels_up: int) -> dict[str, torch.Tensor]:
    """
    The Morton-family codes of `codes` for cells 2**levels_up times larger: a right shift.

    Exact: floor(q / (2g)) == floor(floor(q / g) / 2) in float arithmetic (scaling by two is
    exact); only queries beyond the code range (no neighbours anyway) could differ. Other curves
    are left out and encoded by the caller.
    """
    return {c: v >> (3 * levels_up) for c, v in codes.items() if c in MORTON_CURVES}


def serialization_neighbours(level: Level, query: torch.Tensor, curves: tuple[str, ...],
                             window: int, radius_m: float,
                             codes: dict[str, torch.Tensor] | None = None) -> Neighbours:
    """
    Up to `window * len(curves)` neighbours of `query` (Q,3) local-frame points in `level`.

    `codes` may hold the queries' codes at this level for some curves (see `coarser_codes`).
    """
    if window < 1 or not curves:
        raise ValueError('window must be >= 1 and curves non-empty')
    q_count = query.shape[0]
    if level.size == 0 or q_count == 0:
        empty = torch.zeros(q_count, 0, dtype=torch.long, device=query.device)
        return Neighbours(empty, empty.bool(), empty.to(query.dtype))
    missing = tuple(c for c in curves if codes is None or c not in codes)
    codes = dict(codes or {})
    if missing:
        codes.update(query_codes(query, level.grid_m, missing))
    half = window // 2
    offsets = torch.arange(-half, window - half, device=query.device)
    all_rows, all_valid, all_dist, windows = [], [], [], []
    for curve in curves:
        perm, sorted_codes = level.order(curve)
        pos = torch.searchsorted(sorted_codes, codes[curve])
        cand = pos[:, None] + offsets[None]
        valid = (cand >= 0) & (cand < level.size)
        cand = cand.clamp(0, level.size - 1)
        rows = take_rows(perm, cand)
        # Positions from the curve-sorted copy: each query reads a contiguous window.
        all_dist.append(torch.linalg.vector_norm(take_rows(level.sorted_xyz(curve), cand)
                                                 - query[:, None, :], dim=-1))
        if windows:  # a neighbour found by an earlier curve is not counted twice
            valid &= ~_seen_in(rows, windows)
        all_valid.append(valid)
        all_rows.append(rows)
        windows.append((level.rank(curve), pos - half, pos + (window - half)))
    return _within(torch.cat(all_rows, 1), torch.cat(all_valid, 1), torch.cat(all_dist, 1),
                   radius_m)


def knn_neighbours(level: Level, query: torch.Tensor, k: int, radius_m: float,
                   chunk: int = 4096) -> Neighbours:
    """Exact k nearest cells of `query` (Q,3) in `level` (torch, chunked brute force)."""
    q_count = query.shape[0]
    k_eff = min(k, level.size)
    if k_eff == 0 or q_count == 0:
        empty = torch.zeros(q_count, 0, dtype=torch.long, device=query.device)
        return Neighbours(empty, empty.bool(), empty.to(query.dtype))
    rows = []
    for start in range(0, q_count, chunk):
        d = torch.cdist(query[start:start + chunk], level.xyz)
        rows.append(torch.topk(d, k_eff, dim=1, largest=False, sorted=True).indices)
    idx = torch.cat(rows, 0)
    return _finish(level, query, idx, torch.ones_like(idx, dtype=torch.bool), radius_m)


def recall(found: Neighbours, exact: Neighbours) -> float:
    """Share of the exact neighbours (within radius) that `found` contains."""
    hits = total = 0
    for f_row, f_mask, e_row, e_mask in zip(found.index, found.mask, exact.index, exact.mask):
        truth = set(e_row[e_mask].tolist())
        total += len(truth)
        hits += len(truth & set(f_row[f_mask].tolist()))
    return hits / total if total else 1.0

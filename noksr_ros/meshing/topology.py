"""Mesh bookkeeping: welding separately meshed pieces by edge id, and topology checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def weld_by_edge_ids(parts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Concatenate meshes and merge vertices that carry the same global edge id.

    Args:
        parts: (vertices (V_i,3) float32, faces (F_i,3) int64, edge_ids (V_i,) int64) per piece,
            as returned by `marching_cubes_sparse(..., return_edge_ids=True)`, all on one device.

    Returns:
        vertices (V,3), faces (F,3) int64 and edge ids (V,) int64, vertices sorted by edge id.
        A shared vertex takes its position from the first piece that holds it; faces are kept
        as given (pieces meshed from disjoint cube sets share no face).

    """
    if not parts:
        raise ValueError('parts must hold at least one mesh')
    vertices = torch.cat([p[0] for p in parts])
    edge_ids = torch.cat([p[2] for p in parts])
    starts = torch.cumsum(torch.tensor([0] + [p[0].shape[0] for p in parts[:-1]]), 0).tolist()
    faces = torch.cat([p[1] + start for p, start in zip(parts, starts, strict=True)])
    unique_ids, inverse = torch.unique(edge_ids, return_inverse=True)
    rows = torch.arange(edge_ids.shape[0], device=edge_ids.device)
    first = torch.full_like(unique_ids, edge_ids.shape[0]).scatter_reduce_(
        0, inverse, rows, reduce='amin')
    return vertices[first], inverse[faces], unique_ids


def _undirected_edges(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges (3F,2) of the faces and their undirected keys (3F,) int64."""
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    lo, hi = directed.min(dim=1).values, directed.max(dim=1).values
    scale = int(faces.max()) + 1 if faces.numel() else 1
    return directed, lo * scale + hi


def edge_count(faces: torch.Tensor) -> int:
    """Number of distinct undirected edges of a triangle mesh with faces (F,3) int64."""
    return int(torch.unique(_undirected_edges(faces)[1]).shape[0])


def is_watertight(faces: torch.Tensor) -> bool:
    """
    Whether every edge is shared by exactly two faces that traverse it in opposite directions.

    That is a closed, consistently oriented surface. `faces` is (F,3) int64; no faces -> False.
    """
    if faces.shape[0] == 0:
        return False
    directed, keys = _undirected_edges(faces)
    _, counts = torch.unique(keys, return_counts=True)
    if not bool((counts == 2).all()):
        return False
    scale = int(faces.max()) + 1
    directed_keys = directed[:, 0] * scale + directed[:, 1]
    # Two faces on one edge must use it in opposite directions: no directed edge twice.
    return int(torch.unique(directed_keys).shape[0]) == directed.shape[0]


def euler_characteristic(num_vertices: int, faces: torch.Tensor) -> int:
    """V - E + F of a triangle mesh (2 for a closed sphere-like surface)."""
    return num_vertices - edge_count(faces) + int(faces.shape[0])

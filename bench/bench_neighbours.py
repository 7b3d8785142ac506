"""
Neighbour search: serialization window vs exact kNN (scipy cKDTree, torch brute force).

The paper's Figure 6, done on this CPU: for 10k-1M source points on a street-like surface (5 cm
spacing) and 25k-250k queries near it, the time of index build + query, and the recall of the
exact 8 nearest neighbours within the radius. Usage: python bench/bench_neighbours.py [--quick]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.spatial import cKDTree
import torch

from bench.common import median_s, report
from noksr_ros.model.levels import build_pyramid
from noksr_ros.model.neighbours import Neighbours, knn_neighbours, serialization_neighbours

GRID_M = 0.01
RADIUS_M = 0.3
K = 8


def street_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """N points on a ground plane with wall strips, about 5 cm apart, non-negative coords."""
    side = np.sqrt(n * 0.05 ** 2 / 1.5)
    ground = rng.uniform(0, side, (n * 2 // 3, 2))
    ground = np.c_[ground, 1.0 + 0.02 * np.sin(ground[:, 0])]
    m = n - len(ground)
    wall = np.c_[rng.uniform(0, side, m), np.where(rng.random(m) < 0.5, 0.5, side - 0.5),
                 1.0 + rng.uniform(0, side / 4, m)]
    wall[:, [1]] += rng.normal(0, 0.01, (m, 1))
    return np.concatenate([ground, wall]).astype(np.float32)


def exact_recall(found: Neighbours, tree_idx: np.ndarray, tree_dist: np.ndarray,
                 levels_rows: np.ndarray) -> float:
    """Share of the exact K nearest (within radius) present in `found`."""
    f_rows = np.where(found.mask.numpy(), found.index.numpy(), -1)
    rows = levels_rows[np.minimum(tree_idx, len(levels_rows) - 1)]
    truth = np.where(tree_dist <= RADIUS_M, rows, -2)
    hits = (truth[:, :, None] == f_rows[:, None, :]).any(axis=2) & (truth >= 0)
    return float(hits.sum() / max(1, (truth >= 0).sum()))


def run_case(n_src: int, n_q: int, rng: np.random.Generator, with_torch: bool) -> dict:
    src = street_points(n_src, rng)
    q = src[rng.integers(0, n_src, n_q)] + rng.normal(0, 0.05, (n_q, 3)).astype(np.float32)
    src_t, q_t = torch.from_numpy(src), torch.from_numpy(q)

    def ours() -> Neighbours:
        levels, _ = build_pyramid(src_t, GRID_M, 1)
        return serialization_neighbours(levels[0], q_t, ('z', 'z-trans'), K, RADIUS_M)

    def kdtree() -> tuple[np.ndarray, np.ndarray]:
        return cKDTree(src).query(q, K, workers=-1)[::-1]

    row = {'src': n_src, 'queries': n_q}
    row['ours_s'] = median_s(ours, repeats=3)
    row['ckdtree_s'] = median_s(kdtree, repeats=3)
    row['speedup_vs_ckdtree'] = row['ckdtree_s'] / row['ours_s']
    levels, inv = build_pyramid(src_t, GRID_M, 1)
    found = serialization_neighbours(levels[0], q_t, ('z', 'z-trans'), K, RADIUS_M)
    dist, idx = cKDTree(src).query(q, K, workers=-1)
    row['recall_at_8'] = exact_recall(found, idx, dist, inv.numpy())
    if with_torch:
        row['torch_knn_s'] = median_s(lambda: knn_neighbours(levels[0], q_t, K, RADIUS_M),
                                      repeats=1, warmup=0)
        row['speedup_vs_torch'] = row['torch_knn_s'] / row['ours_s']
    return row


def main() -> None:
    quick = '--quick' in sys.argv
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    sizes = [(10_000, 25_000), (100_000, 100_000)] if quick else [
        (10_000, 25_000), (25_000, 25_000), (100_000, 100_000), (250_000, 100_000),
        (1_000_000, 250_000)]
    rows = [run_case(n, q, rng, with_torch=n <= 100_000) for n, q in sizes]
    report('neighbours', rows, ['src', 'queries', 'ours_s', 'ckdtree_s', 'speedup_vs_ckdtree',
                                'torch_knn_s', 'speedup_vs_torch', 'recall_at_8'],
           {'window': K, 'curves': ['z', 'z-trans'], 'radius_m': RADIUS_M})


if __name__ == '__main__':
    main()

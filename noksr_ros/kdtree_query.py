"""
scipy cKDTree queries that fail loudly, never silently, when memory or threads run out.

`cKDTree.query(workers=-1)` runs its workers in Python threads whose exceptions are only printed:
under a memory cap (RLIMIT_AS, a cgroup) a worker that hits `std::bad_alloc` leaves its share of
the result arrays uninitialised and the query returns them as if nothing happened (seen here:
neighbour index -4716420156375002545), and starting a worker may fail with `RuntimeError: can't
start new thread`. So the parallel query here splits the rows over our own thread pool, each part
a single-threaded cKDTree query (which releases the GIL), where a worker's exception reaches the
caller; on such a failure the whole query is redone on the calling thread, and a failure there
propagates.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import os
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

# Below this many rows per worker, threads cost more than they save.
_MIN_ROWS_PER_WORKER = 2048


def query(tree: cKDTree, x: np.ndarray, workers: int = -1,
          **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """`tree.query(x, **kwargs)` on `workers` threads (-1: all cores); same results as scipy's."""
    x = np.asarray(x)
    n_workers = (os.cpu_count() or 1) if workers < 0 else int(workers)
    n_workers = min(n_workers, len(x) // _MIN_ROWS_PER_WORKER)
    if n_workers <= 1:
        return tree.query(x, workers=1, **kwargs)
    bounds = np.linspace(0, len(x), n_workers + 1).astype(int)
    parts = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    try:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            results = list(pool.map(lambda part: tree.query(part, workers=1, **kwargs), parts))
    except MemoryError:
        return tree.query(x, workers=1, **kwargs)
    except RuntimeError as exc:  # no thread could be started (memory cap)
        if 'thread' not in str(exc):
            raise
        return tree.query(x, workers=1, **kwargs)
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))

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

The pool is started once, at import, with all its threads running: a thread started under a
memory cap can die before it reports that it started, and `Thread.start` then waits forever
(seen here: a reconstruction under RLIMIT_AS hung in a per-query pool's first submit).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import os
import threading
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

# Below this many rows per worker, threads cost more than they save.
_MIN_ROWS_PER_WORKER = 2048


def _started_pool(n_threads: int) -> ThreadPoolExecutor | None:
    """A pool whose `n_threads` threads are already running (None if they cannot start)."""
    if n_threads <= 1:
        return None
    pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix='noksr-kdtree')
    barrier = threading.Barrier(n_threads)
    try:  # each task holds its thread until all are running: n distinct threads
        for future in [pool.submit(barrier.wait, 10.0) for _ in range(n_threads)]:
            future.result()
    except (RuntimeError, MemoryError, threading.BrokenBarrierError):
        pool.shutdown(wait=False)
        return None
    return pool


_POOL = _started_pool(os.cpu_count() or 1)
_POOL_THREADS = (os.cpu_count() or 1) if _POOL is not None else 1


def _serial_after_fork() -> None:
    """A forked child has none of the pool's threads: it queries on its calling thread."""
    global _POOL, _POOL_THREADS
    _POOL, _POOL_THREADS = None, 1


os.register_at_fork(after_in_child=_serial_after_fork)


def query(tree: cKDTree, x: np.ndarray, workers: int = -1,
          **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """`tree.query(x, **kwargs)` on `workers` threads (-1: all cores); same results as scipy's."""
    x = np.asarray(x)
    n_workers = (os.cpu_count() or 1) if workers < 0 else int(workers)
    n_workers = min(n_workers, len(x) // _MIN_ROWS_PER_WORKER, _POOL_THREADS)
    if n_workers <= 1 or _POOL is None:
        return tree.query(x, workers=1, **kwargs)
    bounds = np.linspace(0, len(x), n_workers + 1).astype(int)
    parts = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    try:
        results = list(_POOL.map(lambda part: tree.query(part, workers=1, **kwargs), parts))
    except MemoryError:
        return tree.query(x, workers=1, **kwargs)
    except RuntimeError as exc:  # no thread could be started (memory cap)
        if 'thread' not in str(exc):
            raise
        return tree.query(x, workers=1, **kwargs)
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))

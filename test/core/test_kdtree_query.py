"""kdtree_query.query: scipy's answer, and a failing worker never yields uninitialised results."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from noksr_ros import kdtree_query


def _cloud(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n // 2, 3))


@pytest.mark.parametrize('kwargs', [{'k': 5}, {'k': 1, 'distance_upper_bound': 0.05},
                                    {'k': 8, 'distance_upper_bound': 0.1}])
def test_split_query_matches_scipys_single_threaded_query(kwargs):
    pts, q = _cloud()
    want_d, want_i = cKDTree(pts).query(q, workers=1, **kwargs)
    got_d, got_i = kdtree_query.query(cKDTree(pts), q, workers=2, **kwargs)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_d, want_d)


class _WorkerRunsOutOfMemory(cKDTree):
    """A real tree whose queries on part of the rows fail as under a memory cap (bad_alloc)."""

    full_rows = 0

    def query(self, x, *args, **kwargs):
        if len(x) < self.full_rows:
            raise MemoryError('std::bad_alloc')
        return super().query(x, *args, **kwargs)


def test_a_worker_out_of_memory_redoes_the_query_serially():
    pts, q = _cloud()
    tree = _WorkerRunsOutOfMemory(pts)
    tree.full_rows = len(q)
    got_d, got_i = kdtree_query.query(tree, q, workers=2, k=4)
    want_d, want_i = cKDTree(pts).query(q, k=4)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_d, want_d)


def test_a_serial_failure_propagates():
    pts, q = _cloud()
    tree = _WorkerRunsOutOfMemory(pts)
    tree.full_rows = len(q) + 1  # the serial retry fails too
    with pytest.raises(MemoryError):
        kdtree_query.query(tree, q, workers=2, k=4)


def test_other_runtime_errors_are_not_swallowed():
    class Broken(cKDTree):
        def query(self, *args, **kwargs):
            raise RuntimeError('some other failure')

    pts, q = _cloud()
    with pytest.raises(RuntimeError, match='other failure'):
        kdtree_query.query(Broken(pts), q, workers=2)


def test_queries_start_no_thread_the_pool_runs_from_import():
    """A thread started under a memory cap can hang Thread.start: queries must start none."""
    import os
    import threading

    def pool_threads():
        return sorted(t.name for t in threading.enumerate() if t.name.startswith('noksr-kdtree'))

    before = pool_threads()
    assert len(before) == ((os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0)
    pts, q = _cloud()
    count = threading.active_count()
    for _ in range(3):
        kdtree_query.query(cKDTree(pts), q, workers=-1, k=4)
    assert threading.active_count() == count and pool_threads() == before


def _query_in_child(pts, q, out):
    got = kdtree_query.query(cKDTree(pts), q, workers=-1, k=3)
    out.put(got[1].sum())


def test_a_forked_child_still_answers():
    """After fork the pool's threads are gone: the child must not wait for them."""
    import multiprocessing

    pts, q = _cloud()
    ctx = multiprocessing.get_context('fork')
    out = ctx.Queue()
    child = ctx.Process(target=_query_in_child, args=(pts, q, out))
    child.start()
    child.join(60)
    if child.is_alive():  # hung on the parent's threads: do not leave it behind
        child.kill()
        child.join()
    assert child.exitcode == 0
    assert out.get(timeout=5) == cKDTree(pts).query(q, k=3)[1].sum()

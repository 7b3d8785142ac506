"""kdtree_query.query: the one-thread retry gives the same answer and keeps other errors."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from noksr_ros import kdtree_query


class _NoThreadsTree(cKDTree):
    """A real tree whose multi-threaded queries fail the way a memory-capped process does."""

    def query(self, x, k=1, *args, workers=1, **kwargs):
        if workers != 1:
            raise RuntimeError("can't start new thread")
        return super().query(x, k, *args, workers=workers, **kwargs)


def test_one_thread_retry_matches_the_threaded_query():
    rng = np.random.default_rng(0)
    pts, q = rng.normal(size=(2000, 3)), rng.normal(size=(300, 3))
    want_d, want_i = cKDTree(pts).query(q, k=5, workers=-1)
    got_d, got_i = kdtree_query.query(_NoThreadsTree(pts), q, k=5)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_d, want_d)


def test_other_runtime_errors_are_not_swallowed():
    class Broken(cKDTree):
        def query(self, *args, **kwargs):
            raise RuntimeError('some other failure')

    with pytest.raises(RuntimeError, match='other failure'):
        kdtree_query.query(Broken(np.zeros((3, 3))), np.zeros((1, 3)))


def test_a_serial_query_that_fails_is_not_retried():
    with pytest.raises(RuntimeError, match='new thread'):
        class Always(cKDTree):
            def query(self, *args, **kwargs):
                raise RuntimeError("can't start new thread")

        kdtree_query.query(Always(np.zeros((3, 3))), np.zeros((1, 3)), workers=1)

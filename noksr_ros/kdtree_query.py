"""
scipy cKDTree queries that survive a process where no new thread can be started.

`cKDTree.query(workers=-1)` starts threads; under a memory cap (RLIMIT_AS, a cgroup) starting one
fails with `RuntimeError: can't start new thread`. The same query on the calling thread gives the
same answer, so that is the fallback rather than a failed reconstruction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree


def query(tree: cKDTree, x: np.ndarray, workers: int = -1,
          **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """`tree.query(x, workers=workers, **kwargs)`, retried on one thread if none can start."""
    try:
        return tree.query(x, workers=workers, **kwargs)
    except RuntimeError as exc:
        if workers == 1 or 'thread' not in str(exc):
            raise
        return tree.query(x, workers=1, **kwargs)

"""process_memory: a spawned child's peak is its own, not its parent's size at the spawn."""

import numpy as np

from noksr_ros.evaluation.compare import in_fresh_process
from noksr_ros.process_memory import peak_rss_mb, rss_mb


def test_peak_follows_allocations_in_this_process():
    before = peak_rss_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
    assert rss_mb() >= 60.0
    assert peak_rss_mb() >= max(before, rss_mb()) - 1.0
    assert block.sum() == len(block)


def test_a_spawned_child_does_not_inherit_the_parents_peak():
    block = np.ones(400 * 2**20 // 8)  # the parent now holds 400 MB more than the child needs
    parent = rss_mb()
    child_peak = in_fresh_process(peak_rss_mb)
    # Linux ru_maxrss would report at least `parent` here (carried through fork and exec).
    assert child_peak < parent - 300.0, (child_peak, parent)
    assert child_peak > 5.0
    assert block[-1] == 1.0

"""
The allocator controls and the memory figures the node reports in /diagnostics.

Each case runs in a fresh interpreter: mallopt settings are process-wide and must not leak into
other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json
import numpy as np
from noksr_ros.allocator import process_memory, release_free_memory, tune_allocator
tuned = tune_allocator()
before = process_memory()
big = np.ones(64 * 2**20 // 8)       # 64 MB: above the mmap threshold
small = [np.ones(1000) for _ in range(20000)]  # ~160 MB of 8 kB blocks from the heap
held = process_memory()
del big, small
trimmed = release_free_memory()
after = process_memory()
print(json.dumps({'tuned': tuned, 'trimmed': trimmed, 'before': before, 'held': held,
                  'after': after}))
"""


@pytest.fixture(scope='module')
def probe() -> dict:
    out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_process_memory_sees_heap_and_mmapped_blocks(probe: dict) -> None:
    before, held = probe['before'], probe['held']
    assert probe['tuned'] is True  # glibc (Debian): the settings were taken
    assert held['rss_mb'] - before['rss_mb'] > 200
    assert held['heap_mmapped_mb'] - before['heap_mmapped_mb'] >= 63
    assert held['heap_in_use_mb'] - before['heap_in_use_mb'] > 140


def test_freed_memory_goes_back_to_the_system(probe: dict) -> None:
    held, after = probe['held'], probe['after']
    assert after['heap_mmapped_mb'] < held['heap_mmapped_mb'] - 60  # munmapped at once
    assert after['heap_in_use_mb'] < held['heap_in_use_mb'] - 140
    assert after['rss_mb'] < held['rss_mb'] - 180  # trim handed the heap pages back

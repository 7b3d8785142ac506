"""
Keep a long-running process's resident memory flat under glibc malloc.

The live node frees and reallocates buffers of many sizes for hours: decoded clouds (~2 MB),
network tensors, marker messages, and each segment's points, corner values and mesh (100 kB to a
few MB, replaced by arrays of a new size at every reconstruction). glibc raises its mmap
threshold each time a large mmapped block is freed, so later large blocks come from the heap
arenas, where freed space fragments and is rarely returned to the system: RSS creeps up with no
leak. A fixed threshold of 128 KiB keeps every such block in mmap (returned on free), fewer
arenas bound the per-thread fragmentation, and a periodic `malloc_trim` hands free heap pages
back. Measured in 13-minute soaks of the node (bench/bench_soak.py, `heap_free_mb` from
`process_memory`): with a 1 MiB threshold the free-but-held heap grew from 86 to 175 MB; with
128 KiB it stayed at 5-9 MB and RSS was about 130 MB lower, for 7 % fewer scans integrated.

The live node applies all three. Offline (`noksr reconstruct`) only trims after each update: on
a simulated 2 km drive (bench/bench_long_drive.py) RSS grew about 1.9 MB per metre with glibc's
defaults and stayed at 360-430 MB between updates with a fixed 1 MiB threshold, but that made
the run 2.3x slower (every large tensor becomes a fresh mmap, page faults).

No-ops off glibc (macOS, musl): those allocators behave differently and need none of this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os

from noksr_ros.process_memory import rss_mb

# mallopt parameters from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 128 << 10
ARENA_MAX = 2


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): byte counts as size_t."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name or 'libc.so.6')
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def tune_allocator() -> bool:
    """
    Fixed 128 KiB mmap threshold and 2 arenas; call early, before worker threads start.

    glibc's own variables win: with MALLOC_MMAP_THRESHOLD_ or MALLOC_ARENA_MAX set in the
    environment that setting is left as glibc read it (for experiments and odd machines).
    """
    libc = _libc()
    if libc is None:
        return False
    ok = True
    if 'MALLOC_MMAP_THRESHOLD_' not in os.environ:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    if 'MALLOC_ARENA_MAX' not in os.environ:
        ok = libc.mallopt(_M_ARENA_MAX, ARENA_MAX) == 1 and ok
    return ok


def release_free_memory() -> bool:
    """Return free heap pages to the system (`malloc_trim(0)`); True when some were released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def process_memory() -> dict[str, float]:
    """
    Resident set size and glibc heap use in MB, for diagnostics.

    `heap_in_use_mb` growing means live allocations grow (a leak or a growing map);
    `heap_free_mb` growing while in-use stays flat means fragmentation; RSS growing with both
    flat means memory outside malloc (mapped files, DDS shared memory, thread stacks).
    Heap figures are absent off glibc or before 2.33.
    """
    out: dict[str, float] = {}
    rss = rss_mb()
    if not math.isnan(rss):  # /proc exists (Linux)
        out['rss_mb'] = round(rss, 1)
    libc = _libc()
    if libc is not None and hasattr(libc, 'mallinfo2'):
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        mb = 1.0 / 2**20
        out.update(heap_in_use_mb=round(info.uordblks * mb, 1),
                   heap_free_mb=round(info.fordblks * mb, 1),
                   heap_mmapped_mb=round(info.hblkhd * mb, 1))
    return out

"""
Resident memory of this process: now and its peak, for benchmarks and diagnostics.

The peak is the kernel's high-water mark of this process image (`VmHWM`), not
`getrusage().ru_maxrss`: Linux carries `ru_maxrss` over from the parent through fork and exec, so
a spawned child (multiprocessing 'spawn', as `noksr evaluate` uses to measure each method alone)
would report at least its parent's size at the moment it was started.
"""

from __future__ import annotations

from pathlib import Path
import resource


def _status_mb(field: str) -> float | None:
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float:
    """Current resident set size (MB); NaN where /proc is not available."""
    value = _status_mb('VmRSS')
    return float('nan') if value is None else value


def peak_rss_mb() -> float:
    """Peak resident set size of this process image (MB); ru_maxrss where /proc is missing."""
    value = _status_mb('VmHWM')
    if value is None:  # not Linux: ru_maxrss is this process's own there (KiB on Linux/BSD)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return value

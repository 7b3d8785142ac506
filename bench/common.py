"""Shared helpers of the benchmarks: timing medians, a table printer, JSON output."""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path
import platform
import statistics
import time

OUT_DIR = Path(__file__).resolve().parents[1] / 'out' / 'bench'


def median_s(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict:
    """Where the numbers were measured."""
    import os

    return {'platform': platform.platform(), 'python': platform.python_version(),
            'cpus': os.cpu_count(), 'processor': platform.processor()}


def report(name: str, rows: list[dict], columns: list[str], extra: dict | None = None) -> Path:
    """Print `rows` as a table and write them to out/bench/<name>.json."""
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print('  '.join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print('  '.join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f'{name}.json'
    path.write_text(json.dumps({'benchmark': name, 'machine': machine(), 'rows': rows,
                                **(extra or {})}, indent=2))
    print(f'wrote {path}')
    return path


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f'{v:.3g}' if abs(v) < 1000 else f'{v:.0f}'
    return '' if v is None else str(v)

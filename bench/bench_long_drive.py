"""
A long drive with eviction (issue 4): memory must stop growing once segments go to disk.

Why: a map kept whole in memory grows with the distance driven. With `mapping.store_dir` set,
segments farther than `mapping.keep_radius_m` from the car are written to the store and dropped,
so after the first few hundred metres the process should hold a roughly constant working set.
Goal: the peak RSS at the end of a >= 2 km drive within 10% of the peak RSS at 500 m.

One held-out town is simulated with `length_m` directly (the town generator builds routes up to
50 km, so no chaining of drives is needed); it is cached under out/bench/drives/ and simulated in
a spawned process, so the simulator's memory never counts. To stay feasible on a few CPU cores
the scan rate is reduced (`--scan-rate-hz`, default 2 Hz at 8 m/s: a scan every 4 m) and the
range capped (`ingest.max_range_m`, default 30 m).

Scans are fed one at a time to the Reconstructor as `noksr reconstruct` does (integrate, then
`update(max_segments=1_000_000)` every `--update-every` scans, offline scheduling: debounce 1 s,
no max_wait), with a temporary segment store and `mapping.keep_radius_m` (default 60 m). Every
`--sample-every-m` metres travelled the process RSS (VmRSS), its peak so far
(VmHWM) and the segments in memory / in the store are recorded; `finish()` ends the drive.

`--allocator default`: glibc malloc as it comes, under which freed network buffers fragment the
heap and RSS creeps up with no leak. `--allocator tuned` applies the live node's remedy
(`noksr_ros.allocator`: fixed 128 KiB mmap threshold, 2 arenas, and `malloc_trim` after every
update), which tells allocator retention apart from a real leak; `--allocator trim` only trims
after every update, as `noksr reconstruct` does.

    python -m bench.bench_long_drive [--length-m 2000] [--seed 1002] [--scan-rate-hz 2]
        [--max-range-m 30] [--keep-radius-m 60] [--update-every 1] [--sample-every-m 100]
        [--stop-after-m 300] [--max-minutes 40] [--allocator default|trim|tuned]
        [--name long_drive]

Prints a table (one row per sample), writes out/bench/<name>.json and out/bench/<name>_rss.png
(default name: long_drive).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from pathlib import Path
import tempfile
import time

import numpy as np

from bench.common import OUT_DIR, report
from noksr_ros.process_memory import peak_rss_mb, rss_mb

CHECK_AT_M = 500.0


def _simulate(seed: int, out: str, length_m: float, scan_rate_hz: float) -> int:
    from noksr_ros.data.drive import simulate_drive

    return simulate_drive(seed, out, length_m=length_m, scan_rate_hz=scan_rate_hz,
                          write_bag=False, overwrite=True, progress=False).num_scans


def cached_drive(seed: int, length_m: float, scan_rate_hz: float) -> Path:
    """The drive's npz folder under out/bench/drives/, simulated in a spawned process once."""
    out = OUT_DIR / 'drives' / f'seed{seed}_{length_m:g}m_{scan_rate_hz:g}hz'
    if not (out / 'npz' / 'drive.json').exists():
        print(f'simulating seed {seed}, {length_m:g} m at {scan_rate_hz:g} Hz -> {out}',
              flush=True)
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context('spawn')
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            n = pool.submit(_simulate, seed, str(out), length_m, scan_rate_hz).result()
        print(f'  {n} scans in {time.perf_counter() - t0:.0f} s', flush=True)
    return out


def _sample(rec, travelled_m: float, t0: float, scans: int) -> dict:
    stats = rec.map.stats()
    return {'distance_m': round(travelled_m, 1), 'when': 'driving', 'scans': scans,
            'elapsed_s': time.perf_counter() - t0, 'rss_mb': rss_mb(),
            'peak_rss_mb': peak_rss_mb(), 'segments_in_memory': stats.segments_in_memory,
            'segments_on_disk_only': stats.segments_evicted,
            'segments_in_store': stats.segments_in_store,
            'segments_total': len(rec.map.keys()), 'points_in_memory': stats.points_in_memory}


def run(drive: Path, overrides: dict, update_every: int, sample_every_m: float,
        stop_after_m: float = np.inf, max_minutes: float = np.inf, allocator: str = 'default'
        ) -> tuple[list[dict], list[tuple[float, float, float]], dict]:
    """
    Feed the drive scan by scan; return samples, (distance, RSS, peak RSS) per scan, totals.

    The drive is cut short (then `finish()`ed as usual) after `stop_after_m` metres or once the
    loop has run `max_minutes`. `allocator`: default, trim or tuned (see the module doc).
    """
    from noksr_ros.allocator import release_free_memory, tune_allocator

    if allocator == 'tuned':
        tune_allocator()
    from noksr_ros.config import NoksrConfig
    from noksr_ros.offline import model_from_config, npz_source
    from noksr_ros.reconstructor import Reconstructor

    with tempfile.TemporaryDirectory(prefix='noksr-bench-long-') as store:
        cfg = NoksrConfig().with_overrides({**overrides, 'mapping.store_dir': store})
        model, device = model_from_config(cfg)
        rec = Reconstructor(cfg, model, device)
        source = npz_source(drive)
        samples, trace = [], []
        travelled, last_xyz, next_sample = 0.0, None, 0.0
        network = meshing = 0.0
        reconstructions = 0
        t0 = time.perf_counter()
        cut = ''
        for i, (stamp, points, pose) in enumerate(source.scans, start=1):
            xyz = np.asarray(pose)[:3, 3]
            step_m = 0.0 if last_xyz is None else float(np.linalg.norm(xyz - last_xyz))
            if travelled + step_m > stop_after_m:
                cut = f'--stop-after-m {stop_after_m:g}'
                break
            if time.perf_counter() - t0 > 60 * max_minutes:
                cut = f'--max-minutes {max_minutes:g}'
                break
            travelled += step_m
            last_xyz = xyz
            rec.integrate(stamp, points, pose)
            if i % update_every == 0:
                step = rec.update(max_segments=1_000_000)
                network, meshing = network + step.network_s, meshing + step.meshing_s
                reconstructions += len(step.reconstructed)
                if allocator in ('tuned', 'trim'):
                    release_free_memory()
            trace.append((travelled, rss_mb(), peak_rss_mb()))
            if travelled >= next_sample:
                samples.append(_sample(rec, travelled, t0, i))
                next_sample += sample_every_m
                s = samples[-1]
                print(f"{s['distance_m']:7.0f} m  {i:5d} scans  {s['elapsed_s']:6.0f} s  "
                      f"RSS {s['rss_mb']:6.0f} MB (peak {s['peak_rss_mb']:6.0f})  segments "
                      f"{s['segments_in_memory']} in memory, {s['segments_on_disk_only']} on "
                      'disk only', flush=True)
        loop_s = time.perf_counter() - t0
        rest = rec.finish()
        network, meshing = network + rest.network_s, meshing + rest.meshing_s
        reconstructions += len(rest.reconstructed)
        end = _sample(rec, travelled, t0, rec.scans)
        end['when'] = 'after finish()'
        samples.append(end)
        trace.append((travelled, end['rss_mb'], end['peak_rss_mb']))
        totals = {'scans': rec.scans, 'loop_s': loop_s, 'wall_s': time.perf_counter() - t0,
                  'network_s': network, 'meshing_s': meshing,
                  'reconstructions': reconstructions, 'length_travelled_m': travelled,
                  'cut_short_by': cut or None,
                  'store_mb': sum(p.stat().st_size for p in Path(store).rglob('*')
                                  if p.is_file()) / 2**20}
    return samples, trace, totals


def plot(trace: list[tuple[float, float, float]], samples: list[dict], title: str,
         name: str = 'long_drive') -> Path:
    """RSS per scan and segments in memory / on disk per sample vs distance."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True,
                                  gridspec_kw={'height_ratios': [3, 2]})
    dist, rss, peak = zip(*trace)
    ax.plot(dist, rss, lw=1.5, label='RSS after each scan')
    ax.plot(dist, peak, lw=1, ls='--', label='peak RSS so far (VmHWM)')
    if dist[-1] >= CHECK_AT_M:
        ax.axvline(CHECK_AT_M, color='grey', lw=0.8, ls=':')
    ax.set_ylabel('process RSS (MB)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right')
    xs = [s['distance_m'] for s in samples]
    ax2.plot(xs, [s['segments_in_memory'] for s in samples], marker='o', label='in memory')
    ax2.plot(xs, [s['segments_on_disk_only'] for s in samples], marker='o',
             label='on disk only (evicted)')
    ax2.set_xlabel('distance travelled (m)')
    ax2.set_ylabel('segments')
    ax2.grid(alpha=0.3)
    ax2.legend(loc='upper left')
    fig.tight_layout()
    path = OUT_DIR / f'{name}_rss.png'
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    """Simulate (or reuse) the long drive, run it with eviction, report and plot."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--length-m', type=float, default=2000.0)
    parser.add_argument('--seed', type=int, default=1002)
    parser.add_argument('--scan-rate-hz', type=float, default=2.0)
    parser.add_argument('--max-range-m', type=float, default=30.0)
    parser.add_argument('--keep-radius-m', type=float, default=60.0)
    parser.add_argument('--segment-size-m', type=float, default=12.8)
    parser.add_argument('--update-every', type=int, default=1, help='update() every N scans')
    parser.add_argument('--sample-every-m', type=float, default=100.0)
    parser.add_argument('--stop-after-m', type=float, default=np.inf,
                        help='drive only this much of the simulated route (a timing trial)')
    parser.add_argument('--max-minutes', type=float, default=np.inf,
                        help='stop driving after this long (then finish() and report)')
    parser.add_argument('--allocator', choices=('default', 'trim', 'tuned'), default='default',
                        help="'trim': malloc_trim after updates (noksr reconstruct); 'tuned': "
                        "the live node's glibc settings and malloc_trim")
    parser.add_argument('--name', default='long_drive',
                        help='out/bench/<name>.json and out/bench/<name>_rss.png')
    args = parser.parse_args()
    drive = cached_drive(args.seed, args.length_m, args.scan_rate_hz)
    overrides = {'ingest.max_range_m': args.max_range_m,
                 'mapping.keep_radius_m': args.keep_radius_m,
                 'mapping.segment_size_m': args.segment_size_m}
    samples, trace, totals = run(drive, overrides, args.update_every, args.sample_every_m,
                                 args.stop_after_m, args.max_minutes,
                                 args.allocator)
    at_check = next((s for s in samples[:-1] if s['distance_m'] >= CHECK_AT_M), None)
    end = samples[-1]
    ratio = end['peak_rss_mb'] / at_check['peak_rss_mb'] if at_check else None
    totals['scans_per_s'] = totals['scans'] / totals['wall_s']
    report(args.name, samples, ['distance_m', 'when', 'scans', 'elapsed_s', 'rss_mb',
                                   'peak_rss_mb', 'segments_in_memory', 'segments_on_disk_only',
                                   'segments_total', 'points_in_memory'],
           extra={'drive': {'seed': args.seed, 'length_m': args.length_m,
                            'scan_rate_hz': args.scan_rate_hz, 'path': str(drive)},
                  'overrides': overrides, 'update_every_scans': args.update_every,
                  'allocator': args.allocator,
                  'peak_rss_at_500m_mb': at_check and at_check['peak_rss_mb'],
                  'peak_rss_end_mb': end['peak_rss_mb'], 'end_over_500m': ratio,
                  'trace_distance_rss_peak': [[round(v, 1) for v in t] for t in trace],
                  **totals})
    path = plot(trace, samples, f'noksr Reconstructor, {totals["length_travelled_m"]:.0f} m '
                f'drive, keep_radius {args.keep_radius_m:g} m, store on disk, '
                f'{args.allocator} allocator', args.name)
    print(f"{totals['scans']} scans in {totals['wall_s']:.0f} s ({totals['scans_per_s']:.2f} "
          f"scans/s; network {totals['network_s']:.0f} s, meshing {totals['meshing_s']:.0f} s); "
          f"store {totals['store_mb']:.0f} MB; plot {path}")
    if totals['cut_short_by']:
        print(f"cut short by {totals['cut_short_by']} after {totals['length_travelled_m']:.0f} m "
              f'of the {args.length_m:g} m route')
    if at_check:
        print(f"peak RSS at {at_check['distance_m']:.0f} m: {at_check['peak_rss_mb']:.0f} MB, at "
              f"the end: {end['peak_rss_mb']:.0f} MB ({100 * (ratio - 1):+.1f}%, goal <= +10%)")
    else:
        print(f'the drive is shorter than {CHECK_AT_M:g} m: no 500 m comparison')


if __name__ == '__main__':
    main()

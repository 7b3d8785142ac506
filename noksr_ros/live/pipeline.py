"""
The live reconstruction loop without ROS: a bounded scan queue in, changed segment meshes out.

Subscription callbacks only `submit()` decoded scans (a full queue drops the new scan, counted).
A worker thread owns the Reconstructor: it integrates each queued scan once its pose is known
(waiting at most `ros.pose_wait_s`), runs `update()` at `ros.update_rate_hz` (forcing every dirty
segment when no scan arrived for `ros.idle_flush_s`), and keeps the newest mesh of every segment
in a cache. The publisher side reads that cache with `take_changes()` / `mesh_snapshot()`, so
nothing that talks to ROS ever waits for the network.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
import threading
import time
import traceback

import numpy as np
import torch

from noksr_ros.allocator import release_free_memory
from noksr_ros.config import NoksrConfig
from noksr_ros.live import drops as reasons
from noksr_ros.live.drops import DropCounter
from noksr_ros.live.mesh_cache import MeshCache, MeshChanges
from noksr_ros.live.pose_buffer import JUMP, OK, UNKNOWN, WAIT, PoseLookup
from noksr_ros.model.noksr import NoksrModel
from noksr_ros.reconstructor import Reconstructor
from noksr_ros.segment_mesher import write_map_mesh

# (stamp ns, frame id of the scan) -> T_map_sensor lookup.
PoseResolver = Callable[[int, str], PoseLookup]
TRIM_PERIOD_S = 5.0  # malloc_trim after an update at most this often (it walks the heap)
OOM_LOG_PERIOD_S = 10.0  # segments that fit nowhere in memory: one log line this often


@dataclass
class LiveScan:
    """One decoded scan: (N,3) float32 points in frame `frame_id` at `stamp_ns`."""

    stamp_ns: int
    points: np.ndarray
    frame_id: str
    received_s: float = 0.0  # set by submit() from the pipeline's clock


class LivePipeline:
    """Queue, worker thread and mesh cache around one Reconstructor; see the module docstring."""

    def __init__(self, config: NoksrConfig, model: NoksrModel, device: torch.device,
                 pose_resolver: PoseResolver, drops: DropCounter | None = None,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.model, self.device = config, model, device
        self.resolve_pose = pose_resolver
        self.drops = drops or DropCounter()
        self._log = log or (lambda message: None)
        self._clock = clock
        self._queue: deque[LiveScan] = deque()
        self._waiting: list[LiveScan] = []
        self._cv = threading.Condition()
        self._stats_lock = threading.Lock()
        self.cache = MeshCache()
        self._clear_requested = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rec = Reconstructor(config, model, device)
        self.scans_integrated = 0
        self.points_integrated = 0
        self.updates = 0
        self.last_update_s = 0.0
        self.last_stamp_ns = -1
        self._last_scan_s = clock()
        self._next_update_s = clock()
        self._next_trim_s = clock()
        self._next_oom_log_s = clock()
        self._next_checkpoint_s = clock() + config.mapping.persist_period_s
        self.checkpoints = self.checkpoint_errors = 0
        self._map_stats: dict[str, int] = {}
        self._resume_meshes()
        self._refresh_map_stats()

    def _resume_meshes(self) -> None:
        """A map resumed from its store publishes and saves its stored meshes from the start."""
        if self.rec.map is None:
            return
        self.cache.apply({m.key: m for m in self.rec.meshes() if len(m.faces)})
        self._log(f'resumed the map in {self.config.mapping.store_dir}: '
                  f'{len(self.rec.map.keys())} segments, {len(self.cache)} with a mesh, '
                  f'{len(self.rec.map.dirty_keys("reconstruct"))} awaiting reconstruction')

    # -- producer side (subscription callbacks) -------------------------------------------------

    def submit(self, scan: LiveScan) -> bool:
        """Enqueue a scan for the worker; a full queue drops it (counted). Never blocks."""
        scan.received_s = self._clock()
        with self._cv:
            if len(self._queue) + len(self._waiting) >= self.config.ros.queue_size:
                full = True
            else:
                full = False
                self._queue.append(scan)
                self._cv.notify()
        if full:
            self.drops.drop(reasons.QUEUE_FULL, f'queue of {self.config.ros.queue_size} scans '
                            'is full: scans arrive faster than they are integrated')
        return not full

    def queue_length(self) -> int:
        """Scans queued or waiting for their pose."""
        with self._cv:
            return len(self._queue) + len(self._waiting)

    def request_clear(self) -> None:
        """Drop the map and everything queued; done by the worker before its next step."""
        with self._cv:
            self._clear_requested = True
            self._cv.notify()

    # -- consumer side (publisher, services) ----------------------------------------------------

    def take_changes(self, snapshot: bool = False) -> MeshChanges:
        """Meshes changed and keys removed since the last call; see `MeshCache.take_changes`."""
        return self.cache.take_changes(self.rec.origin_m, snapshot)

    def mesh_snapshot(self) -> MeshChanges:
        """Every cached segment mesh (for a full re-send or a save); changes are left pending."""
        return self.cache.snapshot(self.rec.origin_m)

    def save_mesh(self, directory: str | Path) -> tuple[Path, int, int]:
        """Weld the cached meshes into one PLY (map frame) named by the time; (path, V, F)."""
        snap = self.mesh_snapshot()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / datetime.now().strftime('noksr_mesh_%Y%m%d_%H%M%S_%f.ply')
        vertices, faces = write_map_mesh(path, snap.meshes.values(), snap.origin_m)
        return path.resolve(), len(vertices), len(faces)

    def set_config(self, config: NoksrConfig) -> None:
        """Swap in a config validated by the caller; the worker reads it at its next use."""
        self.config = self.rec.config = config

    def stats(self) -> dict[str, float | int | str]:
        """Counters for diagnostics; map counts are the worker's snapshot after its last step."""
        meshed = len(self.cache)
        with self._stats_lock:
            map_stats = dict(self._map_stats)
        return {
            'queue_length': self.queue_length(),
            'scans_integrated': self.scans_integrated,
            'points_integrated': self.points_integrated,
            'drops_total': self.drops.total(),
            **map_stats,
            'segments_meshed': meshed,
            'mesh_changes_pending': self.cache.pending(),
            'updates': self.updates,
            'last_update_s': round(self.last_update_s, 4),
            'checkpoints': self.checkpoints,
            'checkpoint_errors': self.checkpoint_errors,
            **self._memory_stats(),
            'device': str(self.device),
        }

    def _memory_stats(self) -> dict[str, int]:
        """Out-of-memory recoveries of the forward pass (see segment_inference)."""
        fallbacks = self.rec.evaluate.fallbacks
        return {'oom_events': fallbacks.out_of_memory,
                'oom_smaller_chunks': fallbacks.smaller_chunks,
                'oom_cpu_fallbacks': fallbacks.cpu_fallbacks,
                'oom_onednn_off': fallbacks.onednn_off,
                'segments_out_of_memory': len(self.rec.failed)}

    def _refresh_map_stats(self) -> None:
        """Snapshot the map counters (worker thread only: the map is not thread-safe)."""
        stats = self.rec.map.stats() if self.rec.map is not None else None
        values = {
            'segments_total': stats.segments_in_memory + stats.segments_evicted if stats else 0,
            'segments_dirty': stats.dirty.get('reconstruct', 0) if stats else 0,
            'segments_in_memory': stats.segments_in_memory if stats else 0,
            'segments_on_disk': stats.segments_in_store if stats else 0,
            'points_in_memory': stats.points_in_memory if stats else 0,
        }
        with self._stats_lock:
            self._map_stats = values

    # -- worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError('the pipeline is already running')
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='noksr-worker', daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the worker to stop after its current step, wait for it, checkpoint the store."""
        self._stop.set()
        with self._cv:
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._log('the worker did not stop in time: the store keeps its last checkpoint')
                return
            self._thread = None
        self._checkpoint()

    def _checkpoint_if_due(self) -> None:
        """Checkpoint when `mapping.persist_period_s` has passed, also between burst scans."""
        if self.config.mapping.persist_period_s > 0 and self._clock() >= self._next_checkpoint_s:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Write the map to its store (if any); a failure is logged and counted, never raised."""
        self._next_checkpoint_s = self._clock() + self.config.mapping.persist_period_s
        try:
            self.rec.checkpoint()
            self.checkpoints += 1
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the live map
            self.checkpoint_errors += 1
            self._log(f'checkpoint of the segment store failed (the map in memory is intact; '
                      f'retried in {self.config.mapping.persist_period_s} s): {_describe(exc)}')

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                self.drops.drop(reasons.RECONSTRUCT_ERROR, _describe(exc))
                busy = False
            if not busy:
                with self._cv:
                    if not self._queue and not self._clear_requested:
                        wait = max(0.0, min(0.05, self._next_update_s - self._clock()))
                        self._cv.wait(wait if self._waiting else max(wait, 0.005))

    def step(self) -> bool:
        """One worker iteration: clear if asked, integrate ready scans, update when due."""
        with self._cv:
            clear, self._clear_requested = self._clear_requested, False
            if clear:
                self._queue.clear()
                self._waiting.clear()
        if clear:
            self._clear()
        busy = self._integrate_ready()
        now = self._clock()
        if now >= self._next_update_s:
            self._next_update_s = now + 1.0 / self.config.ros.update_rate_hz
            idle = now - self._last_scan_s >= self.config.ros.idle_flush_s
            busy |= self._update(force=idle)
        self._checkpoint_if_due()
        if busy or clear:
            self._refresh_map_stats()
        return busy

    def _integrate_ready(self) -> bool:
        """Integrate queued scans whose pose is known, in stamp order; drop the hopeless ones."""
        with self._cv:
            self._waiting.extend(self._queue)
            self._queue.clear()
            self._waiting.sort(key=lambda s: s.stamp_ns)
            candidates = list(self._waiting)
        done = []
        busy = False
        for scan in candidates:
            try:
                lookup = self.resolve_pose(scan.stamp_ns, scan.frame_id)
            except Exception as exc:  # noqa: BLE001 - a broken pose source drops, never kills
                lookup = PoseLookup(UNKNOWN)
                self._log(f'pose lookup failed: {_describe(exc)}')
            if lookup.status == WAIT and self._clock() - scan.received_s < \
                    self.config.ros.pose_wait_s:
                continue
            done.append(scan)
            if lookup.status == JUMP:
                self.drops.drop(reasons.POSE_JUMP, f'the pose jumps around the scan at '
                                f'{scan.stamp_ns} ns (teleport or odometry reset): not smeared '
                                'into the map')
                continue
            if lookup.status != OK:
                why = ('none arrived in time' if lookup.status == WAIT else
                       'outside the pose history')
                self.drops.drop(reasons.NO_POSE, f'no pose for the scan at {scan.stamp_ns} ns '
                                f'in frame {scan.frame_id!r} ({why})')
                continue
            if scan.stamp_ns <= self.last_stamp_ns:
                self.drops.drop(reasons.OUT_OF_ORDER, f'scan at {scan.stamp_ns} ns is not newer '
                                f'than the last integrated one ({self.last_stamp_ns} ns)')
                continue
            self._integrate(scan, lookup.pose)
            busy = True
            self._checkpoint_if_due()
        if busy:  # before the queue shrinks: an empty queue implies current map counters
            self._refresh_map_stats()
        with self._cv:
            ids = {id(s) for s in done}
            self._waiting = [s for s in self._waiting if id(s) not in ids]
        return busy

    def _integrate(self, scan: LiveScan, pose: np.ndarray) -> None:
        try:
            result = self.rec.integrate(scan.stamp_ns * 1e-9, scan.points, pose)
        except ValueError as exc:
            self.drops.drop(reasons.BAD_POSE, _describe(exc))
            return
        except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the map
            self.drops.drop(reasons.INTEGRATE_ERROR, _describe(exc))
            return
        self.scans_integrated += 1
        self.points_integrated += result.points_kept
        self.last_stamp_ns = scan.stamp_ns
        self._last_scan_s = self._clock()

    def _update(self, force: bool) -> bool:
        if self.rec.map is None or not self.rec.pending(force):
            return False
        t0 = time.perf_counter()
        stamp_ns = self.last_stamp_ns
        result = self.rec.update(force=force, stop=self._stop.is_set)
        self.last_update_s = time.perf_counter() - t0
        self.updates += 1
        if result.failed and self._clock() >= self._next_oom_log_s:
            self._next_oom_log_s = self._clock() + OOM_LOG_PERIOD_S
            self._log(f'{len(result.failed)} segment(s) did not fit in memory; they stay dirty '
                      f'and are retried (points kept): {next(iter(result.failed.values()))}')
        self.cache.apply(result.meshes, result.removed, stamp_ns)
        if self._clock() >= self._next_trim_s:  # an update frees many buffers: hand them back
            self._next_trim_s = self._clock() + TRIM_PERIOD_S
            release_free_memory()
        return True

    def _clear(self) -> None:
        """Fresh map; a configured store is moved aside (kept on disk), never deleted."""
        store_dir = self.config.mapping.store_dir
        if store_dir and Path(store_dir).exists():
            aside = Path(f'{store_dir.rstrip("/")}.cleared-{datetime.now():%Y%m%d_%H%M%S_%f}')
            Path(store_dir).rename(aside)
            self._log(f'clear_map: the segment store was moved to {aside}')
        self.rec = Reconstructor(self.config, self.model, self.device)
        self.scans_integrated = self.points_integrated = 0
        self.last_stamp_ns = -1
        self.cache.clear()


def _describe(exc: BaseException) -> str:
    """One line naming the exception and where it came from."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f' at {Path(where.filename).name}:{where.lineno}' if where else ''
    return f'{type(exc).__name__}: {exc}{place}'

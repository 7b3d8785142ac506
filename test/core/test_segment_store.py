"""Segment store: eviction and reload, restart, checksums, crash-safe writes."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import noksr_ros
from noksr_ros.errors import StoreError
from noksr_ros.mapping.keys import (
    key_from_ijk,
)
from noksr_ros.mapping.segment import Segment
from noksr_ros.mapping.segment_map import SegmentMap
from noksr_ros.mapping.store import SegmentStore
from segment_map_helpers import CELL, SIZE, make_map, random_points, up_normals


def assert_same_segment(a: Segment, b: Segment) -> None:
    assert a.key == b.key and a.revision == b.revision and a.dirty == b.dirty
    assert a.last_update_stamp_s == b.last_update_stamp_s
    for name in ('ijk', 'points', 'normals', 'cell_keys', 'cell_counts', 'mesh_vertices',
                 'mesh_faces'):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.grid.keys() == b.grid.keys()
    assert all(np.array_equal(a.grid[k], b.grid[k]) for k in a.grid)


def test_evict_and_reload_round_trip(tmp_path):
    seg_map = make_map(tmp_path, cap=1)
    pts = random_points(4000, seed=11, lo=-12, hi=12)
    seg_map.integrate(pts, up_normals(len(pts)), 5.0)
    key = seg_map.loaded_keys()[0]
    seg = seg_map.get(key)
    seg.grid['sdf'] = np.linspace(-1, 1, 9, dtype=np.float32)
    seg.mesh_vertices = random_points(6, seed=1)
    seg.mesh_faces = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    seg_map.mark_clean(key, 'publish')
    snapshot = {k: Segment.from_arrays({n: a.copy() for n, a in s.to_arrays().items()})
                for k, s in ((k, seg_map.get(k)) for k in seg_map.keys())}
    # Segments still waiting for reconstruction are kept: evicting them would lose the work.
    assert seg_map.evict_far(np.array([100.0, 0.0, 0.0]), keep_radius_m=10.0) == []
    evicted = seg_map.evict_far(np.array([100.0, 0.0, 0.0]), keep_radius_m=10.0, keep_dirty=())
    assert evicted == sorted(snapshot)
    stats = seg_map.stats()
    assert stats.segments_in_memory == 0 and stats.segments_evicted == len(snapshot)
    for k, before in snapshot.items():
        before.dirty['persist'] = False  # saving is what persisting means
        assert_same_segment(seg_map.get(k), before)
    # An evicted segment comes back before new points are capped against it.
    seg_map.evict_far(np.array([100.0, 0.0, 0.0]), keep_radius_m=10.0, keep_dirty=())
    capped = seg_map.stats().points_capped
    assert seg_map.integrate(pts[:100], up_normals(100), 6.0) == set()
    assert seg_map.stats().points_capped == capped + 100


def test_evict_keeps_near_segments_and_needs_a_store(tmp_path):
    pts = np.array([[1.0, 1.0, 1.0], [41.0, 1.0, 1.0]], np.float32)
    no_store = make_map()
    no_store.integrate(pts, up_normals(2), 0.0)
    assert no_store.evict_far(np.zeros(3), 5.0) == []
    with pytest.raises(ValueError, match='store'):
        no_store.flush()
    seg_map = make_map(tmp_path)
    seg_map.integrate(pts, up_normals(2), 0.0)
    for key in seg_map.keys():
        seg_map.mark_clean(key, 'reconstruct')
    evicted = seg_map.evict_far(np.array([2.0, 2.0, 2.0]), 30.0)
    assert evicted == [key_from_ijk(np.array([10, 0, 0]))]
    assert seg_map.loaded_keys() == [key_from_ijk(np.zeros(3, int))]
    assert seg_map.keys() == sorted(evicted + seg_map.loaded_keys())
    assert seg_map.ensure_loaded(evicted) == evicted and len(seg_map.loaded_keys()) == 2
    with pytest.raises(KeyError):
        seg_map.get(12345)


def test_restart_resumes_from_the_store(tmp_path):
    origin = np.array([4.5e6, -3.2e6, 12.0])
    seg_map = make_map(tmp_path, origin_m=origin)
    pts = random_points(2000, seed=4)
    seg_map.integrate(pts, up_normals(len(pts)), 1.0)
    saved = seg_map.flush()
    assert saved == seg_map.keys() and seg_map.dirty_keys('persist') == []
    resumed = make_map(tmp_path)  # origin taken from the store
    assert resumed.origin_m.tolist() == origin.tolist()
    assert resumed.keys() == seg_map.keys() and resumed.loaded_keys() == []
    for key in saved:
        assert_same_segment(resumed.get(key), seg_map.get(key))
    with pytest.raises(StoreError, match='segment_size_m'):
        SegmentMap(2 * SIZE, CELL, 3, store=SegmentStore(tmp_path / 'store'))
    with pytest.raises(StoreError, match='origin_m'):
        make_map(tmp_path, origin_m=np.zeros(3))
    resumed.clear()
    assert resumed.keys() == [] and len(SegmentStore(tmp_path / 'store')) == 0


def saved_segment(store: SegmentStore, key: int = 42, n: int = 500) -> Segment:
    seg = Segment(key=key, ijk=np.array([1, 2, 3]), points=random_points(n, seed=key),
                  normals=up_normals(n), revision=7)
    store.save(seg)
    return seg


def test_store_detects_a_consistent_edit_by_checksum(tmp_path):
    store = SegmentStore(tmp_path)
    seg = saved_segment(store)
    path = store.path_of(seg.key)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays['points'] = arrays['points'] + np.float32(1.0)  # a valid npz with a stale checksum
    np.savez(path, **arrays)
    with pytest.raises(StoreError, match='checksum') as info:
        store.load(seg.key)
    assert path.name in str(info.value)


def test_store_detects_flipped_bytes_and_truncation(tmp_path):
    store = SegmentStore(tmp_path)
    seg = saved_segment(store, key=1)
    path = store.path_of(1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=path.name):
        store.load(1)
    store.save(seg)
    assert_same_segment(store.load(1), seg)
    full = path.read_bytes()
    for size in (len(full) - 10, len(full) // 2, 10, 0):
        path.write_bytes(full[:size])
        with pytest.raises(StoreError, match=path.name):
            store.load(1)
    with pytest.raises(StoreError, match='does not exist'):
        store.load(2)


def test_store_ignores_and_cleans_temp_files(tmp_path):
    store = SegmentStore(tmp_path)
    seg = saved_segment(store, key=5)
    leftover = tmp_path / '.tmp-crashed.part'
    leftover.write_bytes(b'half a segment')
    assert store.keys() == [5]
    reopened = SegmentStore(tmp_path)
    assert not leftover.exists() and reopened.keys() == [5]
    assert_same_segment(reopened.load(5), seg)
    reopened.delete(5)
    assert reopened.keys() == [] and not reopened.path_of(5).exists()


_WRITER = """
import sys
import numpy as np
from noksr_ros.mapping.segment import Segment
from noksr_ros.mapping.store import SegmentStore
store = SegmentStore(sys.argv[1])
rng = np.random.default_rng(0)
points = (rng.integers(0, 1024, (100_000, 3)) / 1024).astype(np.float32)  # exact sums
i = 0
while True:
    seg = Segment(key=i % 6, ijk=np.array([i % 6, 0, 0]), points=points + i,
                  normals=points, revision=i)
    store.save(seg)
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize('delay_s', [0.0, 0.013, 0.031])
def test_killed_writer_leaves_a_loadable_store(tmp_path, delay_s):
    env = dict(os.environ, PYTHONPATH=str(Path(noksr_ros.__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, '-c', _WRITER, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(8):  # let it get well into the loop of saves
            assert proc.stdout.readline() != '', 'the writer died'
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    store = SegmentStore(tmp_path)
    assert store.keys() == list(range(6))
    assert not any(p.name.startswith('.tmp-') for p in tmp_path.iterdir())
    for key in store.keys():
        seg = store.load(key)
        assert seg.revision % 6 == key
        np.testing.assert_array_equal(seg.points - seg.normals,
                                      np.full_like(seg.points, seg.revision))

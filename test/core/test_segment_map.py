"""Segment keys and the segment map: density cap, dirty bits, neighbours, halo."""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

import noksr_ros
from noksr_ros.config import MappingConfig
from noksr_ros.mapping.cells import CellCounts
from noksr_ros.mapping.keys import (
    KEY_BIAS,
    ijk_from_key,
    key_from_ijk,
    neighbour_keys,
    segment_bounds,
    segment_center,
    segment_ijk,
    to_map_frame,
    to_map_local,
)
from noksr_ros.mapping.segment import Segment
from noksr_ros.mapping.segment_map import SegmentMap
from segment_map_helpers import CELL, SIZE, make_map, random_points, reference_cap, up_normals


@pytest.mark.parametrize('curve', ['z', 'hilbert'])
def test_keys_round_trip_with_negative_indices(curve):
    rng = np.random.default_rng(0)
    ijk = rng.integers(-KEY_BIAS, KEY_BIAS, (500, 3))
    ijk[0] = [-KEY_BIAS, -KEY_BIAS, -KEY_BIAS]
    ijk[1] = [KEY_BIAS - 1] * 3
    keys = key_from_ijk(ijk, curve)
    assert keys.dtype == np.int64 and keys.min() >= 0
    assert len(np.unique(keys)) == len(np.unique(ijk, axis=0))
    np.testing.assert_array_equal(ijk_from_key(keys, curve), ijk)
    one = key_from_ijk(np.array([-3, 5, -1]), curve)
    assert isinstance(one, int)
    np.testing.assert_array_equal(ijk_from_key(one, curve), [-3, 5, -1])


def test_key_prefix_is_a_coarser_block_of_segments():
    ijk = np.random.default_rng(1).integers(-20, 20, (300, 3))
    block = (ijk + KEY_BIAS) >> 2
    same_block = (block[:, None, :] == block[None, :, :]).all(axis=-1)
    assert same_block.sum() > len(ijk)  # some pairs share a block
    for curve in ('z', 'hilbert'):
        keys = key_from_ijk(ijk, curve)
        # Same key prefix <=> same 4x4x4 block of segments.
        np.testing.assert_array_equal((keys[:, None] >> 6) == (keys[None, :] >> 6), same_block)


def test_key_out_of_range_raises():
    with pytest.raises(ValueError, match='too far'):
        key_from_ijk(np.array([KEY_BIAS, 0, 0]))
    with pytest.raises(ValueError, match='curve'):
        key_from_ijk(np.array([0, 0, 0]), 'peano')
    with pytest.raises(ValueError, match='integers'):
        key_from_ijk(np.array([0.0, 0.0, 0.0]))


def test_segment_ijk_and_half_open_bounds():
    pts = np.array([[0.0, -0.001, 3.999], [4.0, -4.0, -4.001], [-0.0, 7.9, 8.0]], np.float32)
    ijk = segment_ijk(pts, SIZE)
    assert ijk.tolist() == [[0, -1, 0], [1, -1, -2], [0, 1, 2]]
    for p, idx in zip(pts, ijk, strict=True):
        lo, hi = segment_bounds(key_from_ijk(idx), SIZE)
        assert np.all(p >= lo) and np.all(p < hi)
        np.testing.assert_allclose(segment_center(key_from_ijk(idx), SIZE), (lo + hi) / 2)
    with pytest.raises(ValueError, match='finite'):
        segment_ijk(np.array([[np.nan, 0, 0]]), SIZE)
    with pytest.raises(ValueError, match='segment_size_m'):
        segment_ijk(pts, 0.0)


@pytest.mark.parametrize('curve', ['z', 'hilbert'])
def test_neighbour_keys(curve):
    key = key_from_ijk(np.array([-1, 0, 7]), curve)
    keys = neighbour_keys(key, curve)
    assert len(keys) == 26 == len(set(keys)) and key not in keys and keys == sorted(keys)
    offsets = ijk_from_key(np.array(keys), curve) - np.array([-1, 0, 7])
    assert np.abs(offsets).max() == 1 and np.all(np.abs(offsets).sum(axis=1) > 0)
    assert len(neighbour_keys(key, curve, rings=2)) == 124
    corner = key_from_ijk(np.array([-KEY_BIAS, -KEY_BIAS, -KEY_BIAS]), curve)
    assert len(neighbour_keys(corner, curve)) == 7  # the key space ends there


def test_map_local_frame_keeps_float32_precision():
    origin = np.array([4_500_000.0, -3_200_000.0, 120.0])
    pts_map = origin + np.array([[12.345678, -0.000123, 3.5]])
    local = to_map_local(pts_map, origin)
    assert local.dtype == np.float32
    np.testing.assert_allclose(to_map_frame(local, origin), pts_map, atol=1e-6, rtol=0)


# --- integration and the density cap ------------------------------------------------------------

def test_density_cap_exact_counts_and_first_points_win():
    seg_map = make_map(cap=3)
    cell_a = np.array([0.1, 0.1, 0.1], np.float32)
    cell_b = np.array([1.1, 0.1, 0.1], np.float32)
    scan1 = np.stack([cell_a + 0.01 * i for i in range(5)] + [cell_b])
    assert seg_map.integrate(scan1, up_normals(6), 1.0) == {key_from_ijk(np.zeros(3, int))}
    scan2 = np.stack([cell_a + 0.2, cell_b + 0.01, cell_b + 0.02, cell_b + 0.03, cell_b + 0.04])
    seg_map.integrate(scan2, up_normals(5), 2.0)
    segment = seg_map.get(key_from_ijk(np.zeros(3, int)))
    assert segment.cell_counts.tolist() == [3, 3]
    assert len(segment.cell_keys) == 2 and segment.cell_keys[0] < segment.cell_keys[1]
    expected = np.stack([scan1[0], scan1[1], scan1[2], scan1[5], scan2[1], scan2[2]])
    np.testing.assert_array_equal(segment.points, expected)
    stats = seg_map.stats()
    assert stats.points_integrated == 6 and stats.points_capped == 5


@pytest.mark.parametrize('curve', ['z', 'hilbert'])
def test_density_cap_matches_brute_force(curve):
    seg_map = make_map(cap=2, curve=curve)
    rng = np.random.default_rng(7)
    scans = [np.round(random_points(3000, seed=s), 1) + rng.normal(0, 1e-3, (3000, 3))
             for s in range(3)]
    scans = [s.astype(np.float32) for s in scans]
    for i, scan in enumerate(scans):
        seg_map.integrate(scan, up_normals(len(scan)), float(i))
    expected = reference_cap(scans, cap=2)
    assert len(seg_map.keys()) == len(expected)
    for seg_ijk, rows in expected.items():
        segment = seg_map.get(key_from_ijk(np.array(seg_ijk), curve))
        got = segment.points[np.lexsort(segment.points.T)]
        want = np.array(rows, np.float32)
        np.testing.assert_array_equal(got, want[np.lexsort(want.T)])
        assert segment.cell_counts.sum() == len(rows) and segment.cell_counts.max() <= 2
        assert np.all(np.diff(segment.cell_keys) > 0)
        np.testing.assert_array_equal(segment_ijk(segment.points, SIZE),
                                      np.tile(segment.ijk, (len(rows), 1)))


def test_far_spread_scan_takes_the_slow_path():
    seg_map = make_map(cap=1)
    pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.1, 0.1], [3e6, 0.0, 0.0], [-3e6, 2e6, 1e6]],
                   np.float32)
    touched = seg_map.integrate(pts, up_normals(4), 0.0)
    assert len(touched) == 3 and seg_map.stats().points_capped == 1
    with pytest.raises(ValueError, match='segments of the map origin'):
        seg_map.integrate(np.array([[1e8, 0, 0]], np.float32), up_normals(1), 0.0)


def test_dirty_bits_and_revisions():
    seg_map = make_map(cap=1)
    pts = np.array([[0.1, 0.1, 0.1], [5.0, 0.1, 0.1]], np.float32)
    touched = seg_map.integrate(pts, up_normals(2), 1.0)
    assert len(touched) == 2
    for consumer in ('reconstruct', 'publish', 'persist'):
        assert seg_map.dirty_keys(consumer) == sorted(touched)
    key = min(touched)
    assert seg_map.mark_clean(key, 'reconstruct')
    assert seg_map.dirty_keys('reconstruct') == [max(touched)]
    assert seg_map.dirty_keys('publish') == sorted(touched)
    revision = seg_map.get(key).revision
    assert revision == 1 and seg_map.get(key).last_update_stamp_s == 1.0
    # The same cell again: capped, so nothing changes and nothing becomes dirty.
    assert seg_map.integrate(pts[:1] + 0.01, up_normals(1), 2.0) == set()
    assert seg_map.dirty_keys('reconstruct') == [max(touched)]
    # New points: dirty again; a consumer that worked on the old revision cannot clear it.
    seg_map.integrate(pts[:1] + 1.0, up_normals(1), 3.0)
    assert not seg_map.mark_clean(key, 'reconstruct', revision=revision)
    assert key in seg_map.dirty_keys('reconstruct')
    assert seg_map.mark_clean(key, 'reconstruct', revision=revision + 1)
    with pytest.raises(ValueError, match='consumer'):
        seg_map.dirty_keys('render')


def test_nan_rows_are_dropped_and_counted():
    seg_map = make_map()
    pts = random_points(100, seed=3)
    normals = up_normals(100)
    pts[5, 0] = np.nan
    pts[9, 2] = np.inf
    normals[20, 1] = np.nan
    seg_map.integrate(pts.astype(np.float64), normals, 0.0)
    stats = seg_map.stats()
    assert stats.points_dropped_nonfinite == 3
    assert stats.points_integrated + stats.points_capped == 97
    for key in seg_map.keys():
        segment = seg_map.get(key)
        assert segment.points.dtype == np.float32 and np.isfinite(segment.points).all()
        assert np.isfinite(segment.normals).all()


def test_integrate_validates_inputs():
    seg_map = make_map()
    with pytest.raises(ValueError, match='differ in length'):
        seg_map.integrate(random_points(5, 0), up_normals(4), 0.0)
    with pytest.raises(ValueError, match=r'points_m must have shape \(N, 3\)'):
        seg_map.integrate(np.zeros((5, 2), np.float32), up_normals(5), 0.0)
    with pytest.raises(ValueError, match='normals must be float32'):
        seg_map.integrate(random_points(5, 0), np.zeros((5, 3), np.int32), 0.0)
    with pytest.raises(ValueError, match='stamp_s'):
        seg_map.integrate(random_points(5, 0), up_normals(5), float('nan'))
    assert seg_map.integrate(np.zeros((0, 3), np.float32), up_normals(0), 0.0) == set()
    with pytest.raises(ValueError, match='max_points_per_cell'):
        SegmentMap(SIZE, CELL, 0)
    with pytest.raises(ValueError, match='cell_size_m'):
        SegmentMap(SIZE, -1.0, 3)
    with pytest.raises(ValueError, match='curve'):
        SegmentMap(SIZE, CELL, 3, curve='peano')


def test_neighbours_and_halo():
    seg_map = make_map(cap=100)
    own = np.array([[1.0, 1.0, 1.0], [3.9, 2.0, 2.0]], np.float32)        # segment (0,0,0)
    near = np.array([[4.5, 2.0, 2.0], [-0.5, -0.5, 3.0]], np.float32)     # within 1 m
    far = np.array([[5.5, 2.0, 2.0], [2.0, 2.0, 6.0], [9.0, 9.0, 9.0]], np.float32)
    pts = np.concatenate([own, near, far])
    seg_map.integrate(pts, up_normals(len(pts)), 0.0)
    key = key_from_ijk(np.zeros(3, int))
    assert set(seg_map.neighbours(key)) == {key_from_ijk(np.array(i)) for i in
                                            ([1, 0, 0], [-1, -1, 0], [0, 0, 1])}
    halo, halo_normals = seg_map.gather_halo(key, 1.0)
    got = halo[np.lexsort(halo.T)]
    np.testing.assert_array_equal(got, near[np.lexsort(near.T)])
    assert halo_normals.shape == halo.shape
    assert len(seg_map.gather_halo(key, 0.0)[0]) == 0
    wide, _ = seg_map.gather_halo(key, 5.5)  # reaches (2,2,2): two rings of segments
    assert len(wide) == len(near) + len(far)


def test_from_config_builds_a_map(tmp_path):
    cfg = MappingConfig(store_dir=str(tmp_path / 'cfg_store'))
    seg_map = SegmentMap.from_config(cfg, origin_m=np.array([1.0, 2.0, 3.0]))
    assert seg_map.segment_size_m == cfg.segment_size_m and seg_map.store is not None
    assert seg_map.origin_m.tolist() == [1.0, 2.0, 3.0]


def test_cell_counts_round_trip_and_growth():
    rng = np.random.default_rng(2)
    keys = np.unique(rng.integers(0, 2**24, 5000))
    counts = rng.integers(1, 4, len(keys)).astype(np.int32)
    table = CellCounts.from_cells(keys, counts)
    got_keys, got_counts = table.to_cells()
    np.testing.assert_array_equal(got_keys, keys)
    np.testing.assert_array_equal(got_counts, counts)
    queries = np.unique(np.concatenate([keys[::7], rng.integers(0, 2**24, 500)]))
    found, where = table.lookup(queries)
    in_table = np.isin(queries, keys)
    expected = counts[np.searchsorted(keys, queries[in_table])]
    np.testing.assert_array_equal(found[in_table], expected)
    assert np.all(found[~in_table] == 0)
    table.add(queries, np.full(len(queries), 300), where)  # past 255: the pool widens
    merged = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    for q in queries.tolist():
        merged[q] = merged.get(q, 0) + 300
    got_keys, got_counts = table.to_cells()
    assert got_keys.tolist() == sorted(merged)
    assert got_counts.tolist() == [merged[k] for k in sorted(merged)]
    with pytest.raises(ValueError, match='sorted'):
        CellCounts.from_cells(keys[::-1], counts)
    with pytest.raises(ValueError, match='counts'):
        CellCounts.from_cells(keys, counts * 0)


def test_segment_append_is_amortised_and_never_rewrites_old_views():
    seg = Segment(key=0, ijk=np.zeros(3, np.int64))
    for i in range(50):
        seg.append(np.full((100, 3), i, np.float32), up_normals(100))
    assert seg.num_points == 5000 and seg.points[::100, 0].tolist() == list(range(50))
    assert seg.nbytes() >= 5000 * 24
    held = seg.points
    seg.points, seg.normals = seg.points[:10], seg.normals[:10]  # shortened from outside
    seg.append(np.full((1, 3), -1.0, np.float32), up_normals(1))
    assert seg.num_points == 11 and seg.points[10, 0] == -1.0
    assert held[10, 0] == 0.0 and len(held) == 5000


def test_high_cap_counts_past_255():
    seg_map = make_map(cap=300)
    pts = np.full((400, 3), 0.1, np.float32)
    seg_map.integrate(pts, up_normals(400), 0.0)
    segment = seg_map.get(seg_map.keys()[0])
    assert segment.num_points == 300 and segment.cell_counts.tolist() == [300]


def test_mapping_does_not_import_torch():
    code = ('import sys; import noksr_ros.mapping.segment_map, noksr_ros.mapping.store; '
            'sys.exit(int("torch" in sys.modules))')
    env = dict(os.environ, PYTHONPATH=str(Path(noksr_ros.__file__).resolve().parents[1]))
    assert subprocess.run([sys.executable, '-c', code], env=env).returncode == 0


# --- eviction, the store and restarts -----------------------------------------------------------


def test_halo_segments_match_brute_force_near_and_beyond_the_packed_range():
    """Every segment whose cube grown by the halo holds a point, and no other, at any offset."""
    from noksr_ros.segment_grid import halo_segments

    rng = np.random.default_rng(3)
    size, halo = 12.8, 1.0
    pts = rng.uniform(-40.0, 40.0, (3000, 3))
    for shift_segments in (0, 3_000_000):   # the second is beyond the packed key range
        shifted = pts + shift_segments * size
        found = {tuple(r) for r in halo_segments(shifted, size, halo).tolist()}
        lo = np.floor((shifted - halo) / size).astype(np.int64)
        hi = np.floor((shifted + halo) / size).astype(np.int64)
        truth = set()
        for a, b in zip(lo, hi):
            for i in range(a[0], b[0] + 1):
                for j in range(a[1], b[1] + 1):
                    for k in range(a[2], b[2] + 1):
                        truth.add((i, j, k))
        assert found == truth
        assert len(found) > 100

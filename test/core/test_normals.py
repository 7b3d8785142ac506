"""kNN-PCA normals oriented toward the sensor."""

import numpy as np
import pytest

from noksr_ros.normals import (
    NormalsResult,
    estimate_normals,
    estimate_normals_scan,
    refine_normals,
)


def grid_plane(n_side: int = 40, spacing_m: float = 0.1, z_m: float = 0.0,
               noise_m: float = 0.0, seed: int = 0) -> np.ndarray:
    """(n_side^2, 3) float32 points on the plane z = z_m, centred on the origin in x and y."""
    rng = np.random.default_rng(seed)
    ax = (np.arange(n_side) - n_side / 2) * spacing_m
    x, y = np.meshgrid(ax, ax)
    z = z_m + rng.normal(0.0, noise_m, x.shape) if noise_m else np.full(x.shape, z_m)
    return np.stack([x, y, z], axis=-1).reshape(-1, 3).astype(np.float32)


def fibonacci_sphere(n: int, radius_m: float) -> np.ndarray:
    """(n,3) float32 points spread evenly on a sphere centred on the origin."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azim = np.pi * (1.0 + 5.0 ** 0.5) * i
    dirs = np.stack([np.sin(polar) * np.cos(azim), np.sin(polar) * np.sin(azim),
                     np.cos(polar)], axis=1)
    return (radius_m * dirs).astype(np.float32)


def test_plane_normals_point_up_to_a_sensor_above():
    pts = grid_plane(noise_m=0.002)
    res = estimate_normals(pts, np.array([0.0, 0.0, 10.0]), knn=16)
    assert isinstance(res, NormalsResult)
    assert res.normals.dtype == np.float32 and res.keep.dtype == bool
    assert res.keep.all() and res.normals.shape == pts.shape
    assert np.all(res.normals[:, 2] > 0.99)
    np.testing.assert_allclose(np.linalg.norm(res.normals, axis=1), 1.0, atol=1e-5)


def test_plane_normals_flip_toward_a_sensor_below():
    res = estimate_normals(grid_plane(), np.array([0.3, -0.2, -5.0]), knn=8)
    assert res.keep.all() and np.all(res.normals[:, 2] < -0.999)


def test_sphere_normals_face_the_sensor_at_the_centre():
    pts = fibonacci_sphere(4000, 5.0)
    res = estimate_normals_scan(pts, knn=12)
    assert res.keep.all()
    inward = -pts / np.linalg.norm(pts, axis=1, keepdims=True)
    assert np.min(np.einsum('ij,ij->i', res.normals, inward)) > 0.99


def test_per_point_origins_orient_each_point_by_its_own_sensor():
    pts = grid_plane(20)
    origins = np.zeros((len(pts), 3))
    origins[:, 2] = np.where(np.arange(len(pts)) % 2 == 0, 5.0, -5.0)
    res = estimate_normals(pts, origins, knn=8)
    assert res.keep.all()
    np.testing.assert_allclose(res.normals[:, 2], np.sign(origins[:, 2]), atol=1e-4)


def test_grazing_points_are_dropped_at_the_incidence_limit():
    pts = grid_plane(201, 0.25)  # 50 m square ground
    height_m = 1.8
    res = estimate_normals(pts, np.array([0.0, 0.0, height_m]), knn=9, max_incidence_deg=80.0)
    horizontal = np.linalg.norm(pts[:, :2], axis=1)
    limit = height_m * np.tan(np.deg2rad(80.0))
    clear = np.abs(horizontal - limit) > 0.05  # avoid float ties at the boundary
    np.testing.assert_array_equal(res.keep[clear], horizontal[clear] < limit)
    assert len(res.normals) == res.keep.sum()


def test_nan_rows_are_dropped_and_the_mask_stays_aligned():
    pts = grid_plane(20)
    pts[[3, 50, 77]] = np.nan
    pts[10, 1] = np.inf
    res = estimate_normals(pts, np.array([0.0, 0.0, 3.0]), knn=8)
    assert not res.keep[[3, 10, 50, 77]].any()
    assert res.keep.sum() == len(pts) - 4 == len(res.normals)


def test_empty_and_tiny_inputs_give_empty_results():
    res = estimate_normals(np.zeros((0, 3), np.float32), np.zeros(3))
    assert res.normals.shape == (0, 3) and res.keep.shape == (0,)
    two = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    res = estimate_normals(two, np.array([0.0, 0.0, 1.0]))
    assert res.normals.shape == (0, 3) and not res.keep.any()


def test_collinear_and_coincident_neighbourhoods_are_degenerate():
    line = np.c_[np.linspace(0, 5, 50), np.zeros(50), np.zeros(50)].astype(np.float32)
    assert not estimate_normals(line, np.array([0.0, 0.0, 5.0]), knn=8).keep.any()
    same = np.ones((10, 3), np.float32)
    assert not estimate_normals(same, np.zeros(3), knn=8).keep.any()


def test_a_point_at_the_sensor_origin_is_dropped():
    pts = grid_plane(10)
    origins = pts.astype(np.float64) + [0.0, 0.0, 2.0]
    origins[0] = pts[0]
    res = estimate_normals(pts, origins, knn=8, max_incidence_deg=90.0)
    assert not res.keep[0] and res.keep[1:].all()


def test_neighbour_radius_drops_isolated_points():
    pts = np.concatenate([grid_plane(20), [[50.0, 50.0, 0.0]]]).astype(np.float32)
    origin = np.array([0.0, 0.0, 10.0])
    res = estimate_normals(pts, origin, knn=8, max_neighbor_dist_m=0.5)
    assert not res.keep[-1] and res.keep[:-1].all()
    assert estimate_normals(pts, origin, knn=8).keep[-1]  # no radius: far neighbours count


def test_closed_form_solver_matches_lapack_eigh():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(3000, 3)).astype(np.float32) * np.float32([5.0, 3.0, 0.4])
    origin = np.array([1.0, 2.0, 20.0])
    fast = estimate_normals(pts, origin, knn=16, max_incidence_deg=90.0)
    ref = estimate_normals(pts, origin, knn=16, max_incidence_deg=90.0, solver='eigh')
    both = fast.keep & ref.keep
    assert both.sum() > 0.99 * len(pts)
    fast_n = np.zeros_like(pts)
    ref_n = np.zeros_like(pts)
    fast_n[fast.keep], ref_n[ref.keep] = fast.normals, ref.normals
    np.testing.assert_allclose(fast_n[both], ref_n[both], atol=2e-3)


def test_precision_far_from_the_frame_origin():
    offset = np.array([4000.0, -3000.0, 50.0])
    pts = grid_plane(30, 0.05, noise_m=0.0005).astype(np.float64) + offset
    res = estimate_normals(pts, offset + [0.0, 0.0, 2.0], knn=16)
    assert res.keep.all() and np.all(res.normals[:, 2] > 0.99)


def test_scan_helper_uses_the_sensor_frame_origin():
    pts = grid_plane(20, z_m=-1.5, noise_m=0.001)
    a = estimate_normals_scan(pts, knn=8)
    b = estimate_normals(pts, np.zeros(3), knn=8)
    np.testing.assert_array_equal(a.keep, b.keep)
    np.testing.assert_array_equal(a.normals, b.normals)
    assert np.all(a.normals[:, 2] > 0.99)


@pytest.mark.parametrize('kwargs', [
    {'knn': 2}, {'knn': 8.5}, {'max_incidence_deg': 0.0}, {'max_incidence_deg': 95.0},
    {'max_neighbor_dist_m': -1.0}, {'solver': 'svd'},
])
def test_bad_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        estimate_normals(grid_plane(5), np.zeros(3), **kwargs)


@pytest.mark.parametrize('points, origins', [
    (np.zeros((5, 2)), np.zeros(3)),
    (np.zeros((5, 3)), np.zeros((4, 3))),
    (np.zeros((5, 3)), np.array([0.0, np.nan, 0.0])),
])
def test_bad_shapes_are_rejected(points, origins):
    with pytest.raises(ValueError):
        estimate_normals(points, origins)


def _ring_scan(offset_m: float, rng: np.random.Generator) -> np.ndarray:
    """Sparse ground 'rings': lines 1 m apart along x on the plane z = 0, 0.1 m point spacing."""
    xs = np.arange(0.0, 6.0, 0.1)
    lines = [np.stack([xs, np.full_like(xs, y + offset_m), np.zeros_like(xs)], axis=1)
             for y in np.arange(0.0, 5.0, 1.0)]
    pts = np.concatenate(lines)
    pts[:, 2] += rng.normal(0.0, 0.002, len(pts))
    return pts.astype(np.float32)


def _angle_deg(normals: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.abs(normals @ truth), 0.0, 1.0)))


def test_refined_normals_fix_the_tilt_of_sparse_scan_lines():
    rng = np.random.default_rng(3)
    scans = [_ring_scan(0.2 * i, rng) for i in range(5)]
    per_scan = [estimate_normals(s, np.array([3.0, 2.0, 2.0]), knn=8, max_incidence_deg=90.0)
                for s in scans]
    points = np.concatenate([s[r.keep] for s, r in zip(scans, per_scan)])
    given = np.concatenate([r.normals for r in per_scan])
    up = np.array([0.0, 0.0, 1.0])
    before = _angle_deg(given, up)
    refined = refine_normals(points, given, knn=24)
    after = _angle_deg(refined, up)
    assert np.median(before) > 20.0          # one scan's collinear neighbours: tilted normals
    assert np.median(after) < 3.0 and np.percentile(after, 95) < 10.0
    assert np.all(np.einsum('ij,ij->i', refined, given) >= 0.0)  # each keeps its side
    assert np.allclose(np.linalg.norm(refined, axis=1), 1.0, atol=1e-5)


def test_shared_cell_normals_are_one_pca_per_cell_on_each_points_side():
    rng = np.random.default_rng(5)
    # A gently curved surface (z = 0.05 x^2) sampled densely, normals pointing up or (every
    # third point) down, as two sensors on either side would give.
    xy = rng.uniform(0.0, 4.0, (6000, 2))
    points = np.column_stack([xy, 0.05 * xy[:, 0] ** 2]).astype(np.float32)
    true = np.column_stack([-0.1 * xy[:, 0], np.zeros(len(xy)), np.ones(len(xy))])
    true /= np.linalg.norm(true, axis=1, keepdims=True)
    side = np.where(np.arange(len(xy)) % 3 == 0, -1.0, 1.0)[:, None]
    given = (true * side).astype(np.float32)
    each = refine_normals(points, given, knn=16)
    shared = refine_normals(points, given, knn=16, share_cell_m=0.25)
    assert np.all(np.einsum('ij,ij->i', shared, given) > 0.0)        # own side kept
    cells = np.floor((points - points.min(axis=0)) / 0.25).astype(int)  # cubes from the minimum
    _, cell_of = np.unique(cells, axis=0, return_inverse=True)
    unsigned = shared * side.astype(np.float32)
    for c in range(3):  # every point of a cell carries the same PCA normal
        members = unsigned[cell_of.ravel() == c]
        assert np.allclose(members, members[0], atol=1e-6) and len(members) > 3
    def rowwise_deg(a, b):
        return np.degrees(np.arccos(np.clip(np.einsum('ij,ij->i', a, b), -1.0, 1.0)))
    assert np.percentile(rowwise_deg(each * side, true), 95) < 2.0
    assert np.percentile(rowwise_deg(unsigned, true), 95) < 3.0      # cells 0.25 m, curvature


def test_refine_keeps_the_given_normals_where_it_cannot_do_better():
    rng = np.random.default_rng(4)
    line = np.stack([np.arange(0.0, 3.0, 0.1), np.zeros(30), np.zeros(30)], axis=1)
    given = rng.normal(size=(30, 3)).astype(np.float32)
    given /= np.linalg.norm(given, axis=1, keepdims=True)
    assert np.array_equal(refine_normals(line, given, knn=8), given)   # collinear: degenerate
    assert np.array_equal(refine_normals(line, given, knn=0), given)   # switched off
    assert np.array_equal(refine_normals(line[:2], given[:2], knn=8), given[:2])  # too few
    with pytest.raises(ValueError, match='shape'):
        refine_normals(line, given[:5], knn=8)
    with pytest.raises(ValueError, match='knn'):
        refine_normals(line, given, knn=2)


def test_wanted_points_get_the_normals_they_get_without_the_mask():
    rng = np.random.default_rng(6)
    xy = rng.uniform(0.0, 5.0, (4000, 2))
    points = np.column_stack([xy, 0.1 * np.sin(xy[:, 0])]).astype(np.float32)
    origin = np.array([2.0, 2.0, 3.0])
    full = estimate_normals(points, origin, knn=12)
    wanted = rng.random(len(points)) < 0.4
    part = estimate_normals(points, origin, knn=12, wanted=wanted)
    assert np.array_equal(part.keep, full.keep & wanted)
    assert np.array_equal(part.normals, full.normals[wanted[full.keep]])
    with pytest.raises(ValueError, match='wanted'):
        estimate_normals(points, origin, knn=12, wanted=wanted[:10])

"""The trimming field: distance to the data, pushed out where the data lie off to one side."""

import numpy as np

from noksr_ros.segment_inference import SIDE_NEIGHBOURS, point_distance, trim_distance

VOXEL = 0.1
CAP = 0.801


def grid(xs, ys):
    x, y = np.meshgrid(xs, ys, indexing='ij')
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)


def test_a_gap_between_scan_lines_keeps_its_distance_and_the_surface_past_an_edge_is_cut():
    # a half plane ending at x = 0 (a wall's end, seen from above) ...
    half = grid(np.arange(-3.0, 0.001, 0.05), np.arange(-2.0, 2.001, 0.05))
    # ... and, far from it, two scan lines 0.6 m apart (far ground)
    lines = np.concatenate([grid(np.arange(10.0, 14.0, 0.05), [y]) for y in (-0.3, 0.3)])
    points = np.concatenate([half, lines])
    corners = np.array([[3, 0, 0],      # 0.3 m past the edge: data on one side only
                        [120, 0, 0],    # midway between the scan lines: data on both sides
                        [-10, 0, 0],    # on the data
                        [3, 0, 5]])     # past the edge but far from the surface (|sdf| large)
    sdf = np.array([0.0, 0.0, 0.0, 0.5], np.float32)
    plain = point_distance(points, corners, VOXEL, CAP)
    field = trim_distance(points, corners, VOXEL, CAP, near_m=0.2, trim_m=0.4, side_ratio=0.6,
                          sdf=sdf)
    assert np.allclose(plain[:3], [0.3, 0.3, 0.0], atol=1e-6)
    assert field[0] == np.float32(CAP)  # trimmed: the surface would run past the edge
    assert field[1] == plain[1] and field[2] == plain[2]  # kept: gap filled, data
    assert field[3] == plain[3]  # not near the surface: no vertex depends on it, left alone
    # at or above the plain trim distance, or without sdf, the field is the distance itself
    assert np.array_equal(trim_distance(points, corners, VOXEL, CAP, 0.4, 0.4, 0.6, sdf), plain)
    assert np.array_equal(trim_distance(points, corners, VOXEL, CAP, 0.2, 0.4, 0.6), plain)


def test_the_field_does_not_depend_on_the_order_or_on_points_beyond_the_cap():
    rng = np.random.default_rng(4)
    points = rng.uniform(-2, 2, (5000, 3)) * [1, 1, 0.05]
    corners = rng.integers(-25, 25, (400, 3))
    sdf = rng.uniform(-0.1, 0.1, 400).astype(np.float32)
    far = rng.uniform(20, 30, (3000, 3))  # beyond the cap of every corner
    a = trim_distance(points, corners, VOXEL, CAP, 0.2, 0.4, 0.6, sdf)
    b = trim_distance(np.concatenate([far, points[::-1]]), corners, VOXEL, CAP, 0.2, 0.4, 0.6,
                      sdf)
    assert np.allclose(a, b, atol=1e-6)
    assert np.count_nonzero(a == np.float32(CAP)) > 0


def test_few_points_and_no_points():
    pts = np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]])
    assert SIDE_NEIGHBOURS > len(pts)
    out = trim_distance(pts, np.array([[3, 0, 0]]), VOXEL, CAP, 0.2, 0.4, 0.6,
                        np.zeros(1, np.float32))
    assert out[0] == np.float32(CAP)  # both points on one side
    empty = trim_distance(np.zeros((0, 3)), np.array([[0, 0, 0]]), VOXEL, CAP, 0.2, 0.4, 0.6,
                          np.zeros(1, np.float32))
    assert empty[0] == np.float32(CAP)


def test_the_corners_are_tested_in_chunks_with_the_same_result(monkeypatch):
    import noksr_ros.segment_inference as inference

    rng = np.random.default_rng(5)
    points = grid(np.arange(-3.0, 0.001, 0.05), np.arange(-3.0, 3.001, 0.05))
    corners = np.stack([rng.integers(1, 5, 5000), rng.integers(-30, 30, 5000),
                        np.zeros(5000, np.int64)], axis=1)  # past the edge, many in the band
    sdf = np.zeros(5000, np.float32)
    monkeypatch.setattr(inference, 'SIDE_CHUNK', 100_000)
    whole = trim_distance(points, corners, VOXEL, CAP, 0.2, 0.4, 0.6, sdf)
    monkeypatch.setattr(inference, 'SIDE_CHUNK', 777)
    chunked = trim_distance(points, corners, VOXEL, CAP, 0.2, 0.4, 0.6, sdf)
    assert np.array_equal(whole, chunked)
    assert np.count_nonzero(whole == np.float32(CAP)) > 777  # several chunks had work

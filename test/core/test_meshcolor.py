"""Per-vertex mesh colours and triangle soups (numpy only)."""

import numpy as np
import pytest

from noksr_ros.meshcolor import (
    COLORMAPS,
    apply_colormap,
    face_soup,
    height_colors,
    normal_colors,
    vertex_normals,
)


def grid_mesh(n=4, z=0.0):
    """Flat (n x n)-vertex grid in the plane z, two counter-clockwise triangles per cell."""
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing='xy')
    vertices = np.column_stack([xs.ravel(), ys.ravel(), np.full(n * n, z)])
    faces = []
    for row in range(n - 1):
        for col in range(n - 1):
            v = row * n + col
            faces += [[v, v + 1, v + n + 1], [v, v + n + 1, v + n]]
    return vertices, np.array(faces)


@pytest.mark.parametrize('name', COLORMAPS)
def test_colormaps_cover_unit_range(name):
    rgba = apply_colormap(np.linspace(-1, 2, 301), name, alpha=0.25)
    assert rgba.dtype == np.float32 and rgba.shape == (301, 4)
    assert np.all((rgba >= 0) & (rgba <= 1))
    assert np.all(rgba[:, 3] == 0.25)
    np.testing.assert_array_equal(rgba[0], rgba[100])  # clipped below 0
    np.testing.assert_array_equal(rgba[-1], rgba[200])  # clipped above 1
    assert not np.allclose(rgba[100], rgba[200])


def test_unknown_colormap_names_valid_ones():
    with pytest.raises(ValueError, match='turbo'):
        apply_colormap(np.zeros(3), 'jet')


def test_height_colors_follow_z():
    vertices = np.column_stack([np.zeros(5), np.zeros(5), [0.0, 1.0, 2.0, 3.0, 4.0]])
    rgba = height_colors(vertices)
    expected = apply_colormap(np.array([0, 0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(rgba, expected, atol=1e-6)


def test_height_colors_explicit_range_clips():
    vertices = np.array([[0, 0, -5.0], [0, 0, 0.5], [0, 0, 9.0]])
    rgba = height_colors(vertices, z_min=0.0, z_max=1.0, colormap='viridis')
    np.testing.assert_allclose(rgba, apply_colormap(np.array([0, 0.5, 1.0]), 'viridis'),
                               atol=1e-6)


def test_height_colors_flat_and_nan_are_robust():
    flat = height_colors(np.ones((4, 3)))
    np.testing.assert_allclose(flat, np.repeat(apply_colormap(np.array([0.5])), 4, 0))
    rgba = height_colors(np.array([[0, 0, np.nan], [0, 0, 1.0], [0, 0, 3.0]]))
    np.testing.assert_allclose(rgba[0], [0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(rgba[1:], apply_colormap(np.array([0.0, 1.0])), atol=1e-6)
    all_nan = height_colors(np.full((2, 3), np.nan), z_min=0.0)
    np.testing.assert_allclose(all_nan[:, :3], 0.5)
    same_bounds = height_colors(np.array([[0, 0, 1.0], [0, 0, 2.0]]), z_min=1.0, z_max=1.0)
    np.testing.assert_allclose(same_bounds, np.repeat(apply_colormap(np.array([0.5])), 2, 0))
    assert height_colors(np.zeros((0, 3))).shape == (0, 4)


def test_normal_colors_of_a_floor_are_light_blue():
    vertices, faces = grid_mesh()
    np.testing.assert_allclose(vertex_normals(vertices, faces), np.tile([0, 0, 1.0], (16, 1)))
    rgba = normal_colors(vertices, faces)
    assert rgba.dtype == np.float32 and rgba.shape == (16, 4)
    np.testing.assert_allclose(rgba, np.tile([0.5, 0.5, 1.0, 1.0], (16, 1)))


def test_normal_colors_of_a_wall_and_unused_vertices():
    vertices, faces = grid_mesh(3)
    wall = vertices[:, [2, 0, 1]]  # the grid in the plane x = 0, normal +x
    wall = np.vstack([wall, [[9.0, 9.0, 9.0]]])  # a vertex on no face
    rgba = normal_colors(wall, faces, alpha=0.5)
    np.testing.assert_allclose(rgba[:9], np.tile([1.0, 0.5, 0.5, 0.5], (9, 1)), atol=1e-7)
    np.testing.assert_allclose(rgba[9], [0.5, 0.5, 0.5, 0.5])


def test_vertex_normals_are_unit_on_a_closed_mesh():
    # Octahedron: every vertex normal points away from the centre.
    vertices = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1.0]])
    faces = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                      [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    np.testing.assert_allclose(vertex_normals(vertices, faces), vertices, atol=1e-12)


def test_face_soup_expands_faces_in_order():
    vertices, faces = grid_mesh(3)
    colors = height_colors(vertices + np.arange(9)[:, None])
    points, soup_colors = face_soup(vertices.astype(np.float32), faces, colors)
    assert points.dtype == np.float64 and points.shape == (3 * len(faces), 3)
    assert soup_colors.dtype == np.float32 and soup_colors.shape == (3 * len(faces), 4)
    assert points.flags.c_contiguous and soup_colors.flags.c_contiguous
    for f, face in enumerate(faces):
        for corner in range(3):
            np.testing.assert_array_equal(points[3 * f + corner], vertices[face[corner]])
            np.testing.assert_array_equal(soup_colors[3 * f + corner], colors[face[corner]])
    points_only, none = face_soup(vertices, faces)
    np.testing.assert_array_equal(points_only, points)
    assert none is None


def test_face_soup_of_an_empty_mesh():
    points, colors = face_soup(np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros((0, 4)))
    assert points.shape == (0, 3) and colors.shape == (0, 4)


@pytest.mark.parametrize(('vertices', 'faces', 'colors', 'match'), [
    (np.zeros((3, 2)), np.array([[0, 1, 2]]), None, 'vertices'),
    (np.zeros((3, 3)), np.array([[0, 1, 3]]), None, 'out of range'),
    (np.zeros((3, 3)), np.array([[0, -1, 2]]), None, 'out of range'),
    (np.zeros((3, 3)), np.array([[0.0, 1.0, 2.0]]), None, 'integer'),
    (np.zeros((3, 3)), np.array([0, 1, 2]), None, 'faces'),
    (np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((2, 4)), 'colors'),
])
def test_face_soup_rejects_bad_input(vertices, faces, colors, match):
    with pytest.raises(ValueError, match=match):
        face_soup(vertices, faces, colors)

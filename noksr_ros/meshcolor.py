"""
Per-vertex colours for triangle meshes, and the triangle soup a TRIANGLE_LIST marker needs.

RViz switches lighting off for any coloured marker, so an unshaded mesh of one colour reads as a
flat silhouette. Colouring by height or by normal direction brings the shape back. Everything here
is numpy only (no ROS): meshes are `vertices` (V,3) float and `faces` (F,3) int indices into them,
colours are (V,4) float32 RGBA in [0, 1].
"""

from __future__ import annotations

import numpy as np

# Anchor colours (position in [0, 1], r, g, b) of the colour maps, interpolated linearly. 'turbo'
# is a hand-picked rainbow in the spirit of Google's Turbo: dark blue -> cyan -> green -> yellow ->
# red -> dark red, with no harsh bands. 'viridis' is a perceptually ordered blue -> green -> yellow
# ramp for colour-blind friendly views.
_COLORMAPS: dict[str, np.ndarray] = {
    'turbo': np.array([
        [0.000, 0.19, 0.07, 0.23],
        [0.125, 0.27, 0.42, 0.89],
        [0.250, 0.16, 0.73, 0.93],
        [0.375, 0.16, 0.96, 0.62],
        [0.500, 0.58, 0.99, 0.24],
        [0.625, 0.89, 0.85, 0.22],
        [0.750, 0.99, 0.56, 0.14],
        [0.875, 0.84, 0.24, 0.03],
        [1.000, 0.48, 0.02, 0.01],
    ]),
    'viridis': np.array([
        [0.00, 0.27, 0.00, 0.33],
        [0.25, 0.23, 0.32, 0.55],
        [0.50, 0.13, 0.57, 0.55],
        [0.75, 0.37, 0.79, 0.38],
        [1.00, 0.99, 0.91, 0.14],
    ]),
    'gray': np.array([
        [0.0, 0.15, 0.15, 0.15],
        [1.0, 0.95, 0.95, 0.95],
    ]),
}
COLORMAPS = tuple(_COLORMAPS)
# Colour of vertices whose height is NaN (or when no vertex has a finite height).
_NAN_RGB = (0.5, 0.5, 0.5)


def apply_colormap(values: np.ndarray, name: str = 'turbo', alpha: float = 1.0) -> np.ndarray:
    """
    Map scalars in [0, 1] to RGBA with one of `COLORMAPS`.

    `values` (N,) are clipped to [0, 1]; NaN maps to mid grey. Returns (N,4) float32.
    """
    table = _colormap_table(name)
    t = np.asarray(values, dtype=np.float64).reshape(-1)
    nan = np.isnan(t)
    t = np.clip(np.where(nan, 0.0, t), 0.0, 1.0)
    rgba = np.empty((t.size, 4), dtype=np.float32)
    for channel in range(3):
        rgba[:, channel] = np.interp(t, table[:, 0], table[:, channel + 1])
    rgba[nan, :3] = _NAN_RGB
    rgba[:, 3] = alpha
    return rgba


def height_colors(vertices: np.ndarray, z_min: float | None = None, z_max: float | None = None,
                  colormap: str = 'turbo', alpha: float = 1.0) -> np.ndarray:
    """
    Colour vertices by their z coordinate.

    `vertices` (V,3) in metres. z is mapped linearly from [z_min, z_max] onto the colour map and
    clipped outside; a bound left as None is the smallest (largest) finite z of the vertices. When
    the range is empty (z_min >= z_max, e.g. a flat mesh) every vertex gets the middle colour.
    Vertices with NaN z are grey. Returns (V,4) float32 RGBA in [0, 1].
    """
    z = _check_vertices(vertices)[:, 2].astype(np.float64)
    finite = z[np.isfinite(z)]
    low = float(finite.min()) if z_min is None and finite.size else z_min
    high = float(finite.max()) if z_max is None and finite.size else z_max
    if low is None or high is None or not high > low:
        t = np.where(np.isnan(z), np.nan, 0.5)
    else:
        t = (z - low) / (high - low)
    return apply_colormap(t, colormap, alpha)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """
    Area-weighted unit vertex normals, (V,3) float64.

    Each face adds its (unnormalised) cross product, whose length is twice its area, to its three
    vertices; vertices on no face, or only on degenerate faces, get the zero vector.
    """
    verts = _check_vertices(vertices).astype(np.float64)
    tris = _check_faces(faces, len(verts))
    corners = np.take(verts, tris, axis=0)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    flat_index = tris.reshape(-1)
    sums = np.empty_like(verts)
    for axis in range(3):
        weights = np.repeat(face_normals[:, axis], 3)
        sums[:, axis] = np.bincount(flat_index, weights=weights, minlength=len(verts))
    length = np.linalg.norm(sums, axis=1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        unit = np.where(length > 0, sums / length, 0.0)
    return np.nan_to_num(unit, nan=0.0)


def normal_colors(vertices: np.ndarray, faces: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """
    Colour vertices by their normal direction: RGB = (n + 1) / 2 of the unit vertex normal n.

    So +x is red, +y green, +z (an upward facing floor) light blue (0.5, 0.5, 1.0); vertices
    without a normal are mid grey. Returns (V,4) float32 RGBA in [0, 1].
    """
    normals = vertex_normals(vertices, faces)
    rgba = np.empty((len(normals), 4), dtype=np.float32)
    rgba[:, :3] = 0.5 * (normals + 1.0)
    rgba[:, 3] = alpha
    return rgba


def face_soup(vertices: np.ndarray, faces: np.ndarray,
              colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """
    Expand an indexed mesh into a triangle list: three corners per face, in face order.

    `vertices` (V,3), `faces` (F,3) int, `colors` (V,4) per-vertex RGBA or None. Returns `points`
    (3F,3) float64 C-contiguous (corner i of face f at row 3f+i) and `colors` (3F,4) float32
    C-contiguous, or None when no colours were given: the layout of a TRIANGLE_LIST marker.
    """
    verts = _check_vertices(vertices)
    tris = _check_faces(faces, len(verts)).reshape(-1)
    # np.take of whole rows is several times faster than fancy indexing on (N,k) arrays.
    points = np.take(np.asarray(verts, dtype=np.float64), tris, axis=0)
    if colors is None:
        return points, None
    rgba = np.asarray(colors)
    if rgba.shape != (len(verts), 4):
        raise ValueError(f'colors must be (V,4) = ({len(verts)},4) per-vertex RGBA, '
                         f'got shape {rgba.shape}')
    return points, np.take(np.asarray(rgba, dtype=np.float32), tris, axis=0)


def _colormap_table(name: str) -> np.ndarray:
    try:
        return _COLORMAPS[name]
    except KeyError:
        raise ValueError(f'unknown colormap {name!r}; valid: {", ".join(COLORMAPS)}') from None


def _check_vertices(vertices: np.ndarray) -> np.ndarray:
    verts = np.asarray(vertices)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f'vertices must be (V,3), got shape {verts.shape}')
    return verts


def _check_faces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    tris = np.asarray(faces)
    if tris.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if tris.ndim != 2 or tris.shape[1] != 3 or not np.issubdtype(tris.dtype, np.integer):
        raise ValueError(f'faces must be (F,3) integer indices, got {tris.dtype} {tris.shape}')
    if tris.min() < 0 or tris.max() >= n_vertices:
        raise ValueError(f'faces index vertices out of range [0, {n_vertices}): '
                         f'min {tris.min()}, max {tris.max()}')
    return tris.astype(np.int64, copy=False)

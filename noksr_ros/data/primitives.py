"""
Closed solid primitives for the procedural town, as `manifold3d.Manifold` objects.

Every builder returns a closed, consistently oriented solid, so the town can be assembled with
exact booleans (union, difference) and no face is ever left buried inside another solid.
Coordinates are metres in whatever frame the caller works in (a tile frame or the map frame), z up.
"""

from __future__ import annotations

from collections.abc import Sequence

import manifold3d as m3
import numpy as np

Solid = m3.Manifold


def pose_matrix(x: float, y: float, z: float, yaw_rad: float = 0.0,
                pitch_rad: float = 0.0) -> np.ndarray:
    """
    Rigid transform (4,4) float64 from yaw about z, then pitch about the rotated y, and a shift.

    Pitch follows the right-handed y axis, so a positive pitch tilts the x axis downward.
    """
    cy, sy = np.cos(yaw_rad), np.sin(yaw_rad)
    cp, sp = np.cos(pitch_rad), np.sin(pitch_rad)
    rot_yaw = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    rot_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    pose = np.eye(4)
    pose[:3, :3] = rot_yaw @ rot_pitch
    pose[:3, 3] = (x, y, z)
    return pose


def transformed(solid: Solid, pose: np.ndarray) -> Solid:
    """Return `solid` moved by the rigid or affine transform `pose` (4,4): p' = pose @ p."""
    return solid.transform(np.ascontiguousarray(pose[:3, :4], dtype=np.float64))


def box_bounds(lo: Sequence[float], hi: Sequence[float]) -> Solid:
    """Axis-aligned box between corners `lo` and `hi` (3,) with lo < hi on every axis."""
    lo_arr = np.asarray(lo, dtype=np.float64)
    size = np.asarray(hi, dtype=np.float64) - lo_arr
    if np.any(size <= 0.0):
        raise ValueError(f'box_bounds: hi must exceed lo on every axis, got lo={lo}, hi={hi}')
    return m3.Manifold.cube(tuple(size)).translate(tuple(lo_arr))


def box_at(pose: np.ndarray, lo: Sequence[float], hi: Sequence[float]) -> Solid:
    """Box with corners `lo`, `hi` (3,) given in a local frame that `pose` (4,4) places."""
    return transformed(box_bounds(lo, hi), pose)


def cylinder_z(base_xyz: Sequence[float], radius_m: float, height_m: float,
               segments: int = 8) -> Solid:
    """Vertical cylinder standing on `base_xyz` (3,), axis +z."""
    solid = m3.Manifold.cylinder(height_m, radius_m, radius_m, segments)
    return solid.translate(tuple(float(v) for v in base_xyz))


def cylinder_y_at(pose: np.ndarray, centre_xyz: Sequence[float], radius_m: float,
                  width_m: float, segments: int = 10) -> Solid:
    """Cylinder with its axis along the local y axis (a wheel), centred on local `centre_xyz`."""
    solid = m3.Manifold.cylinder(width_m, radius_m, radius_m, segments, True)
    axis_to_y = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1.0]])
    local = pose_matrix(*centre_xyz) @ axis_to_y
    return transformed(solid, pose @ local)


def ellipsoid(centre_xyz: Sequence[float], radii_xyz: Sequence[float],
              segments: int = 8) -> Solid:
    """Ellipsoid (a scaled geodesic sphere) centred on `centre_xyz` with semi-axes `radii_xyz`."""
    solid = m3.Manifold.sphere(1.0, segments).scale(tuple(float(r) for r in radii_xyz))
    return solid.translate(tuple(float(v) for v in centre_xyz))


def hull(points_xyz: np.ndarray) -> Solid:
    """Convex hull of points (N,3), N >= 4 and not coplanar (roofs, car cabins)."""
    points = np.ascontiguousarray(points_xyz, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 4:
        raise ValueError(f'hull: points must be (N>=4, 3), got shape {points.shape}')
    return m3.Manifold.hull_points(points)


def loft(sections_xyz: np.ndarray) -> Solid:
    """
    Closed solid swept through K planar convex sections (K,P,3), all wound the same way.

    Consecutive sections are joined by quads and the first and last sections are capped with
    fans, so the sections must not cross each other (true for parallel planes and for sections
    about a vertical axis farther than their half-width). The orientation is fixed afterwards.
    """
    sections = np.asarray(sections_xyz, dtype=np.float64)
    if sections.ndim != 3 or sections.shape[0] < 2 or sections.shape[1] < 3:
        raise ValueError(f'loft: sections must be (K>=2, P>=3, 3), got {sections.shape}')
    n_sec, n_pts = sections.shape[:2]
    idx = np.arange(n_sec * n_pts).reshape(n_sec, n_pts)
    here, nxt = idx[:-1], idx[1:]
    here_r, nxt_r = np.roll(here, -1, axis=1), np.roll(nxt, -1, axis=1)
    sides = np.concatenate([np.stack([here, here_r, nxt_r], -1).reshape(-1, 3),
                            np.stack([here, nxt_r, nxt], -1).reshape(-1, 3)])
    fan = np.arange(1, n_pts - 1)
    first = np.stack([np.zeros_like(fan), fan + 1, fan], -1)
    last = np.stack([np.zeros_like(fan), fan, fan + 1], -1) + idx[-1, 0]
    faces = np.concatenate([sides, first, last]).astype(np.uint64)
    verts = sections.reshape(-1, 3)
    if _signed_volume(verts, faces) < 0.0:
        faces = faces[:, ::-1].copy()
    solid = m3.Manifold(m3.Mesh64(np.ascontiguousarray(verts), np.ascontiguousarray(faces)))
    if solid.status() != m3.Error.NoError or solid.is_empty():
        raise ValueError(f'loft: the sections do not form a closed solid ({solid.status()})')
    return solid


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (m^3) of a closed triangle mesh; positive for outward-facing triangles."""
    tri = verts[faces]
    return float(np.einsum('ij,ij->i', tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def union(solids: Sequence[Solid]) -> Solid:
    """Exact boolean union of all `solids`; an empty sequence gives an empty solid."""
    return m3.Manifold.batch_boolean(list(solids), m3.OpType.Add)


def difference(solid: Solid, cutters: Sequence[Solid]) -> Solid:
    """Exact boolean difference `solid` minus every solid of `cutters`."""
    if not cutters:
        return solid
    return m3.Manifold.batch_boolean([solid, *cutters], m3.OpType.Subtract)


def to_arrays(solid: Solid) -> tuple[np.ndarray, np.ndarray]:
    """
    Triangle mesh of the solid's surface: vertices (V,3) float64 and faces (F,3) int32.

    Faces are wound counter-clockwise seen from outside (normals point out of the solid).
    """
    mesh = solid.to_mesh64()
    verts = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3].copy()
    faces = np.asarray(mesh.tri_verts).astype(np.int32)
    return verts, faces

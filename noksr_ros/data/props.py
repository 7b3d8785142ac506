"""
Street furniture as closed solids: lights, signs, bollards, parked cars, trees, walls and fences.

Each builder takes a pose (4,4) of the object's own frame in the caller's frame: origin on the
ground at the object's foot, x forward (along the street for cars, walls and fences; towards the
road for lights and signs), z up. Feet reach `BURY_M` below the ground so every object overlaps the
ground slab instead of touching it.
"""

from __future__ import annotations

import numpy as np

from noksr_ros.data.primitives import (
    Solid,
    box_at,
    cylinder_y_at,
    cylinder_z,
    ellipsoid,
    hull,
    pose_matrix,
    transformed,
)

BURY_M = 0.3
POLE_SEGMENTS = 12


def street_light(pose: np.ndarray, height_m: float = 8.0, arm_m: float = 1.8) -> list[Solid]:
    """Pole of radius 0.1 m with an arm reaching `arm_m` towards +x and a lamp head at its end."""
    pole = _vertical_cylinder(pose, 0.1, height_m)
    arm = box_at(pose, (-0.05, -0.05, height_m - 0.3), (arm_m, 0.05, height_m - 0.18))
    head = box_at(pose, (arm_m - 0.6, -0.2, height_m - 0.45), (arm_m + 0.1, 0.2, height_m - 0.25))
    return [pole, arm, head]


def sign(pose: np.ndarray, rng: np.random.Generator) -> list[Solid]:
    """Thin board (square, round-ish or triangular, 0.6-0.9 m) on a 2.2-2.8 m pole, facing +x."""
    height = float(rng.uniform(2.2, 2.8))
    size = float(rng.uniform(0.6, 0.9))
    pole = _vertical_cylinder(pose, 0.035, height)
    shape = int(rng.integers(3))
    y = size / 2 * np.array([-1.0, 1.0, 1.0, -1.0])
    z = height - 0.1 + size * np.array([-1.0, -1.0, 0.0, 0.0])
    if shape == 1:
        y, z = size / 2 * np.array([-1.0, 1.0, 0.0]), height - 0.1 + size * np.array([0, 0, -0.9])
    elif shape == 2:
        angles = np.linspace(0.0, 2 * np.pi, 9)[:-1]
        y, z = size / 2 * np.cos(angles), height - 0.1 - size / 2 + size / 2 * np.sin(angles)
    board = np.concatenate([np.stack([np.full_like(y, x), y, z], 1) for x in (0.02, 0.05)])
    return [pole, transformed(hull(board), pose)]


def bollard(pose: np.ndarray) -> list[Solid]:
    """Short post of radius 0.1 m and height 0.9 m."""
    return [_vertical_cylinder(pose, 0.1, 0.9)]


def parked_car(pose: np.ndarray, rng: np.random.Generator) -> list[Solid]:
    """Body box, tapered cabin and four wheels of a car 4.0-4.8 m long, nose towards +x."""
    length, width = float(rng.uniform(4.0, 4.8)), float(rng.uniform(1.7, 1.95))
    body_top, cabin_top = float(rng.uniform(0.95, 1.1)), float(rng.uniform(1.4, 1.6))
    half_l, half_w = length / 2, width / 2
    body = box_at(pose, (-half_l, -half_w, 0.3), (half_l, half_w, body_top))
    lower = [(x, y, body_top - 0.05) for x in (-half_l + 0.5, half_l - 1.3)
             for y in (-half_w + 0.05, half_w - 0.05)]
    upper = [(x, y, cabin_top) for x in (-half_l + 0.9, half_l - 1.9)
             for y in (-half_w + 0.2, half_w - 0.2)]
    parts = [body, transformed(hull(np.array(lower + upper)), pose)]
    for x in (-half_l + 0.8, half_l - 0.8):
        for y in (-half_w + 0.12, half_w - 0.12):
            parts.append(cylinder_y_at(pose, (x, y, 0.3), 0.33, 0.22))
    return parts


def tree(pose: np.ndarray, rng: np.random.Generator) -> list[Solid]:
    """Trunk (radius 0.12-0.22 m, 2-3.5 m) under a crown of one to three ellipsoids (1.5-3 m)."""
    trunk_h = float(rng.uniform(2.0, 3.5))
    radius = float(rng.uniform(1.5, 3.0))
    crown_h = radius * float(rng.uniform(0.9, 1.4))
    parts = [_vertical_cylinder(pose, float(rng.uniform(0.12, 0.22)), trunk_h + 0.5)]
    centres = [np.array([0.0, 0.0, trunk_h + crown_h * 0.8])]
    radii = [np.array([radius, radius, crown_h])]
    for _ in range(int(rng.integers(0, 3))):
        angle = float(rng.uniform(0.0, 2 * np.pi))
        offset = radius * 0.6 * np.array([np.cos(angle), np.sin(angle), 0.0])
        centres.append(centres[0] + offset + [0.0, 0.0, crown_h * float(rng.uniform(0.0, 0.5))])
        radii.append(radii[0] * float(rng.uniform(0.5, 0.75)))
    for centre, size in zip(centres, radii):
        parts.append(ellipsoid(pose[:3, :3] @ centre + pose[:3, 3], size, segments=16))
    return parts


def wall(start_xyz: np.ndarray, end_xyz: np.ndarray, height_m: float,
         thickness_m: float = 0.25) -> list[Solid]:
    """Wall from ground point `start_xyz` to `end_xyz` (3,), following the ground's slope."""
    return [_slanted_box(start_xyz, end_xyz, thickness_m / 2, -BURY_M, height_m)]


def fence(start_xyz: np.ndarray, end_xyz: np.ndarray, height_m: float = 1.4) -> list[Solid]:
    """Posts every 2.5 m joined by two rails, from ground point `start_xyz` to `end_xyz` (3,)."""
    start = np.asarray(start_xyz, dtype=np.float64)
    delta = np.asarray(end_xyz, dtype=np.float64) - start
    length = float(np.hypot(delta[0], delta[1]))
    count = max(2, int(np.ceil(length / 2.5)) + 1)
    parts = []
    for frac in np.linspace(0.04 / length, 1.0 - 0.04 / length, count):
        foot = start + frac * delta
        parts.append(box_at(pose_matrix(*foot, float(np.arctan2(delta[1], delta[0]))),
                            (-0.04, -0.04, -BURY_M), (0.04, 0.04, height_m)))
    for z in (0.35 * height_m, 0.85 * height_m):
        parts.append(_slanted_box(start, start + delta, 0.02, z, z + 0.08))
    return parts


def _slanted_box(start_xyz: np.ndarray, end_xyz: np.ndarray, half_width_m: float,
                 z_lo_m: float, z_hi_m: float) -> Solid:
    """Box along a sloping segment with vertical ends, z_lo..z_hi above the segment."""
    start = np.asarray(start_xyz, dtype=np.float64)
    end = np.asarray(end_xyz, dtype=np.float64)
    along = (end - start)[:2]
    side = np.array([-along[1], along[0]]) / np.linalg.norm(along) * half_width_m
    corners = [np.r_[point[:2] + sign * side, point[2] + z]
               for point in (start, end) for sign in (-1.0, 1.0) for z in (z_lo_m, z_hi_m)]
    return hull(np.array(corners))


def _vertical_cylinder(pose: np.ndarray, radius_m: float, height_m: float) -> Solid:
    """Cylinder on the frame's z axis from `BURY_M` below the foot to `height_m` above it."""
    return transformed(cylinder_z((0.0, 0.0, -BURY_M), radius_m, height_m + BURY_M,
                                  POLE_SEGMENTS), pose)

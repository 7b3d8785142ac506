"""
Procedural buildings: blocks with window insets, recessed entrances, balconies, setbacks and roofs.

A building is built in its own frame: origin at the middle of the street facade at ground level,
x along the facade, y into the building (away from the street), z up. The solid reaches `bury_m`
below ground so it stays embedded where the ground slopes. Every part overlaps the parts it touches
by a few centimetres, so the exact union never has to decide between faces that only touch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noksr_ros.data.primitives import (
    Solid,
    box_bounds,
    difference,
    hull,
    pose_matrix,
    transformed,
    union,
)

ROOFS = ('flat', 'gable', 'hip')
OVERLAP_M = 0.05
EAVE_M = 0.3


@dataclass(frozen=True)
class BuildingSpec:
    """Shape of one building (metres); see `draw_building` for the random ranges."""

    width_m: float
    depth_m: float
    floors: int
    floor_height_m: float = 3.0
    roof: str = 'flat'
    roof_pitch: float = 0.5
    window_width_m: float = 1.3
    window_height_m: float = 1.5
    window_spacing_m: float = 3.0
    inset_depth_m: float = 0.2
    setback_m: float = 0.0
    entrance: bool = True
    balcony_floors: tuple[int, ...] = ()
    bury_m: float = 1.0

    @property
    def height_m(self) -> float:
        """Eave height above ground."""
        return self.floors * self.floor_height_m


def draw_building(rng: np.random.Generator, width_m: float, depth_m: float,
                  bury_m: float = 1.0) -> BuildingSpec:
    """Random building style for a plot of `width_m` x `depth_m`."""
    floors = int(rng.integers(1, 8))
    roof = str(rng.choice(ROOFS, p=[0.5, 0.3, 0.2])) if floors <= 4 else 'flat'
    setback = float(rng.uniform(1.5, 3.0)) if floors >= 4 and rng.random() < 0.4 else 0.0
    balconies = tuple(int(f) for f in range(1, floors) if rng.random() < 0.3)
    return BuildingSpec(
        width_m=width_m, depth_m=depth_m, floors=floors,
        floor_height_m=float(rng.uniform(2.8, 3.4)), roof=roof,
        roof_pitch=float(rng.uniform(0.35, 0.8)),
        window_width_m=float(rng.uniform(0.9, 1.6)),
        window_height_m=float(rng.uniform(1.2, 1.7)),
        window_spacing_m=float(rng.uniform(2.4, 3.6)),
        inset_depth_m=float(rng.uniform(0.12, 0.3)), setback_m=setback,
        entrance=bool(rng.random() < 0.6), balcony_floors=balconies, bury_m=bury_m)


def building_solid(spec: BuildingSpec) -> Solid:
    """Closed solid of the building in its own frame (facade on y = 0, facing -y)."""
    half_w, floor_h = spec.width_m / 2, spec.floor_height_m
    low_floors = spec.floors - 1 if spec.setback_m > 0.0 else spec.floors
    body = [box_bounds((-half_w, 0.0, -spec.bury_m), (half_w, spec.depth_m, low_floors * floor_h))]
    if low_floors < spec.floors:
        body.append(box_bounds((-half_w, spec.setback_m, low_floors * floor_h - OVERLAP_M),
                               (half_w, spec.depth_m, spec.height_m)))
    faces = [(pose_matrix(0.0, 0.0, 0.0), spec.width_m, range(low_floors), spec.entrance),
             (pose_matrix(0.0, spec.setback_m, 0.0), spec.width_m,
              range(low_floors, spec.floors), False),
             (pose_matrix(-half_w, spec.depth_m / 2, 0.0, -np.pi / 2), spec.depth_m,
              range(1, low_floors), False),
             (pose_matrix(half_w, spec.depth_m / 2, 0.0, np.pi / 2), spec.depth_m,
              range(1, low_floors), False)]
    cutters, sills = [], []
    for pose, length, floors, entrance in faces:
        face_cutters, face_sills = _facade(spec, length, floors, entrance)
        cutters += [transformed(part, pose) for part in face_cutters]
        sills += [transformed(part, pose) for part in face_sills]
    if spec.entrance and spec.width_m >= 5.0:
        cutters.append(box_bounds((-1.1, -OVERLAP_M, 0.15), (1.1, 1.2, 2.6)))
    extras = _roof(spec) + sills + [part for floor in spec.balcony_floors if floor < low_floors
                                    for part in _balcony(spec, floor)]
    return union([difference(union(body), cutters), *extras])


def _column_centres(spec: BuildingSpec, length_m: float) -> np.ndarray:
    """Positions of window columns along a facade, evenly spaced with a margin at both ends."""
    count = int((length_m - 1.6) // spec.window_spacing_m)
    if count < 1:
        return np.zeros(0)
    return (np.arange(count) - (count - 1) / 2) * spec.window_spacing_m


def _facade(spec: BuildingSpec, length_m: float, floors: range,
            entrance: bool) -> tuple[list[Solid], list[Solid]]:
    """
    Window inset cutters and sills of one facade, in the facade's frame.

    The facade frame has x along the wall (centred), the wall's outside towards -y and z up. The
    ground floor gets tall shop windows, skipping the middle if there is an entrance.
    """
    cutters, sills = [], []
    half = spec.window_width_m / 2
    for floor in floors:
        base = floor * spec.floor_height_m
        sill = base + (0.5 if floor == 0 else 0.9)
        top = min(sill + spec.window_height_m * (1.4 if floor == 0 else 1.0),
                  base + spec.floor_height_m - 0.3)
        for x in _column_centres(spec, length_m):
            if floor == 0 and entrance and abs(x) < 1.1 + half + 0.3:
                continue
            cutters.append(box_bounds((x - half, -OVERLAP_M, sill),
                                      (x + half, spec.inset_depth_m, top)))
            sills.append(box_bounds((x - half - 0.06, -0.12, sill - 0.1),
                                    (x + half + 0.06, OVERLAP_M, sill - 0.02)))
    return cutters, sills


def _balcony(spec: BuildingSpec, floor: int) -> list[Solid]:
    """Slab and railing boxes of balconies in front of the middle window columns of `floor`."""
    columns = _column_centres(spec, spec.width_m)
    if columns.size == 0:
        return []
    z = floor * spec.floor_height_m
    parts = []
    for x in columns[len(columns) // 3: max(len(columns) // 3 + 1, 2 * len(columns) // 3)]:
        lo_x, hi_x = x - 1.1, x + 1.1
        parts.append(box_bounds((lo_x, -1.2, z - 0.05), (hi_x, OVERLAP_M, z + 0.12)))
        parts.append(box_bounds((lo_x, -1.2, z), (hi_x, -1.12, z + 1.05)))
        parts.append(box_bounds((lo_x, -1.2, z), (lo_x + 0.06, OVERLAP_M, z + 1.05)))
        parts.append(box_bounds((hi_x - 0.06, -1.2, z), (hi_x, OVERLAP_M, z + 1.05)))
    return parts


def _roof(spec: BuildingSpec) -> list[Solid]:
    """Parapet for a flat roof, or a gable or hip roof with eaves, sitting on the top floor."""
    half_w, depth, top = spec.width_m / 2, spec.depth_m, spec.height_m
    front = spec.setback_m if spec.setback_m > 0.0 else 0.0
    if spec.roof == 'flat':
        rim = 0.25
        lo, hi = top - OVERLAP_M, top + 0.9
        return [box_bounds((-half_w, front, lo), (half_w, front + rim, hi)),
                box_bounds((-half_w, depth - rim, lo), (half_w, depth, hi)),
                box_bounds((-half_w, front, lo), (-half_w + rim, depth, hi)),
                box_bounds((half_w - rim, front, lo), (half_w, depth, hi))]
    y_lo, y_hi, x_lo, x_hi = front - EAVE_M, depth + EAVE_M, -half_w - EAVE_M, half_w + EAVE_M
    ridge_z = top + spec.roof_pitch * (y_hi - y_lo) / 2
    ridge_y = (y_lo + y_hi) / 2
    ridge_x = half_w + EAVE_M
    if spec.roof == 'hip':
        ridge_x = max(0.5, ridge_x - (y_hi - y_lo) / 2)
    base = top - OVERLAP_M
    points = np.array([[x_lo, y_lo, base], [x_hi, y_lo, base], [x_hi, y_hi, base],
                       [x_lo, y_hi, base], [-ridge_x, ridge_y, ridge_z],
                       [ridge_x, ridge_y, ridge_z]])
    return [hull(points)]

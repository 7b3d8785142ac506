"""
Buildings and furniture of a crossing tile: a building on each corner, lights and a stop sign.

The crossing frame has the square x = 0..2W, y = -W..W (W the street half-width), the route
entering at x = 0 along +x. Solids are returned in that frame.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from noksr_ros.data import props
from noksr_ros.data.buildings import building_solid, draw_building
from noksr_ros.data.primitives import Solid, pose_matrix, transformed
from noksr_ros.data.tiles import StreetProfile, Tile


def furnish_crossing(tile: Tile, profile: StreetProfile,
                     rng: np.random.Generator) -> tuple[list[Solid], Counter]:
    """Corner buildings, walls across missing arms, corner lights and a stop sign."""
    solids: list[Solid] = []
    counts: Counter = Counter()
    for far in (False, True):
        for side in (1.0, -1.0):
            if _corner_building(profile, rng, far, side, solids):
                counts['buildings'] += 1
    _walls_across_missing_arms(tile, profile, rng, solids, counts)
    _corner_furniture(profile, rng, solids, counts)
    return solids, counts


def _corner_building(profile: StreetProfile, rng: np.random.Generator, far: bool, side: float,
                     solids: list[Solid]) -> bool:
    """Building on one corner plot, its facade facing the street the route came in on."""
    half, walk = profile.half_width_m, profile.walk_outer_m
    side_gap, setback = float(rng.uniform(0.5, 2.5)), float(rng.uniform(0.5, 2.5))
    x_lo, x_hi = (half + walk + side_gap, 2 * half - 0.5) if far else (0.5, half - walk - side_gap)
    if x_hi - x_lo < 8.0:
        return False
    width = float(rng.uniform(8.0, min(22.0, x_hi - x_lo)))
    centre_x = x_lo + width / 2 if far else x_hi - width / 2
    face_y = side * (walk + setback)
    depth = min(float(rng.uniform(8.0, 14.0)), half - abs(face_y) - 0.5)
    if depth < 5.0:
        return False
    pose = pose_matrix(centre_x, face_y, profile.curb_height_m, 0.0 if side > 0 else np.pi)
    solids.append(transformed(building_solid(draw_building(rng, width, depth)), pose))
    return True


def _walls_across_missing_arms(tile: Tile, profile: StreetProfile, rng: np.random.Generator,
                               solids: list[Solid], counts: Counter) -> None:
    """Close the gap where a T crossing has no arm with a wall behind the sidewalk."""
    half, walk, curb = profile.half_width_m, profile.walk_outer_m, profile.curb_height_m
    line = walk + 0.5
    ends = {'left': ((half - walk, line), (half + walk, line)),
            'straight': ((half + line, -walk), (half + line, walk)),
            'right': ((half - walk, -line), (half + walk, -line))}
    for arm, (start, end) in ends.items():
        if arm in tile.arms:
            continue
        solids.extend(props.wall(np.r_[start, curb], np.r_[end, curb],
                                 float(rng.uniform(1.2, 2.5))))
        counts['walls'] += 1


def _corner_furniture(profile: StreetProfile, rng: np.random.Generator, solids: list[Solid],
                      counts: Counter) -> None:
    """Street lights on two opposite corners and a stop sign facing the incoming car."""
    half, road, curb = profile.half_width_m, profile.road_half_width_m, profile.curb_height_m
    inset = road + 0.5
    for x, y in ((half - inset, inset), (half + inset, -inset)):
        yaw = float(np.arctan2(-y, half - x))
        solids.extend(props.street_light(pose_matrix(x, y, curb, yaw),
                                         float(rng.uniform(7.0, 9.0))))
        counts['street_lights'] += 1
    sign_pose = pose_matrix(half - road - 0.8, -road - 0.5, curb, np.pi)
    solids.extend(props.sign(sign_pose, rng))
    counts['signs'] += 1

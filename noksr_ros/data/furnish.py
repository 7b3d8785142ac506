"""
Buildings and street furniture along the straight and curved tiles of a procedural town.

Everything is placed in station coordinates of the tile (`u` along the centreline, `v` to its left)
and returned as solids in the tile frame. A building is kept only if its footprint lies inside the
tile's own ground, so furniture of neighbouring tiles never collides.
"""

from __future__ import annotations

from collections import Counter

import manifold3d as m3
import numpy as np

from noksr_ros.data import props
from noksr_ros.data.buildings import building_solid, draw_building
from noksr_ros.data.primitives import Solid, pose_matrix, transformed
from noksr_ros.data.tiles import (
    StreetProfile,
    Tile,
    footprint_local,
    road_grade,
    road_height,
    station_xy,
)

SIDES = (1.0, -1.0)


def furnish_street(tile: Tile, profile: StreetProfile,
                   rng: np.random.Generator) -> tuple[list[Solid], Counter]:
    """Buildings, gap walls, sidewalk furniture and parked cars of a straight or curve tile."""
    region = m3.CrossSection([np.ascontiguousarray(p) for p in footprint_local(tile, profile)])
    solids: list[Solid] = []
    counts: Counter = Counter()
    for side in SIDES:
        _building_row(tile, profile, rng, side, region, solids, counts)
        _sidewalk_furniture(tile, profile, rng, side, solids, counts)
        _parked_cars(tile, profile, rng, side, solids, counts)
    return solids, counts


def ground_pose(tile: Tile, profile: StreetProfile, u: float, v: float, yaw_offset: float = 0.0,
                on_walk: bool = True, pitch: float = 0.0) -> np.ndarray:
    """Tile-frame pose (4,4) on the ground at station (u, v), yawed from the street direction."""
    x, y, yaw = station_xy(tile, u, v)
    z = float(road_height(tile, u)) + (profile.curb_height_m if on_walk else 0.0)
    return pose_matrix(float(x), float(y), z, float(yaw) + yaw_offset, pitch)


def _arc_scale(tile: Tile, v: float) -> float:
    """Metres of path at lateral offset `v` per metre of centreline station."""
    if tile.kind != 'curve':
        return 1.0
    return (tile.radius_m - np.sign(tile.turn_rad) * v) / tile.radius_m


def _building_row(tile: Tile, profile: StreetProfile, rng: np.random.Generator, side: float,
                  region: m3.CrossSection, solids: list[Solid], counts: Counter) -> None:
    """Buildings along one side, set back from the sidewalk, walls, fences or trees between."""
    u = float(rng.uniform(0.5, 6.0))
    while True:
        width, setback = float(rng.uniform(8.0, 22.0)), float(rng.uniform(0.3, 3.0))
        v_face = side * (profile.walk_outer_m + setback)
        v_face += side * _inner_bulge(tile, side, v_face, width)
        scale = _arc_scale(tile, v_face)
        span = width / scale
        if u + span > tile.length_m - 0.5:
            return
        depth = min(float(rng.uniform(8.0, 14.0)), profile.half_width_m - abs(v_face) - 0.5)
        centre = u + span / 2
        pose = ground_pose(tile, profile, centre, v_face, 0.0 if side > 0 else np.pi)
        if depth > 5.0 and _inside(region, pose, width, depth):
            heights = road_height(tile, np.linspace(u, u + span, 5))
            bury = 1.0 + float(road_height(tile, centre) - heights.min())
            spec = draw_building(rng, width, depth, bury_m=bury)
            solids.append(transformed(building_solid(spec), pose))
            counts['buildings'] += 1
        gap = float(rng.uniform(0.0, 9.0))
        if gap > 2.5:
            _gap_filler(tile, profile, rng, side, u + span, u + span + gap / scale, solids, counts)
        u += span + gap / scale


def _inner_bulge(tile: Tile, side: float, v_face: float, width: float) -> float:
    """How far a straight facade's ends reach towards the street on the inside of a curve."""
    if tile.kind != 'curve' or side != np.sign(tile.turn_rad):
        return 0.0
    rho = tile.radius_m - abs(v_face)
    return float(np.hypot(rho, width / 2) - rho)


def _inside(region: m3.CrossSection, pose: np.ndarray, width: float, depth: float) -> bool:
    """True if the footprint (facade centred at the pose, `depth` deep along y) is in `region`."""
    corners = np.array([[-width / 2, 0.0], [width / 2, 0.0], [width / 2, depth],
                        [-width / 2, depth]])
    rect = corners @ pose[:2, :2].T + pose[:2, 3]
    edge_a, edge_b = rect[1] - rect[0], rect[2] - rect[1]
    if edge_a[0] * edge_b[1] - edge_a[1] * edge_b[0] < 0.0:
        rect = rect[::-1]
    return (m3.CrossSection([np.ascontiguousarray(rect)]) - region).area() < 1e-6


def _gap_filler(tile: Tile, profile: StreetProfile, rng: np.random.Generator, side: float,
                u_start: float, u_end: float, solids: list[Solid], counts: Counter) -> None:
    """A wall, a fence or a tree in the gap between two buildings, or nothing."""
    pick = rng.random()
    v = side * (profile.walk_outer_m + 0.5)
    ends = [ground_pose(tile, profile, u, v)[:3, 3] for u in (u_start + 0.3, u_end - 0.3)]
    if pick < 0.3:
        solids.extend(props.wall(ends[0], ends[1], float(rng.uniform(1.0, 2.5))))
        counts['walls'] += 1
    elif pick < 0.55:
        solids.extend(props.fence(ends[0], ends[1], float(rng.uniform(1.0, 1.8))))
        counts['fences'] += 1
    elif pick < 0.8:
        u = (u_start + u_end) / 2
        pose = ground_pose(tile, profile, u, side * (profile.walk_outer_m + 3.0))
        solids.extend(props.tree(pose, rng))
        counts['trees'] += 1


def _sidewalk_furniture(tile: Tile, profile: StreetProfile, rng: np.random.Generator,
                        side: float, solids: list[Solid], counts: Counter) -> None:
    """Street lights, trees, signs and bollards at irregular slots along the sidewalk."""
    road = profile.road_half_width_m
    scale = _arc_scale(tile, side * road)
    u = float(rng.uniform(2.0, 8.0))
    while u < tile.length_m - 2.0:
        pick = rng.random()
        if pick < 0.3:
            pose = ground_pose(tile, profile, u, side * (road + 0.5), -side * np.pi / 2)
            solids.extend(props.street_light(pose, float(rng.uniform(6.5, 9.0))))
            counts['street_lights'] += 1
        elif pick < 0.65:
            solids.extend(props.tree(ground_pose(tile, profile, u, side * (road + 1.5)), rng))
            counts['trees'] += 1
        elif pick < 0.75:
            pose = ground_pose(tile, profile, u, side * (road + 0.4), 0.0 if side > 0 else np.pi)
            solids.extend(props.sign(pose, rng))
            counts['signs'] += 1
        elif pick < 0.8:
            solids.extend(props.bollard(ground_pose(tile, profile, u, side * (road + 0.3))))
            counts['bollards'] += 1
        u += float(rng.uniform(7.0, 15.0)) / scale


def _parked_cars(tile: Tile, profile: StreetProfile, rng: np.random.Generator, side: float,
                 solids: list[Solid], counts: Counter) -> None:
    """Runs of cars in the parking strip, parked in the direction of traffic on their side."""
    v = side * (profile.road_half_width_m - 1.25)
    scale = _arc_scale(tile, v)
    u = float(rng.uniform(4.0, 15.0))
    while u < tile.length_m - 6.0:
        if rng.random() < 0.45:
            heading = 1.0 if side < 0 else -1.0
            pitch = -float(np.arctan(heading * road_grade(tile, u)))
            pose = ground_pose(tile, profile, u, v, 0.0 if side < 0 else np.pi, False, pitch)
            solids.extend(props.parked_car(pose, rng))
            counts['parked_cars'] += 1
        u += float(rng.uniform(5.5, 9.0)) / scale

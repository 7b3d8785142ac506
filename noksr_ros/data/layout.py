"""
Street layout of a procedural town: a chain of tiles that never overlap, and the route through it.

Tiles are drawn one after another from a seeded generator. The first tile is a flat straight the
car starts on; the next three are a climbing straight, a curve and a crossing in random order, so
every town of a few hundred metres has all of them; later tiles are random. A tile whose ground
would overlap ground already laid is redrawn; the heading is kept within +-90 degrees of the start
so the street keeps moving away from where it began.
"""

from __future__ import annotations

from collections.abc import Callable

import manifold3d as m3
import numpy as np

from noksr_ros.data.tiles import (
    ARMS,
    StreetProfile,
    Tile,
    exit_pose_local,
    footprint_local,
    lane_path_local,
)

MAX_DRAWS = 40
OVERLAP_MARGIN_M = 0.5


def plan_tiles(rng: np.random.Generator, route_length_m: float,
               profile: StreetProfile) -> list[Tile]:
    """Chain tiles until the right-lane route through them is at least `route_length_m` long."""
    pose = np.eye(4)
    tiles: list[Tile] = []
    laid = m3.CrossSection()
    opening = [_draw_sloped, _draw_curve, _draw_crossing]
    rng.shuffle(opening)
    drawers: list[Callable] = [_draw_flat_start, *opening]
    length = 0.0
    while length < route_length_m:
        draw = drawers[len(tiles)] if len(tiles) < len(drawers) else _draw_any
        tile = _place(rng, draw, pose, laid, profile)
        tiles.append(tile)
        laid = laid + _footprint_map(tile, profile)
        pose = tile.pose @ exit_pose_local(tile, profile)
        length += _polyline_length(lane_path_local(tile, profile))
    return tiles


def route_through(tiles: list[Tile], profile: StreetProfile, step_m: float = 1.0) -> np.ndarray:
    """Right-lane route (M,3) float64 in the map frame through all tiles, on the road surface."""
    pieces = []
    for index, tile in enumerate(tiles):
        path = lane_path_local(tile, profile, step_m)
        path_map = path @ tile.pose[:3, :3].T + tile.pose[:3, 3]
        pieces.append(path_map if index == 0 else path_map[1:])
    return np.concatenate(pieces)


def trim_polyline(points: np.ndarray, start_m: float, length_m: float) -> np.ndarray:
    """Part (K,D) of a polyline (M,D) from arc length `start_m` to `start_m + length_m`."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    end_m = start_m + length_m
    if end_m > arc[-1] + 1e-9:
        raise ValueError(f'trim_polyline: polyline is {arc[-1]:.1f} m, {end_m:.1f} m requested')
    keep = (arc > start_m) & (arc < end_m)
    stations = np.concatenate([[start_m], arc[keep], [end_m]])
    return np.stack([np.interp(stations, arc, points[:, k]) for k in range(points.shape[1])], 1)


def _place(rng: np.random.Generator, draw: Callable, pose: np.ndarray,
           laid: m3.CrossSection, profile: StreetProfile) -> Tile:
    """Draw tiles at `pose` until one fits beside the ground laid so far."""
    heading = float(np.arctan2(pose[1, 0], pose[0, 0]))
    for attempt in range(MAX_DRAWS):
        tile = (draw if attempt < MAX_DRAWS // 2 else _draw_any)(rng, pose, heading)
        if tile is not None and _fits(tile, laid, profile):
            return tile
    tile = Tile('straight', pose, length_m=20.0)
    if not _fits(tile, laid, profile):
        raise RuntimeError('plan_tiles: no tile fits; the layout boxed itself in')
    return tile


def _fits(tile: Tile, laid: m3.CrossSection, profile: StreetProfile) -> bool:
    """True if the tile's ground, shrunk by a margin, stays clear of ground already laid."""
    heading = np.arctan2(tile.pose[1, 0], tile.pose[0, 0])
    exit_pose = tile.pose @ exit_pose_local(tile, profile)
    exit_heading = np.arctan2(exit_pose[1, 0], exit_pose[0, 0])
    if max(abs(heading), abs(exit_heading)) > np.pi / 2 + 1e-6:
        return False
    shrunk = _footprint_map(tile, profile).offset(-OVERLAP_MARGIN_M, m3.JoinType.Miter)
    return (shrunk ^ laid).area() < 1e-3


def _footprint_map(tile: Tile, profile: StreetProfile) -> m3.CrossSection:
    """Union of the tile's footprint polygons in the map frame (x, y)."""
    rot, shift = tile.pose[:2, :2], tile.pose[:2, 3]
    polygons = [np.ascontiguousarray(poly @ rot.T + shift) for poly in footprint_local(tile,
                                                                                      profile)]
    return m3.CrossSection.batch_boolean([m3.CrossSection([p]) for p in polygons],
                                         m3.OpType.Add)


def _polyline_length(points: np.ndarray) -> float:
    """Length in metres of a polyline (N,D)."""
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def _draw_flat_start(rng: np.random.Generator, pose: np.ndarray, heading: float) -> Tile:
    """Flat straight the route starts on."""
    return Tile('straight', pose, length_m=float(rng.uniform(50.0, 70.0)))


def _draw_sloped(rng: np.random.Generator, pose: np.ndarray, heading: float) -> Tile:
    """Straight climbing or descending 3-7 m over 70-130 m (grades up to about 10%)."""
    length = float(rng.uniform(70.0, 130.0))
    rise = float(rng.uniform(3.0, 7.0) * rng.choice([-1.0, 1.0]))
    return Tile('straight', pose, length_m=length, rise_m=rise)


def _draw_curve(rng: np.random.Generator, pose: np.ndarray, heading: float) -> Tile:
    """Arc of radius 45-80 m turning 25-60 degrees, towards heading 0 when the street is askew."""
    turn = np.deg2rad(rng.uniform(25.0, 60.0))
    side = rng.choice([-1.0, 1.0]) if abs(heading) < np.deg2rad(20.0) else -np.sign(heading)
    radius = float(rng.uniform(45.0, 80.0))
    return Tile('curve', pose, length_m=radius * turn, radius_m=radius,
                turn_rad=float(side * turn))


def _draw_crossing(rng: np.random.Generator, pose: np.ndarray, heading: float) -> Tile:
    """Four-way crossing (or a T, one arm missing); the route goes straight, left or right."""
    arms = list(ARMS)
    if rng.random() < 0.4:
        arms.pop(int(rng.integers(3)))
    exit_arm = str(rng.choice(arms))
    return Tile('crossing', pose, arms=tuple(arms), exit=exit_arm)


def _draw_any(rng: np.random.Generator, pose: np.ndarray, heading: float) -> Tile:
    """Any tile: flat straights most often, then curves, crossings and climbs."""
    pick = rng.random()
    if pick < 0.4:
        return Tile('straight', pose, length_m=float(rng.uniform(40.0, 120.0)))
    if pick < 0.6:
        return _draw_sloped(rng, pose, heading)
    if pick < 0.8:
        return _draw_curve(rng, pose, heading)
    return _draw_crossing(rng, pose, heading)

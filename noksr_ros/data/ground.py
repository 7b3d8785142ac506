"""
Ground solids of the street tiles: road, curbs, sidewalks and plots as one thick slab.

Each street is the union of a slab whose top is the road surface and two raised blocks whose tops
are the sidewalks (and the plots behind them), so the curbs come out of the boolean union as exact
`curb_height_m` steps. Every solid here is in its tile's frame (see `noksr_ros.data.tiles`).
"""

from __future__ import annotations

import numpy as np

from noksr_ros.data.primitives import Solid, box_bounds, loft, transformed
from noksr_ros.data.tiles import (
    ARMS,
    STUB_LENGTH_M,
    StreetProfile,
    Tile,
    road_height,
    section_stations,
    station_xy,
    stub_half_width,
    stub_poses,
)

WALK_BLOCK_DEPTH_M = 0.5
# Each tile's ground reaches this far back into the previous tile: solids that only touched would
# meet on faces that are coplanar up to rounding, which can leave slivers or split the union.
JOINT_OVERLAP_M = 0.02
DEAD_END_WALL_HEIGHT_M = 2.5
DEAD_END_WALL_THICKNESS_M = 0.3


def tile_ground(tile: Tile, profile: StreetProfile) -> list[Solid]:
    """Ground solids of one tile in the tile frame (their union is the tile's ground)."""
    if tile.kind == 'crossing':
        return _crossing_ground(tile, profile)
    return [_street_loft(tile, v_lo, v_hi, z_lo, z_hi)
            for v_lo, v_hi, z_lo, z_hi in _street_bands(profile, profile.half_width_m)]


def end_wall(profile: StreetProfile) -> Solid:
    """
    Wall across a street's whole ground, closing the town where the street ends.

    Built in the frame of the street's end section, x pointing out of the town: it spans
    x = -0.3..0.1 m, overhanging the ground's end face so the two never share a plane.
    """
    half = profile.half_width_m + 0.1
    top = profile.curb_height_m + DEAD_END_WALL_HEIGHT_M
    return box_bounds((-DEAD_END_WALL_THICKNESS_M, -half, -profile.ground_depth_m / 2),
                      (0.1, half, top))


def _street_bands(profile: StreetProfile, half_width_m: float
                  ) -> list[tuple[float, float, float, float]]:
    """(v_lo, v_hi, z_lo, z_hi) of the slab and the two raised sidewalk blocks of a street."""
    road, curb = profile.road_half_width_m, profile.curb_height_m
    return [(-half_width_m, half_width_m, -profile.ground_depth_m, 0.0),
            (road, half_width_m, -WALK_BLOCK_DEPTH_M, curb),
            (-half_width_m, -road, -WALK_BLOCK_DEPTH_M, curb)]


def _street_loft(tile: Tile, v_lo: float, v_hi: float, z_lo: float, z_hi: float) -> Solid:
    """Band v_lo..v_hi, z_lo..z_hi above the road surface, swept along a straight or curve."""
    u = section_stations(tile)
    u[0] = -JOINT_OVERLAP_M
    corners_v = np.array([v_lo, v_hi, v_hi, v_lo])
    corners_z = np.array([z_lo, z_lo, z_hi, z_hi])
    x, y, _ = station_xy(tile, u[:, None], corners_v[None, :])
    z = road_height(tile, u)[:, None] + corners_z[None, :]
    return loft(np.stack([x, y, z], axis=-1))


def _crossing_ground(tile: Tile, profile: StreetProfile) -> list[Solid]:
    """Slab, corner sidewalk blocks, fillers for a missing arm, and the dead-end stubs."""
    half, road = profile.half_width_m, profile.road_half_width_m
    curb, depth = profile.curb_height_m, profile.ground_depth_m
    start = -JOINT_OVERLAP_M
    solids = [box_bounds((start, -half, -depth), (2 * half, half, 0.0))]
    xs = [(start, half - road), (half + road, 2 * half)]
    ys = [(-half, -road), (road, half)]
    for x_lo, x_hi in xs:
        for y_lo, y_hi in ys:
            solids.append(box_bounds((x_lo, y_lo, -WALK_BLOCK_DEPTH_M), (x_hi, y_hi, curb)))
    fillers = {'left': (half - road, road, half + road, half),
               'straight': (half + road, -road, 2 * half, road),
               'right': (half - road, -half, half + road, -road)}
    for arm in ARMS:
        if arm not in tile.arms:
            x_lo, y_lo, x_hi, y_hi = fillers[arm]
            solids.append(box_bounds((x_lo, y_lo, -WALK_BLOCK_DEPTH_M), (x_hi, y_hi, curb)))
    for pose in stub_poses(tile, profile):
        solids.extend(transformed(part, pose) for part in _stub(profile))
    return solids


def _stub(profile: StreetProfile) -> list[Solid]:
    """Dead-end side street in its own frame (x outward), walled on its three far sides."""
    length, width = STUB_LENGTH_M, stub_half_width(profile)
    solids = [box_bounds((-JOINT_OVERLAP_M, v_lo, z_lo), (length, v_hi, z_hi))
              for v_lo, v_hi, z_lo, z_hi in _street_bands(profile, width)]
    thick, top = DEAD_END_WALL_THICKNESS_M, profile.curb_height_m + DEAD_END_WALL_HEIGHT_M
    bottom = -profile.ground_depth_m / 2
    walls = [((length - thick, -width, bottom), (length, width, top)),
             ((0.0, -width, bottom), (length, -width + thick, top)),
             ((0.0, width - thick, bottom), (length, width, top))]
    solids.extend(box_bounds(lo, hi) for lo, hi in walls)
    return solids

"""
Street tiles: the pieces a procedural town is chained from, and their geometry in the tile frame.

A tile frame has its origin on the road centreline at the tile's entry, on the road surface, x
along the street, y to the left, z up. Three kinds exist:

- `straight`: length `length_m`, optionally climbing `rise_m` along a smooth piecewise-linear ramp
  (flat for `FLAT_END_M` at both ends, so neighbouring tiles meet level).
- `curve`: a circular arc of centreline radius `radius_m` turning by `turn_rad` (left > 0).
- `crossing`: a square of side 2 * half-width with side streets; `arms` lists the streets that
  leave it ('left', 'straight', 'right') and `exit` the one the route takes. Arms not taken end in
  a short dead-end stub.

Straight and curve tiles are addressed by station coordinates: `u` metres along the centreline and
`v` metres to its left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noksr_ros.data.primitives import pose_matrix

KINDS = ('straight', 'curve', 'crossing')
ARMS = ('left', 'straight', 'right')
FLAT_END_M = 10.0
RAMP_PIECES = 10
CURVE_STEP_RAD = np.deg2rad(4.0)
STUB_LENGTH_M = 24.0
TURN_RADIUS_LEFT_M = 12.0
TURN_RADIUS_RIGHT_M = 8.0


@dataclass(frozen=True)
class StreetProfile:
    """
    Cross-section shared by every street of a town (metres).

    The road carries two 3.5 m lanes and a 2.5 m parking strip on each side; the car drives the
    right lane, `lane_offset_m` right of the centreline. Curbs step up to the sidewalk, and the
    ground continues at sidewalk level out to `half_width_m`, where buildings stand.
    """

    road_half_width_m: float = 6.0
    lane_offset_m: float = 1.75
    curb_height_m: float = 0.15
    sidewalk_width_m: float = 3.5
    half_width_m: float = 28.0
    ground_depth_m: float = 3.0

    def __post_init__(self) -> None:
        """Reject profiles the tiles cannot be built with, naming the field."""
        checks = [
            ('lane_offset_m', 0.0 < self.lane_offset_m < self.road_half_width_m - 1.0,
             'in (0, road_half_width_m - 1)'),
            ('curb_height_m', 0.0 < self.curb_height_m < 0.5, 'in (0, 0.5)'),
            ('sidewalk_width_m', self.sidewalk_width_m >= 1.0, '>= 1'),
            # Curves have radii from 45 m and are lofted about their centre.
            ('half_width_m', self.walk_outer_m + 8.0 <= self.half_width_m <= 40.0,
             'in [road_half_width_m + sidewalk_width_m + 8, 40]'),
            ('ground_depth_m', self.ground_depth_m >= 1.0, '>= 1'),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise ValueError(f'StreetProfile.{name} must be {valid}, '
                                 f'got {getattr(self, name)!r}')

    @property
    def walk_outer_m(self) -> float:
        """Distance from the centreline to the outer edge of the sidewalk."""
        return self.road_half_width_m + self.sidewalk_width_m


@dataclass(frozen=True, eq=False)
class Tile:
    """
    One street tile.

    pose: T_map_tile (4,4) float64, a yaw and a shift (z = road height at the entry).
    length_m: centreline length of a straight or curve. rise_m: climb of a straight.
    radius_m, turn_rad: centreline radius and signed heading change (left > 0) of a curve.
    arms, exit: a crossing's side streets and the one the route leaves by.
    """

    kind: str
    pose: np.ndarray
    length_m: float = 0.0
    rise_m: float = 0.0
    radius_m: float = 0.0
    turn_rad: float = 0.0
    arms: tuple[str, ...] = ()
    exit: str = 'straight'


def ramp_breaks(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Stations (K,) and road heights (K,) of a straight tile's piecewise-linear climb."""
    if tile.rise_m == 0.0:
        return np.array([0.0, tile.length_m]), np.zeros(2)
    ramp = np.linspace(0.0, 1.0, RAMP_PIECES + 1)
    smooth = ramp * ramp * (3.0 - 2.0 * ramp)
    stations = FLAT_END_M + ramp * (tile.length_m - 2.0 * FLAT_END_M)
    stations = np.concatenate([[0.0], stations, [tile.length_m]])
    heights = np.concatenate([[0.0], tile.rise_m * smooth, [tile.rise_m]])
    return stations, heights


def road_height(tile: Tile, u: np.ndarray | float) -> np.ndarray:
    """Road surface height (tile frame) at stations `u`; non-zero only on a climbing straight."""
    if tile.kind != 'straight':
        return np.zeros_like(np.asarray(u, dtype=np.float64))
    stations, heights = ramp_breaks(tile)
    return np.interp(u, stations, heights)


def road_grade(tile: Tile, u: float) -> float:
    """Slope dz/du of the road at station `u` (0 except on a ramp)."""
    stations, heights = ramp_breaks(tile) if tile.kind == 'straight' else ([0, 1], [0, 0])
    piece = int(np.clip(np.searchsorted(stations, u, side='right') - 1, 0, len(stations) - 2))
    return float((heights[piece + 1] - heights[piece]) / (stations[piece + 1] - stations[piece]))


def station_xy(tile: Tile, u: np.ndarray | float, v: np.ndarray | float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile-frame x, y and heading yaw (rad) of station coordinates (`u` along, `v` left)."""
    u_arr, v_arr = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(v, np.float64))
    if tile.kind != 'curve':
        return u_arr.copy(), v_arr.copy(), np.zeros_like(u_arr)
    side = np.sign(tile.turn_rad)
    phi = u_arr / tile.radius_m
    rho = tile.radius_m - side * v_arr
    x = rho * np.sin(phi)
    y = side * (tile.radius_m - rho * np.cos(phi))
    return x, y, side * phi


def section_stations(tile: Tile) -> np.ndarray:
    """Stations (K,) where a straight or curve tile's ground is sectioned for lofting."""
    if tile.kind == 'straight':
        return ramp_breaks(tile)[0]
    steps = max(2, int(np.ceil(abs(tile.turn_rad) / CURVE_STEP_RAD)))
    return np.linspace(0.0, tile.length_m, steps + 1)


def arm_pose(arm: str, profile: StreetProfile) -> np.ndarray:
    """Frame (4,4) where a crossing's arm leaves the square, in the crossing's frame, x outward."""
    half = profile.half_width_m
    if arm == 'straight':
        return pose_matrix(2 * half, 0.0, 0.0, 0.0)
    side = 1.0 if arm == 'left' else -1.0
    return pose_matrix(half, side * half, 0.0, side * np.pi / 2)


def exit_pose_local(tile: Tile, profile: StreetProfile) -> np.ndarray:
    """Pose (4,4) of the next tile's frame in this tile's frame."""
    if tile.kind == 'crossing':
        return arm_pose(tile.exit, profile)
    x, y, yaw = station_xy(tile, tile.length_m, 0.0)
    return pose_matrix(float(x), float(y), float(road_height(tile, tile.length_m)), float(yaw))


def lane_path_local(tile: Tile, profile: StreetProfile, step_m: float = 1.0) -> np.ndarray:
    """Centre of the right lane (N,3) in the tile frame, on the road surface, entry to exit."""
    if tile.kind == 'crossing':
        return _crossing_lane_path(tile, profile, step_m)
    count = max(2, int(np.ceil(tile.length_m / step_m)) + 1)
    u = np.linspace(0.0, tile.length_m, count)
    if tile.kind == 'straight':
        u = np.union1d(u, ramp_breaks(tile)[0])
    x, y, _ = station_xy(tile, u, -profile.lane_offset_m)
    return np.stack([x, y, road_height(tile, u)], axis=1)


def _crossing_lane_path(tile: Tile, profile: StreetProfile, step_m: float) -> np.ndarray:
    """Right-lane path through a crossing: straight on, or a quarter circle left or right."""
    half, lane = profile.half_width_m, profile.lane_offset_m
    if tile.exit == 'straight':
        x = np.linspace(0.0, 2 * half, int(np.ceil(2 * half / step_m)) + 1)
        return np.stack([x, np.full_like(x, -lane), np.zeros_like(x)], axis=1)
    left = tile.exit == 'left'
    radius = TURN_RADIUS_LEFT_M if left else TURN_RADIUS_RIGHT_M
    side = 1.0 if left else -1.0
    lane_x = half + side * lane
    x_arc = lane_x - radius
    centre = np.array([x_arc, -lane + side * radius])
    approach = np.linspace(0.0, x_arc, max(2, int(np.ceil(x_arc / step_m)) + 1))[:-1]
    angles = np.linspace(0.0, np.pi / 2, max(4, int(np.ceil(radius * np.pi / 2 / step_m)) + 1))
    arc = centre + radius * np.stack([np.sin(angles), -side * np.cos(angles)], axis=1)
    y_start, y_end = arc[-1, 1], side * half
    depart = np.linspace(y_start, y_end, max(2, int(np.ceil(abs(y_end - y_start) / step_m)) + 1))
    xy = np.concatenate([np.stack([approach, np.full_like(approach, -lane)], axis=1), arc,
                         np.stack([np.full_like(depart[1:], lane_x), depart[1:]], axis=1)])
    return np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)


def footprint_local(tile: Tile, profile: StreetProfile) -> list[np.ndarray]:
    """Ground the tile owns, as counter-clockwise polygons (N,2) in the tile frame."""
    half = profile.half_width_m
    if tile.kind == 'crossing':
        square = _rect(0.0, -half, 2 * half, half)
        stub = _rect(0.0, -stub_half_width(profile), STUB_LENGTH_M, stub_half_width(profile))
        stubs = [stub @ pose[:2, :2].T + pose[:2, 3] for pose in stub_poses(tile, profile)]
        return [square, *stubs]
    u = section_stations(tile)
    x_r, y_r, _ = station_xy(tile, u, -half)
    x_l, y_l, _ = station_xy(tile, u[::-1], half)
    return [np.concatenate([np.stack([x_r, y_r], 1), np.stack([x_l, y_l], 1)])]


def stub_poses(tile: Tile, profile: StreetProfile) -> list[np.ndarray]:
    """Frames (4,4) of a crossing's dead-end side streets (the arms the route does not take)."""
    return [arm_pose(arm, profile) for arm in tile.arms if arm != tile.exit]


def stub_half_width(profile: StreetProfile) -> float:
    """Half-width of a dead-end side street's ground: the sidewalks plus a metre."""
    return profile.walk_outer_m + 1.0


def _rect(x_lo: float, y_lo: float, x_hi: float, y_hi: float) -> np.ndarray:
    """Counter-clockwise rectangle (4,2)."""
    return np.array([[x_lo, y_lo], [x_hi, y_lo], [x_hi, y_hi], [x_lo, y_hi]])

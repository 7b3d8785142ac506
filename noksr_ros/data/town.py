"""
Procedural CARLA-like towns with an exact ground-truth mesh, deterministic by seed.

A town is a chain of street tiles (straights, some climbing; curves; four-way and T crossings with
dead-end side streets) lined with buildings (window insets, recessed entrances, balconies,
setbacks, flat, gable and hip roofs), street lights, signs, bollards, trees, walls, fences and
parked cars. Every object is a closed solid and the ground is a thick slab, so the exact boolean
union of everything (manifold3d) is one closed, self-intersection-free surface with no face buried
inside another solid: the ground-truth mesh.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
import math
from typing import Any

import numpy as np
from tqdm import tqdm

from noksr_ros.data.crossing import furnish_crossing
from noksr_ros.data.furnish import furnish_street
from noksr_ros.data.ground import end_wall, tile_ground
from noksr_ros.data.layout import plan_tiles, route_through, trim_polyline
from noksr_ros.data.primitives import Solid, pose_matrix, to_arrays, transformed, union
from noksr_ros.data.tiles import StreetProfile, Tile, exit_pose_local

LEAD_IN_M = 20.0
LEAD_OUT_M = 40.0
MAX_LENGTH_M = 50_000.0
# Long edges are split: large flat faces otherwise become triangles tens of metres long and a few
# centimetres wide, on which float32 point-to-triangle queries (open3d) err by centimetres.
MAX_EDGE_M = 4.0


@dataclass(frozen=True, eq=False)
class Town:
    """
    A generated town: ground-truth mesh, the route the car drives, and how it was made.

    mesh_vertices: (V,3) float64, map frame (z up, metres).
    mesh_faces: (F,3) int32 indices into mesh_vertices, counter-clockwise seen from outside; no
        edge is longer than `MAX_EDGE_M`.
    route: (M,3) float64, map frame: the centre of the right lane on the road surface, from the
        start of the drive to its end, about 1 m between points; `length_m` long.
    """

    mesh_vertices: np.ndarray
    mesh_faces: np.ndarray
    route: np.ndarray
    seed: int
    length_m: float
    tiles: tuple[Tile, ...]
    profile: StreetProfile
    object_counts: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description: seed, sizes, street profile, object counts and the tiles."""
        return {
            'seed': self.seed, 'length_m': self.length_m,
            'num_vertices': len(self.mesh_vertices), 'num_faces': len(self.mesh_faces),
            'profile': asdict(self.profile), 'object_counts': dict(self.object_counts),
            'tiles': [_tile_metadata(tile) for tile in self.tiles],
        }


def generate_town(seed: int, length_m: float = 300.0, *, profile: StreetProfile | None = None,
                  progress: bool | None = False) -> Town:
    """
    Generate the town of `seed` whose route is `length_m` long.

    The same seed always gives the same town, and a longer town with the same seed continues a
    shorter one (its first tiles are the same). The street runs on for `LEAD_OUT_M` past the
    route's end and starts `LEAD_IN_M` before it, closed by walls at both ends. A 300 m town takes
    a second or so; long towns cost about linearly more. `progress` shows a bar over the tiles
    (None: only on a terminal).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'generate_town: seed must be an integer >= 0, got {seed!r}')
    if not (math.isfinite(length_m) and 0.0 < length_m <= MAX_LENGTH_M):
        raise ValueError(f'generate_town: length_m must be in (0, {MAX_LENGTH_M:g}], '
                         f'got {length_m!r}')
    profile = profile or StreetProfile()
    tiles = plan_tiles(np.random.default_rng(seed), LEAD_IN_M + length_m + LEAD_OUT_M, profile)
    counts: Counter = Counter()
    tile_solids = []
    for index, tile in enumerate(tqdm(tiles, desc='town tiles', leave=False,
                                      disable=None if progress is None else not progress)):
        solid, tile_counts = _tile_solid(tile, profile, np.random.default_rng([seed, index]))
        tile_solids.append(solid)
        counts.update(tile_counts)
    tile_solids.extend(_end_walls(tiles, profile))
    mesh = union(tile_solids).refine_to_length(MAX_EDGE_M)
    if mesh.status().name != 'NoError' or mesh.is_empty():
        raise RuntimeError(f'generate_town: the union failed ({mesh.status()}) for seed {seed}')
    vertices, faces = to_arrays(mesh)
    route = trim_polyline(route_through(tiles, profile), LEAD_IN_M, length_m)
    return Town(vertices, faces, route, int(seed), float(length_m), tuple(tiles), profile,
                dict(sorted(counts.items())))


def _tile_solid(tile: Tile, profile: StreetProfile,
                rng: np.random.Generator) -> tuple[Solid, Counter]:
    """Union of a tile's ground and furniture, in the map frame, and its object counts."""
    if tile.kind == 'crossing':
        furniture, counts = furnish_crossing(tile, profile, rng)
    else:
        furniture, counts = furnish_street(tile, profile, rng)
    return transformed(union(tile_ground(tile, profile) + furniture), tile.pose), counts


def _end_walls(tiles: list[Tile], profile: StreetProfile) -> list[Solid]:
    """Walls across the street before the first tile and after the last one."""
    start = tiles[0].pose @ pose_matrix(0.0, 0.0, 0.0, np.pi)
    end = tiles[-1].pose @ exit_pose_local(tiles[-1], profile)
    return [transformed(end_wall(profile), start), transformed(end_wall(profile), end)]


def _tile_metadata(tile: Tile) -> dict[str, Any]:
    """JSON-ready fields of one tile."""
    return {'kind': tile.kind, 'T_map_tile': tile.pose.round(9).tolist(),
            'length_m': tile.length_m, 'rise_m': tile.rise_m, 'radius_m': tile.radius_m,
            'turn_rad': tile.turn_rad, 'arms': list(tile.arms), 'exit': tile.exit}

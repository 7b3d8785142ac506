"""Procedural town: determinism, a closed ground-truth mesh without buried faces, contents."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from noksr_ros.data.layout import plan_tiles
from noksr_ros.data.tiles import StreetProfile
from noksr_ros.data.town import Town, generate_town


@pytest.fixture(scope='module')
def town() -> Town:
    return generate_town(11, 300.0)


def _scene(town: Town) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(town.mesh_vertices.astype(np.float32)),
                        o3d.core.Tensor(town.mesh_faces.astype(np.uint32)))
    return scene


def _surface_samples(town: Town, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points on the mesh (count,3) and the unit normals of their faces."""
    tri = town.mesh_vertices[town.mesh_faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(tri), count, p=area / area.sum())
    r1, r2 = rng.random((2, count))
    s = np.sqrt(r1)
    points = ((1 - s)[:, None] * tri[face, 0] + (s * (1 - r2))[:, None] * tri[face, 1]
              + (s * r2)[:, None] * tri[face, 2])
    return points, cross[face] / area[face, None]


def test_same_seed_gives_the_same_town() -> None:
    first, again = generate_town(3, 120.0), generate_town(3, 120.0)
    assert np.array_equal(first.mesh_vertices, again.mesh_vertices)
    assert np.array_equal(first.mesh_faces, again.mesh_faces)
    assert np.array_equal(first.route, again.route)
    assert first.metadata() == again.metadata()


def test_different_seeds_differ() -> None:
    first, other = generate_town(3, 120.0), generate_town(4, 120.0)
    assert other.mesh_faces.shape != first.mesh_faces.shape or not np.allclose(
        other.mesh_vertices, first.mesh_vertices)
    assert not np.allclose(other.route[-1], first.route[-1])


def test_longer_town_continues_the_shorter_one() -> None:
    profile = StreetProfile()
    short = plan_tiles(np.random.default_rng(5), 300.0, profile)
    long = plan_tiles(np.random.default_rng(5), 900.0, profile)
    for a, b in zip(short, long):
        assert a.kind == b.kind and np.array_equal(a.pose, b.pose)


def test_arrays_have_documented_types(town: Town) -> None:
    assert town.mesh_vertices.dtype == np.float64 and town.mesh_vertices.shape[1] == 3
    assert town.mesh_faces.dtype == np.int32 and town.mesh_faces.shape[1] == 3
    assert town.mesh_faces.min() >= 0 and town.mesh_faces.max() < len(town.mesh_vertices)
    assert town.route.dtype == np.float64 and town.route.shape[1] == 3
    assert 10_000 < len(town.mesh_faces) < 300_000


def test_mesh_is_closed_and_consistently_oriented(town: Town) -> None:
    faces = town.mesh_faces.astype(np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = edges[:, 0] * len(town.mesh_vertices) + edges[:, 1]
    reverse = edges[:, 1] * len(town.mesh_vertices) + edges[:, 0]
    assert len(np.unique(key)) == len(key), 'a directed edge is used twice'
    assert np.isin(key, reverse).all(), 'an edge has no opposite half-edge (a hole)'
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(town.mesh_vertices),
                                     o3d.utility.Vector3iVector(town.mesh_faces))
    assert mesh.is_edge_manifold(allow_boundary_edges=False)
    assert mesh.is_vertex_manifold()
    tri = town.mesh_vertices[town.mesh_faces]
    volume = np.einsum('ij,ij->i', tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert volume > 0.0, 'faces must point out of the solid'


def test_no_face_is_buried_inside_the_solid(town: Town) -> None:
    """
    Just outside every face is free space and just inside is solid.

    A face buried inside another solid would have solid on both sides. A few samples within a
    millimetre of a shallow concave wedge (a wheel entering the road) are legitimately inside.
    """
    points, normals = _surface_samples(town, 20_000, seed=0)
    scene = _scene(town)
    outside = (points + 1e-3 * normals).astype(np.float32)
    inside = (points - 1e-3 * normals).astype(np.float32)
    occupied_out = scene.compute_occupancy(o3d.core.Tensor(outside), nsamples=3).numpy()
    occupied_in = scene.compute_occupancy(o3d.core.Tensor(inside), nsamples=3).numpy()
    assert occupied_out.mean() < 5e-4, 'points just outside faces are inside: buried faces'
    assert occupied_in.mean() > 0.999


def test_town_has_every_kind_of_street_and_object(town: Town) -> None:
    assert {tile.kind for tile in town.tiles} == {'straight', 'curve', 'crossing'}
    assert any(tile.rise_m != 0.0 for tile in town.tiles)
    for name in ('buildings', 'street_lights', 'signs', 'trees', 'parked_cars'):
        assert town.object_counts.get(name, 0) > 0, name
    assert town.object_counts.get('walls', 0) + town.object_counts.get('fences', 0) > 0


def test_route_lies_on_the_road(town: Town) -> None:
    length = np.linalg.norm(np.diff(town.route, axis=0), axis=1).sum()
    assert length == pytest.approx(town.length_m, rel=1e-6)
    above = town.route + [0.0, 0.0, 1.0]
    rays = np.concatenate([above, np.tile([0.0, 0.0, -1.0], (len(above), 1))], axis=1)
    hits = _scene(town).cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
    assert np.abs(hits['t_hit'].numpy() - 1.0).max() < 1e-4
    assert hits['primitive_normals'].numpy()[:, 2].min() > 0.99
    assert np.ptp(town.route[:, 2]) > 2.0, 'the town has a slope'


def test_curbs_step_up_to_the_sidewalk(town: Town) -> None:
    """Drop rays on the road beside the route and on the sidewalk beyond the curb."""
    profile = town.profile
    tangent = np.gradient(town.route[:, :2], axis=0)
    right = np.stack([tangent[:, 1], -tangent[:, 0]], 1) / np.linalg.norm(tangent, axis=1)[:, None]
    road_offset = profile.road_half_width_m - profile.lane_offset_m - 0.5
    walk_offset = profile.road_half_width_m - profile.lane_offset_m + 1.2
    heights = []
    for offset in (road_offset, walk_offset):
        origins = np.concatenate([town.route[:, :2] + offset * right,
                                  town.route[:, 2:] + 30.0], axis=1)
        rays = np.concatenate([origins, np.tile([0.0, 0.0, -1.0], (len(origins), 1))], 1)
        hits = _scene(town).cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        heights.append(origins[:, 2] - hits['t_hit'].numpy())
    step = heights[1] - heights[0]
    # Straight stretches only (curb corners at crossings and objects on the sidewalk aside).
    assert np.mean(np.abs(step - profile.curb_height_m) < 0.02) > 0.6


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match='seed'):
        generate_town(-1)
    with pytest.raises(ValueError, match='length_m'):
        generate_town(0, 0.0)
    with pytest.raises(ValueError, match='length_m'):
        generate_town(0, float('nan'))

"""Simulated spinning LiDAR: beam geometry, ranges, noise, dropouts, intensity, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import open3d as o3d
import pytest

from noksr_ros.data.lidar import LidarScan, LidarSimulator, LidarSpec
from noksr_ros.data.primitives import box_bounds, to_arrays
from noksr_ros.data.town import Town, generate_town
from noksr_ros.data.trajectory import Trajectory

EXACT = LidarSpec(range_noise_m=0.0, dropout_rate=0.0)


def _room() -> tuple[np.ndarray, np.ndarray]:
    """Inside of a 100 x 100 x 40 m box around the origin: every ray hits within 80 m."""
    return to_arrays(box_bounds((-50.0, -50.0, -2.4), (50.0, 50.0, 37.6)))


def _plane() -> tuple[np.ndarray, np.ndarray]:
    """A 2 km wide ground slab 2.4 m below the origin."""
    return to_arrays(box_bounds((-1000.0, -1000.0, -3.4), (1000.0, 1000.0, -2.4)))


def _scan(mesh: tuple[np.ndarray, np.ndarray], spec: LidarSpec, seed: int = 0) -> LidarScan:
    return LidarSimulator(*mesh, spec).scan(np.eye(4), np.random.default_rng(seed))


@pytest.fixture(scope='module')
def town() -> Town:
    return generate_town(21, 120.0)


def test_scan_types_and_frame() -> None:
    scan = _scan(_room(), LidarSpec())
    assert scan.points.dtype == np.float32 and scan.points.shape[1] == 3
    assert scan.intensity.dtype == np.float32 and scan.intensity.shape == (len(scan.points),)
    assert scan.ring.dtype == np.uint16 and scan.ring.max() < 64
    assert 0.0 <= scan.intensity.min() and scan.intensity.max() <= 1.0


def test_elevations_cluster_at_the_beam_angles() -> None:
    scan = _scan(_room(), EXACT)
    assert len(scan.points) == EXACT.num_rays
    elevation = np.rad2deg(np.arcsin(scan.points[:, 2] / np.linalg.norm(scan.points, axis=1)))
    beams = EXACT.elevations_deg()
    assert beams[0] == pytest.approx(2.0) and beams[-1] == pytest.approx(-24.8)
    nearest = np.argmin(np.abs(elevation[:, None] - beams[None, :]), axis=1)
    assert np.abs(elevation - beams[nearest]).max() < 1e-3
    assert np.array_equal(nearest, scan.ring)
    assert np.array_equal(np.bincount(scan.ring, minlength=64), np.full(64, 1800))


def test_azimuths_are_evenly_spaced() -> None:
    spec = replace(EXACT, azimuth_steps=360)
    scan = _scan(_room(), spec)
    top = scan.points[scan.ring == 0]
    azimuth = np.sort(np.rad2deg(np.arctan2(top[:, 1], top[:, 0])))
    assert np.allclose(np.diff(azimuth), 1.0, atol=1e-3)


def test_ranges_stay_within_limits_and_far_ground_is_not_seen() -> None:
    spec = LidarSpec(range_noise_m=0.05)
    scan = _scan(_plane(), spec)
    ranges = np.linalg.norm(scan.points, axis=1)
    assert spec.min_range_m <= ranges.min() and ranges.max() <= spec.max_range_m
    beams = spec.elevations_deg()
    # A beam at -e degrees meets the ground 2.4 / sin(e) m away: farther than 80 m above -1.7.
    seen = np.unique(scan.ring)
    assert beams[seen].max() < -np.rad2deg(np.arcsin(2.4 / 80.0)) + 0.5
    assert beams[seen].min() == pytest.approx(-24.8)


def test_dropout_rate_matches_the_spec() -> None:
    spec = LidarSpec(dropout_rate=0.2)
    kept = len(_scan(_room(), spec).points) / spec.num_rays
    sigma = np.sqrt(0.2 * 0.8 / spec.num_rays)
    assert abs(kept - 0.8) < 5 * sigma
    assert len(_scan(_room(), LidarSpec()).points) / spec.num_rays == pytest.approx(0.95, abs=0.01)


def test_range_noise_has_the_spec_sigma() -> None:
    exact = _scan(_room(), EXACT)
    noisy = _scan(_room(), replace(EXACT, range_noise_m=0.03))
    error = np.linalg.norm(noisy.points, axis=1) - np.linalg.norm(exact.points, axis=1)
    assert np.mean(error) == pytest.approx(0.0, abs=1e-3)
    assert np.std(error) == pytest.approx(0.03, rel=0.03)


def test_intensity_falls_with_incidence_angle() -> None:
    scan = _scan(_plane(), EXACT)
    steep = scan.intensity[scan.ring == 63].mean()
    grazing = scan.intensity[scan.ring == int(np.flatnonzero(EXACT.elevations_deg() < -3)[0])]
    assert steep > 2.0 * grazing.mean()


def test_points_lie_on_the_town_surface(town: Town) -> None:
    pose = Trajectory(town.route).pose_at(3.0) @ EXACT.t_base_sensor()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(town.mesh_vertices.astype(np.float32)),
                        o3d.core.Tensor(town.mesh_faces.astype(np.uint32)))
    for spec, bound in ((EXACT, 0.005), (LidarSpec(range_noise_m=0.02), 0.1)):
        scan = LidarSimulator(town.mesh_vertices, town.mesh_faces, spec).scan(
            pose, np.random.default_rng(1))
        in_map = scan.points.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
        distance = scene.compute_distance(o3d.core.Tensor(in_map.astype(np.float32))).numpy()
        assert len(scan.points) > 0.8 * spec.num_rays * (1 - spec.dropout_rate)
        assert np.quantile(distance, 0.999) < bound
    assert np.median(distance) > 0.004, 'the noisy scan has noise'


def test_same_seed_gives_the_same_scan(town: Town) -> None:
    simulator = LidarSimulator(town.mesh_vertices, town.mesh_faces)
    pose = Trajectory(town.route).pose_at(5.0) @ simulator.spec.t_base_sensor()
    first = simulator.scan(pose, np.random.default_rng(7))
    again = simulator.scan(pose, np.random.default_rng(7))
    other = simulator.scan(pose, np.random.default_rng(8))
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert len(first.points) != len(other.points) or not np.array_equal(first.points,
                                                                        other.points)


def test_spec_extrinsic_dict_round_trip_and_validation() -> None:
    spec = LidarSpec()
    extrinsic = spec.t_base_sensor()
    assert np.array_equal(extrinsic[:3, :3], np.eye(3))
    assert np.array_equal(extrinsic[:3, 3], [0.0, 0.0, 2.4])
    assert LidarSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match='unknown keys'):
        LidarSpec.from_dict({'beams': 64})
    with pytest.raises(ValueError, match='dropout_rate'):
        LidarSpec(dropout_rate=1.0)
    with pytest.raises(ValueError, match='max_range_m'):
        LidarSpec(min_range_m=90.0)
    with pytest.raises(ValueError, match='upper_fov_deg'):
        LidarSpec(upper_fov_deg=-30.0)
    with pytest.raises(ValueError, match='4,4'):
        LidarSimulator(*_room()).scan(np.eye(3), np.random.default_rng(0))

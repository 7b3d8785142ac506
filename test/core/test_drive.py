"""Trajectory along the route, simulated drives on disk (npz and bag) and the npz reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from noksr_ros.data.drive import EPOCH_NS, DriveSummary, simulate_drive
from noksr_ros.data.lidar import LidarSpec
from noksr_ros.data.npz_drive import NpzDriveError, iter_npz_drive, load_scan, scan_path
from noksr_ros.data.town import generate_town
from noksr_ros.data.trajectory import Trajectory
from noksr_ros.errors import NoksrError
from noksr_ros.io.bag import BagDriveReader

SMALL_LIDAR = LidarSpec(azimuth_steps=300)


@pytest.fixture(scope='module')
def drive(tmp_path_factory: pytest.TempPathFactory) -> DriveSummary:
    out = tmp_path_factory.mktemp('drive')
    return simulate_drive(5, out, length_m=24.0, speed_mps=8.0, lidar=SMALL_LIDAR)


def test_trajectory_follows_the_route_at_constant_speed() -> None:
    route = generate_town(2, 150.0).route
    trajectory = Trajectory(route, speed_mps=10.0)
    assert trajectory.duration_s == pytest.approx(15.0, rel=1e-3)
    assert np.allclose(trajectory.pose_at(0.0)[:3, 3], route[0], atol=1e-9)
    assert np.allclose(trajectory.pose_at(trajectory.duration_s)[:3, 3], route[-1], atol=1e-6)
    times = np.linspace(0.0, trajectory.duration_s, 301)
    poses = trajectory.poses_at(times)
    rotations = poses[:, :3, :3]
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.allclose(step, 10.0 * np.diff(times), rtol=0.02)
    heading = np.diff(poses[:, :3, 3], axis=0)
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    forward = poses[:-1, :3, 0] + poses[1:, :3, 0]
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    assert np.einsum('ij,ij->i', heading, forward).min() > 0.999, 'x axis follows the tangent'
    assert np.abs(poses[:, 2, 1]).max() < 1e-9, 'no roll'


def test_trajectory_rejects_bad_input() -> None:
    route = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match='speed_mps'):
        Trajectory(route, speed_mps=0.0)
    with pytest.raises(ValueError, match='route'):
        Trajectory(route[:1])
    with pytest.raises(ValueError, match='times'):
        Trajectory(route).pose_at(5.0)


def test_drive_writes_every_output(drive: DriveSummary) -> None:
    assert drive.num_scans == 31 and drive.duration_s == pytest.approx(3.0)
    assert drive.gt_mesh_path.is_file() and drive.npz_dir is not None
    mesh = o3d.io.read_triangle_mesh(str(drive.gt_mesh_path))
    assert len(mesh.triangles) == drive.num_mesh_faces
    info = json.loads((drive.npz_dir / 'drive.json').read_text())
    assert info['seed'] == 5 and info['num_scans'] == 31
    assert LidarSpec.from_dict(info['lidar']) == SMALL_LIDAR
    assert np.array_equal(np.array(info['T_base_sensor']), SMALL_LIDAR.t_base_sensor())
    assert len(sorted(drive.npz_dir.glob('scan_*.npz'))) == 31


def test_npz_scans_are_plain_arrays_on_the_gt_surface(drive: DriveSummary) -> None:
    with np.load(scan_path(drive.npz_dir, 10), allow_pickle=False) as npz:
        assert npz['stamp_ns'].dtype == np.int64 and npz['points'].dtype == np.float32
        assert npz['intensity'].dtype == np.float32 and npz['T_map_base'].shape == (4, 4)
    mesh = o3d.io.read_triangle_mesh(str(drive.gt_mesh_path))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    stamps, total = [], 0
    for stamp, points, intensity, t_map_sensor in iter_npz_drive(drive.out_dir):
        stamps.append(stamp)
        total += len(points)
        assert len(intensity) == len(points)
        in_map = points.astype(np.float64) @ t_map_sensor[:3, :3].T + t_map_sensor[:3, 3]
        distance = scene.compute_distance(o3d.core.Tensor(in_map.astype(np.float32))).numpy()
        assert np.quantile(distance, 0.99) < 0.08
    assert total == drive.num_points
    assert stamps[0] == EPOCH_NS
    assert np.all(np.diff(stamps) == 100_000_000)
    arrays = load_scan(scan_path(drive.npz_dir, 3))
    assert np.allclose(arrays['T_map_sensor'],
                       arrays['T_map_base'] @ SMALL_LIDAR.t_base_sensor(), atol=1e-12)


def test_bag_matches_the_npz_scans(drive: DriveSummary) -> None:
    assert drive.bag_path is not None and drive.bag_path.exists()
    scans = list(BagDriveReader(drive.bag_path))
    stored = list(iter_npz_drive(drive.npz_dir))
    assert len(scans) == len(stored) == drive.num_scans
    for scan, (stamp, points, intensity, t_map_sensor) in zip(scans, stored):
        assert scan.stamp_ns == stamp
        assert np.array_equal(scan.points_sensor, points)
        assert np.array_equal(scan.intensity, intensity)
        assert np.allclose(scan.T_map_sensor, t_map_sensor, atol=1e-9)


def test_same_seed_gives_the_same_drive(tmp_path: Path, drive: DriveSummary) -> None:
    again = simulate_drive(5, tmp_path, length_m=24.0, speed_mps=8.0, lidar=SMALL_LIDAR,
                           write_bag=False)
    assert again.bag_path is None and again.num_points == drive.num_points
    for index in (0, 17, 30):
        first = load_scan(scan_path(drive.npz_dir, index))
        second = load_scan(scan_path(again.npz_dir, index))
        for name in first:
            assert np.array_equal(first[name], second[name]), name


def test_existing_outputs_need_overwrite(tmp_path: Path) -> None:
    kwargs = {'length_m': 8.0, 'lidar': LidarSpec(azimuth_steps=60), 'write_bag': False}
    simulate_drive(1, tmp_path, **kwargs)
    with pytest.raises(FileExistsError, match='overwrite'):
        simulate_drive(1, tmp_path, **kwargs)
    summary = simulate_drive(1, tmp_path, overwrite=True, write_npz=False, **kwargs)
    assert summary.npz_dir is None and not (tmp_path / 'npz').exists()
    with pytest.raises(ValueError, match='storage'):
        simulate_drive(1, tmp_path / 'x', storage='bag', **kwargs)


def test_npz_reader_reports_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(NpzDriveError, match='does not exist'):
        list(iter_npz_drive(tmp_path / 'nowhere'))
    with pytest.raises(NpzDriveError, match='drive.json'):
        list(iter_npz_drive(tmp_path))
    drive = simulate_drive(2, tmp_path / 'd', length_m=8.0, lidar=LidarSpec(azimuth_steps=60),
                           write_bag=False)
    npz_dir = drive.npz_dir
    scan_path(npz_dir, 2).unlink()
    with pytest.raises(NpzDriveError, match='scan_000002.npz is missing'):
        list(iter_npz_drive(npz_dir))
    scan_path(npz_dir, 1).write_bytes(b'not a zip file')
    with pytest.raises(NpzDriveError, match='corrupt'):
        list(iter_npz_drive(npz_dir))
    arrays = load_scan(scan_path(npz_dir, 0))
    arrays['points'] = arrays['points'].astype(np.float64)
    np.savez(scan_path(npz_dir, 0), **arrays)
    with pytest.raises(NoksrError, match='points must be float32'):
        load_scan(scan_path(npz_dir, 0))
    (npz_dir / 'drive.json').write_text('{"format_version": 1}')
    with pytest.raises(NpzDriveError, match='num_scans'):
        list(iter_npz_drive(npz_dir))

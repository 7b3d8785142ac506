"""
Simulated drives: a procedural town, a car driving its route, and a spinning LiDAR on its roof.

`simulate_drive` writes, into one output directory:

- `gt_mesh.ply`: the town's ground-truth mesh in the map frame;
- `npz/`: one `scan_{index:06d}.npz` per scan and `drive.json` (see `noksr_ros.data.npz_drive`);
- `drive.mcap` (or `drive.sqlite3`): a ROS 2 bag laid out like a CARLA ROS bridge recording
  (PointCloud2 in the LiDAR frame, Odometry and /tf at 50 Hz, the extrinsic on /tf_static).

Everything is deterministic in the seed: the town, the route, the range noise and the dropouts.
Stamps start at `EPOCH_NS` (1_700_000_000 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import math
from pathlib import Path
import shutil

import numpy as np
from tqdm import tqdm

from noksr_ros.data.lidar import LidarSimulator, LidarSpec
from noksr_ros.data.npz_drive import write_drive_json, write_scan
from noksr_ros.data.town import Town, generate_town
from noksr_ros.data.trajectory import Trajectory

EPOCH_NS = 1_700_000_000 * 1_000_000_000
ODOMETRY_RATE_HZ = 50.0
# The bag's odometry starts this long before the first scan, with the car standing at its start
# pose, as a bridge's odometry runs before a recording's first LiDAR sweep. A replay that loses
# its first few odometry messages to DDS discovery still has a pose for the first scan.
ODOMETRY_LEAD_S = 0.5
STORAGES = ('mcap', 'sqlite3')
MESH_FILE = 'gt_mesh.ply'
NPZ_DIR = 'npz'
_SCAN_STREAM = 101  # keeps the sensor noise stream apart from the town's streams


@dataclass(frozen=True)
class DriveSummary:
    """What `simulate_drive` wrote; paths are None for outputs that were not asked for."""

    out_dir: Path
    seed: int
    num_scans: int
    num_points: int
    duration_s: float
    num_mesh_faces: int
    gt_mesh_path: Path
    npz_dir: Path | None
    bag_path: Path | None


def simulate_drive(seed: int, out_dir: str | Path, *, length_m: float = 300.0,
                   speed_mps: float = 8.0, scan_rate_hz: float = 10.0, write_bag: bool = True,
                   write_npz: bool = True, storage: str = 'mcap', lidar: LidarSpec = LidarSpec(),
                   overwrite: bool = False, progress: bool | None = None) -> DriveSummary:
    """
    Generate the town of `seed`, drive `length_m` of it and record the LiDAR.

    Scans are taken every 1 / `scan_rate_hz` seconds from t = 0 to the end of the route, each
    from the pose at its stamp (no motion distortion). Existing outputs in `out_dir` raise
    FileExistsError unless `overwrite`, which deletes them first. `progress` None shows bars
    only on a terminal.
    """
    _check_args(speed_mps, scan_rate_hz, storage)
    out = Path(out_dir)
    bag_path = out / f'drive.{storage}'
    _prepare_out_dir(out, bag_path, overwrite)
    town = generate_town(seed, length_m, progress=progress)
    mesh_path = _write_mesh(town, out / MESH_FILE)
    trajectory = Trajectory(town.route, speed_mps)
    scan_times = _times(trajectory.duration_s, scan_rate_hz)
    npz_dir = out / NPZ_DIR if write_npz else None
    if npz_dir is not None:
        npz_dir.mkdir()
    recorder = _Recorder(town, trajectory, lidar, npz_dir)
    scans = recorder.scans(scan_times, progress)
    if write_bag:
        from noksr_ros.io.bag_writer import write_carla_bag

        odom_times = np.concatenate([
            -np.arange(round(ODOMETRY_LEAD_S * ODOMETRY_RATE_HZ), 0, -1) / ODOMETRY_RATE_HZ,
            _times(trajectory.duration_s, ODOMETRY_RATE_HZ)])
        odom = list(zip(_stamps(odom_times), trajectory.poses_at(np.maximum(odom_times, 0.0))))
        write_carla_bag(bag_path, scans, odom, lidar.t_base_sensor(), storage=storage)
    else:
        for _ in scans:
            pass
    if npz_dir is not None:
        write_drive_json(npz_dir, len(scan_times), _drive_info(
            town, lidar, speed_mps, scan_rate_hz))
    return DriveSummary(out, int(seed), len(scan_times), recorder.num_points,
                        trajectory.duration_s, len(town.mesh_faces), mesh_path, npz_dir,
                        bag_path if write_bag else None)


class _Recorder:
    """Casts the scans of a drive one at a time, writing each to the npz directory if given."""

    def __init__(self, town: Town, trajectory: Trajectory, lidar: LidarSpec,
                 npz_dir: Path | None) -> None:
        self.seed = town.seed
        self.trajectory = trajectory
        self.simulator = LidarSimulator(town.mesh_vertices, town.mesh_faces, lidar)
        self.t_base_sensor = lidar.t_base_sensor()
        self.npz_dir = npz_dir
        self.num_points = 0

    def scans(self, times: np.ndarray,
              progress: bool | None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (stamp_ns, points (N,3) float32 sensor frame, intensity (N,) float32)."""
        poses = self.trajectory.poses_at(times)
        stamps = _stamps(times)
        bar = tqdm(range(len(times)), desc='lidar scans', unit='scan', leave=False,
                   disable=None if progress is None else not progress)
        for index in bar:
            t_map_sensor = poses[index] @ self.t_base_sensor
            rng = np.random.default_rng([self.seed, _SCAN_STREAM, index])
            scan = self.simulator.scan(t_map_sensor, rng)
            if self.npz_dir is not None:
                write_scan(self.npz_dir, index, stamps[index], scan.points, scan.intensity,
                           t_map_sensor, poses[index])
            self.num_points += len(scan.points)
            yield stamps[index], scan.points, scan.intensity


def _check_args(speed_mps: float, scan_rate_hz: float, storage: str) -> None:
    """Raise ValueError naming the first invalid argument."""
    if not (math.isfinite(speed_mps) and speed_mps > 0.0):
        raise ValueError(f'simulate_drive: speed_mps must be finite and > 0, got {speed_mps!r}')
    if not (math.isfinite(scan_rate_hz) and scan_rate_hz > 0.0):
        raise ValueError(f'simulate_drive: scan_rate_hz must be finite and > 0, '
                         f'got {scan_rate_hz!r}')
    if storage not in STORAGES:
        raise ValueError(f'simulate_drive: storage must be one of {STORAGES}, got {storage!r}')


def _prepare_out_dir(out: Path, bag_path: Path, overwrite: bool) -> None:
    """Create `out`; refuse (or with `overwrite`, delete) outputs of an earlier drive."""
    out.mkdir(parents=True, exist_ok=True)
    existing = [path for path in (out / MESH_FILE, out / NPZ_DIR, bag_path) if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f'simulate_drive: {out} already holds '
                              f'{[p.name for p in existing]}; pass overwrite=True to replace')
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_mesh(town: Town, path: Path) -> Path:
    """Write the ground-truth mesh as binary PLY with open3d."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(town.mesh_vertices),
                                     o3d.utility.Vector3iVector(town.mesh_faces))
    if not o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False):
        raise OSError(f'simulate_drive: open3d could not write {path}')
    return path


def _times(duration_s: float, rate_hz: float) -> np.ndarray:
    """Sample times (K,) float64 from 0 to `duration_s` inclusive at `rate_hz`."""
    count = int(math.floor(duration_s * rate_hz + 1e-9)) + 1
    return np.arange(count, dtype=np.float64) / rate_hz


def _stamps(times: np.ndarray) -> list[int]:
    """Integer nanosecond stamps of `times`, counted from `EPOCH_NS`."""
    return [EPOCH_NS + int(round(t * 1e9)) for t in times]


def _drive_info(town: Town, lidar: LidarSpec, speed_mps: float,
                scan_rate_hz: float) -> dict:
    """The JSON-ready description of a drive stored in drive.json."""
    return {'seed': town.seed, 'length_m': town.length_m, 'speed_mps': speed_mps,
            'scan_rate_hz': scan_rate_hz, 'odometry_rate_hz': ODOMETRY_RATE_HZ,
            'odometry_lead_s': ODOMETRY_LEAD_S,
            'epoch_ns': EPOCH_NS, 'frames': {'map': 'map', 'base': 'ego_vehicle',
                                             'lidar': 'ego_vehicle/lidar'},
            'lidar': lidar.to_dict(), 'T_base_sensor': lidar.t_base_sensor().tolist(),
            'gt_mesh': MESH_FILE, 'town': town.metadata()}

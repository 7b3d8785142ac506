"""
Time PointCloud2 <-> numpy conversion on LiDAR-sized clouds.

Prints a table and writes `out/bench/pointcloud2.json` (milliseconds per call, median and p90 over
`--repeats` calls after one warm-up). Usage: python -m bench.bench_pointcloud2 [--repeats 50]
"""

import argparse
import time
from types import SimpleNamespace

import numpy as np

from bench.common import report
from noksr_ros.io.bag_writer import CarlaMessages
from noksr_ros.io.pointcloud2 import create_cloud, read_points

N_CARLA = 120_000  # a 64-channel CARLA LiDAR at 10 Hz, ~1.2 M points/s


def _header():
    return SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id='ego_vehicle/lidar')


def _msg(**kwargs):
    return SimpleNamespace(**{'header': _header(), **kwargs})


def _field(name, offset, datatype):
    return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=1)


def carla_cloud(rng, messages):
    """A CARLA-layout cloud as a rosbags message (what a bag reader gets)."""
    xyz = rng.normal(size=(N_CARLA, 3)).astype(np.float32) * 30
    intensity = rng.random(N_CARLA).astype(np.float32)
    return messages.cloud(1, 'ego_vehicle/lidar', xyz, intensity)


def rclpy_cases(xyz):
    """Cases on rclpy messages, when a ROS 2 Python install is importable."""
    try:
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import PointCloud2, PointField
        from std_msgs.msg import Header
    except ImportError:
        return {}
    def make():
        return create_cloud(Header(frame_id='lidar'), xyz, xyz[:, 0], msg_type=PointCloud2,
                            field_type=PointField)

    received = deserialize_message(serialize_message(make()), PointCloud2)
    return {'read_points rclpy 120k xyz': (lambda: read_points(received), N_CARLA),
            'create_cloud rclpy 120k': (make, N_CARLA)}


def ouster_like_cloud(rng, height=64, width=2048):
    """Organized, point_step 48 with mixed types, 16 bytes of padding per row, 1% NaN rows."""
    dtype = np.dtype({'names': ['x', 'y', 'z', 'intensity', 't', 'reflectivity', 'ring'],
                      'formats': ['<f4', '<f4', '<f4', '<f4', '<u4', '<u2', '<u2'],
                      'offsets': [0, 4, 8, 16, 20, 24, 26], 'itemsize': 48})
    records = np.zeros(height * width, dtype=dtype)
    for name in ('x', 'y', 'z', 'intensity'):
        records[name] = rng.normal(size=records.size)
    records['x'][rng.random(records.size) < 0.01] = np.nan
    rows = records.view(np.uint8).reshape(height, width * 48)
    data = np.concatenate([rows, np.zeros((height, 16), np.uint8)], axis=1).reshape(-1)
    fields = [_field('x', 0, 7), _field('y', 4, 7), _field('z', 8, 7), _field('intensity', 16, 7),
              _field('t', 20, 6), _field('reflectivity', 24, 4), _field('ring', 26, 4)]
    return _msg(height=height, width=width, fields=fields, is_bigendian=False, point_step=48,
                row_step=width * 48 + 16, data=data, is_dense=False)


def timed(call, repeats):
    """(median ms, p90 ms) of `repeats` calls after one warm-up call."""
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples)), float(np.percentile(samples, 90))


def cases(rng):
    messages = CarlaMessages()
    carla = carla_cloud(rng, messages)
    ouster = ouster_like_cloud(rng)
    xyz = rng.normal(size=(N_CARLA, 3)).astype(np.float32)
    return {
        'read_points carla 120k xyz': (lambda: read_points(carla), N_CARLA),
        'read_points carla 120k xyzi': (
            lambda: read_points(carla, ('x', 'y', 'z', 'intensity')), N_CARLA),
        'read_points organized 64x2048 xyz': (lambda: read_points(ouster), ouster.width * 64),
        'read_points organized structured': (
            lambda: read_points(ouster, ('x', 'y', 'z', 'ring'), structured=True),
            ouster.width * 64),
        'create_cloud rosbags 120k': (
            lambda: messages.cloud(1, 'lidar', xyz, xyz[:, 0]), N_CARLA),
        **rclpy_cases(xyz),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=50)
    args = parser.parse_args()
    rows = []
    for name, (call, n_points) in cases(np.random.default_rng(0)).items():
        median, p90 = timed(call, args.repeats)
        rows.append({'case': name, 'points': n_points, 'median_ms': median, 'p90_ms': p90})
    report('pointcloud2', rows, ['case', 'points', 'median_ms', 'p90_ms'],
           {'repeats': args.repeats, 'numpy': np.__version__})


if __name__ == '__main__':
    main()

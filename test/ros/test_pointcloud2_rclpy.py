"""PointCloud2 conversion on real rclpy messages (ROS 2 wheels from PyPI or a sourced distro)."""

import array

from builtin_interfaces.msg import Time
import numpy as np
import pytest

# rclpy comes with scripts/setup.sh (kilted wheels) or a sourced distro; without it these
# tests fail at import, as they should: the ROS layer is part of what CI checks.
import rclpy  # noqa: F401
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from noksr_ros.io.pointcloud2 import create_cloud, read_points

pytestmark = pytest.mark.ros


def make_cloud(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    xyz = (rng.normal(size=(n, 3)) * 30).astype(np.float32)
    intensity = rng.random(n).astype(np.float32)
    header = Header(stamp=Time(sec=1_700_000_000, nanosec=123), frame_id='ego_vehicle/lidar')
    msg = create_cloud(header, xyz, intensity, msg_type=PointCloud2, field_type=PointField)
    return msg, xyz, intensity


def test_create_cloud_builds_a_valid_rclpy_message():
    msg, xyz, intensity = make_cloud()
    assert isinstance(msg, PointCloud2)
    assert isinstance(msg.data, array.array) and msg.data.typecode == 'B'
    assert len(msg.data) == msg.row_step == 16 * len(xyz)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
        ('z', 8, PointField.FLOAT32, 1), ('intensity', 12, PointField.FLOAT32, 1)]
    result = read_points(msg, ('x', 'y', 'z', 'intensity'))
    np.testing.assert_array_equal(result.points[:, :3], xyz)
    np.testing.assert_array_equal(result.points[:, 3], intensity)
    assert result.stamp_ns == 1_700_000_000 * 10**9 + 123
    assert result.frame_id == 'ego_vehicle/lidar'


def test_serialize_deserialize_round_trip():
    msg, xyz, intensity = make_cloud(seed=1)
    raw = serialize_message(msg)
    assert len(raw) > len(msg.data)
    back = deserialize_message(raw, PointCloud2)
    assert back == msg
    result = read_points(back, ('x', 'y', 'z', 'intensity'))
    np.testing.assert_array_equal(result.points, np.column_stack([xyz, intensity]))


def test_hand_built_organized_rclpy_cloud_with_padding():
    # 2 x 3 points, x y z float64 big-endian at 0, 8, 16, point_step 28, 4 bytes of row padding
    dtype = np.dtype({'names': ['x', 'y', 'z'], 'formats': ['>f8'] * 3, 'offsets': [0, 8, 16],
                      'itemsize': 28})
    records = np.zeros(6, dtype=dtype)
    for i, name in enumerate('xyz'):
        records[name] = np.arange(6) + 10 * i
    rows = np.concatenate([records.view(np.uint8).reshape(2, 84), np.zeros((2, 4), np.uint8)], 1)
    msg = PointCloud2(header=Header(frame_id='f'), height=2, width=3, is_bigendian=True,
                      point_step=28, row_step=88, is_dense=True,
                      fields=[PointField(name=n, offset=8 * i, datatype=PointField.FLOAT64,
                                         count=1) for i, n in enumerate('xyz')])
    msg.data = array.array('B', rows.tobytes())
    back = deserialize_message(serialize_message(msg), PointCloud2)
    expected = np.column_stack([np.arange(6) + 10 * i for i in range(3)]).astype(np.float32)
    np.testing.assert_array_equal(read_points(back).points, expected)

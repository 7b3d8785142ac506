"""
The tf2 pose path of the node, exercised where tf2_ros exists (a ROS 2 distro install).

tf2_ros is not on PyPI, so with the pip wheels used in CI this module is skipped with that reason;
on a sourced Humble/Jazzy/Kilted it runs: transforms map -> lidar are broadcast on /tf, scans
follow, and the node must integrate every scan with the pose tf2 gives it.
"""

import random
import time

import numpy as np
import pytest

tf2_ros = pytest.importorskip('tf2_ros', reason='tf2_ros is not on PyPI; runs on a ROS distro')

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from node_harness import GraphProbe, NodeProcess, ros_env, write_params  # noqa: E402
from noksr_ros.io.pointcloud2 import create_cloud  # noqa: E402


def test_scans_are_integrated_with_tf_poses(tmp_path):
    domain = random.randint(150, 230)
    params = write_params(tmp_path / 'params.yaml', {'ros.pose_source': 'tf',
                                                     'ros.pose_wait_s': 2.0})
    node = NodeProcess(params, ros_env(domain, tmp_path / 'log'), tmp_path / 'node.log')
    probe = GraphProbe(domain)
    try:
        probe.spin_until(lambda: probe.diagnostics, 60, 'the node')
        assert probe.diagnostics['pose_source'] == 'tf'
        broadcaster = tf2_ros.TransformBroadcaster(probe.node)
        clouds = probe.node.create_publisher(PointCloud2, '/carla/ego_vehicle/lidar', 10)
        probe.spin_until(lambda: clouds.get_subscription_count() > 0, 20, 'the subscription')
        rng = np.random.default_rng(0)
        ground = np.c_[rng.uniform(-20, 20, (20000, 2)), np.full(20000, -2.4)].astype(np.float32)
        t0 = int(time.time()) * 10**9
        for i in range(3):
            for k in range(i * 5, i * 5 + 6):  # transforms around each scan stamp
                tf = TransformStamped()
                tf.header.stamp = Time(sec=(t0 + k * 20_000_000) // 10**9,
                                       nanosec=(t0 + k * 20_000_000) % 10**9)
                tf.header.frame_id, tf.child_frame_id = 'map', 'ego_vehicle/lidar'
                tf.transform.translation.x = 0.2 * k
                tf.transform.translation.z = 2.4
                tf.transform.rotation.w = 1.0
                broadcaster.sendTransform(tf)
            stamp = t0 + (i * 5 + 2) * 20_000_000
            header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9),
                            frame_id='ego_vehicle/lidar')
            clouds.publish(create_cloud(header, ground, msg_type=PointCloud2,
                                        field_type=PointField))
            probe.spin_for(0.3)
        probe.spin_until(lambda: probe.stat('scans_integrated') == 3, 60, 'three scans')
        assert probe.stat('drops_total') == 0
    finally:
        probe.close()
        assert node.stop() == 0, node.log()

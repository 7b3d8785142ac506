"""Recorded drives: write CARLA-like bags with write_carla_bag, read them with BagDriveReader."""

from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from scipy.spatial.transform import Rotation

from noksr_ros.config import NoksrConfig
from noksr_ros.errors import BagError
from noksr_ros.io.bag import DROP_BAD_CLOUD, DROP_NO_POSE, DROP_TOO_LARGE, BagDriveReader
from noksr_ros.io.bag_writer import ODOMETRY, POINTCLOUD2, CarlaMessages, write_carla_bag

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a realistic epoch stamp
LIDAR = '/carla/ego_vehicle/lidar'
STORAGES = ['mcap', 'sqlite3']


def true_pose(t_ns):
    """T_map_base: constant velocity and yaw rate, so linear+slerp interpolation is exact."""
    t = (t_ns - T0) / S
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler('z', 0.3 * t).as_matrix()
    pose[:3, 3] = (5.0 * t, -2.0 * t, 0.2)
    return pose


def extrinsic():
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler('xyz', [0.01, -0.02, 0.5]).as_matrix()
    pose[:3, 3] = (0.7, 0.0, 2.4)
    return pose


ODOM_STAMPS = [T0 + k * 50_000_000 for k in range(41)]  # 20 Hz for 2 s
SCAN_STAMPS = [T0 + 25_000_000 + k * 100_000_000 for k in range(20)]  # 10 Hz, between samples


def make_scans(stamps=SCAN_STAMPS, n=300):
    rng = np.random.default_rng(0)
    return [(s, rng.normal(size=(n, 3)).astype(np.float32) * 20, rng.random(n).astype(np.float32))
            for s in stamps]


def write_drive(path, storage, odom_stamps=ODOM_STAMPS, **kwargs):
    scans = make_scans()
    write_carla_bag(path, (s for s in scans), [(s, true_pose(s)) for s in odom_stamps],
                    extrinsic(), storage=storage, **kwargs)
    return scans


@pytest.fixture(scope='module', params=STORAGES)
def drive(request, tmp_path_factory):
    path = tmp_path_factory.mktemp('drive') / request.param
    return path, write_drive(path, request.param)


def test_scans_read_back_exactly(drive):
    path, scans = drive
    reader = BagDriveReader(path)
    out = list(reader)
    assert len(reader) == 20 and len(out) == 20
    assert reader.stats.scans_read == reader.stats.scans_yielded == 20
    assert reader.stats.dropped == {}
    assert reader.pose_source == 'odometry'
    for scan, (stamp, xyz, intensity) in zip(out, scans, strict=True):
        assert scan.stamp_ns == stamp and scan.frame_id == 'ego_vehicle/lidar'
        np.testing.assert_array_equal(scan.points_sensor, xyz)
        np.testing.assert_array_equal(scan.intensity, intensity)
        assert scan.points_sensor.dtype == np.float32 and scan.T_map_sensor.dtype == np.float64
        # the scan stamp lies between two odometry samples: checks interpolation and extrinsic
        np.testing.assert_allclose(scan.T_map_sensor, true_pose(stamp) @ extrinsic(), atol=1e-9)


def test_tf_fallback_gives_the_same_poses(drive):
    path, scans = drive
    for odom_topic in ('', '/not/recorded'):
        reader = BagDriveReader(path, odom_topic=odom_topic)
        assert reader.pose_source == 'tf'
        poses = [scan.T_map_sensor for scan in reader]
        np.testing.assert_allclose(poses, [true_pose(s) @ extrinsic() for s, _, _ in scans],
                                   atol=1e-9)


def test_from_config_and_lidar_topic_autoselect(drive):
    path, _ = drive
    cfg = NoksrConfig().with_overrides({'ros.lidar_topic': '', 'ingest.max_points_per_scan': 299})
    reader = BagDriveReader.from_config(path, cfg)
    assert reader.lidar_topic == LIDAR and reader.max_points == 299
    assert list(reader) == []
    assert reader.stats.dropped == {DROP_TOO_LARGE: 20}


def test_storage_file_alone_is_read(drive, tmp_path):
    path, _ = drive
    storage_file = next(p for p in path.iterdir() if p.suffix in ('.mcap', '.db3'))
    assert len(list(BagDriveReader(storage_file))) == 20
    # an interrupted recording: the directory has no metadata.yaml
    (tmp_path / 'rec').mkdir()
    (tmp_path / 'rec' / storage_file.name).write_bytes(storage_file.read_bytes())
    reader = BagDriveReader(tmp_path / 'rec')
    assert len(reader) == 20 and len(list(reader)) == 20


def test_tf_static_is_offered_transient_local(drive):
    path, _ = drive
    with Reader(path) as reader:
        topics = {c.topic: c for c in reader.connections}
        assert topics[LIDAR].msgtype == POINTCLOUD2
        assert topics['/carla/ego_vehicle/odometry'].msgtype == ODOMETRY
        assert set(topics) == {LIDAR, '/carla/ego_vehicle/odometry', '/tf', '/tf_static'}
        qos = topics['/tf_static'].ext.offered_qos_profiles
        assert [q.durability for q in qos] == [QosDurability.TRANSIENT_LOCAL]
        assert topics['/tf_static'].msgcount == 1 and topics['/tf'].msgcount == 41
        stamps = [t for _, t, _ in reader.messages()]
        assert stamps == sorted(stamps)


def test_missing_topic_lists_topics_and_types(drive):
    path, _ = drive
    with pytest.raises(BagError) as info:
        BagDriveReader(path, lidar_topic='/velodyne_points')
    message = str(info.value)
    assert "'/velodyne_points' is not in the bag" in message
    assert f'{LIDAR} (sensor_msgs/msg/PointCloud2)' in message
    assert '/tf_static (tf2_msgs/msg/TFMessage)' in message


def test_wrong_topic_type_and_no_pose_topic(drive):
    path, _ = drive
    with pytest.raises(BagError, match="'/tf' has type tf2_msgs/msg/TFMessage, expected"):
        BagDriveReader(path, lidar_topic='/tf')
    with pytest.raises(BagError, match='no poses: neither odometry topic'):
        BagDriveReader(path, odom_topic='', tf_topic='/nothing')


def test_wrong_frames_and_missing_extrinsic_are_explained(drive):
    path, _ = drive
    with pytest.raises(BagError, match='no world -> ego_vehicle pose.*map -> ego_vehicle'):
        list(BagDriveReader(path, map_frame='world'))
    with pytest.raises(BagError, match="to the LiDAR frame 'roof'.*ego_vehicle -> ego_vehicle/li"):
        list(BagDriveReader(path, lidar_frame='roof'))


def test_scans_beyond_the_pose_gap_are_dropped(tmp_path):
    # odometry missing between 0.6 s and 1.4 s, and ending at 1.8 s
    stamps = [s for s in ODOM_STAMPS if not (T0 + 6 * S // 10 < s < T0 + 14 * S // 10)
              and s <= T0 + 18 * S // 10]
    write_drive(tmp_path / 'gap', 'mcap', odom_stamps=stamps)
    reader = BagDriveReader(tmp_path / 'gap', max_pose_gap_s=0.1)
    kept = [scan.stamp_ns for scan in reader]
    gap_free = [s for s in SCAN_STAMPS if s <= T0 + 6 * S // 10 + S // 10
                or T0 + 14 * S // 10 - S // 10 <= s <= T0 + 18 * S // 10]
    assert kept == gap_free
    assert reader.stats.dropped == {DROP_NO_POSE: 20 - len(gap_free)}
    assert 'no pose within 0.1 s' in reader.stats.last_error[DROP_NO_POSE]


def write_custom_bag(path, clouds, extrinsic_topic='/tf_static', garbage_odom_at=None):
    """A bag with arbitrary PointCloud2 topics plus the odometry and extrinsic of the drive."""
    msgs = CarlaMessages()
    store = msgs.typestore
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        odom = writer.add_connection('/carla/ego_vehicle/odometry', ODOMETRY, typestore=store)
        static = writer.add_connection(extrinsic_topic, 'tf2_msgs/msg/TFMessage', typestore=store)
        topics = {}
        writer.write(static, T0, msgs.serialize(
            msgs.tf_message(T0, extrinsic(), 'ego_vehicle', 'ego_vehicle/lidar')))
        for s in ODOM_STAMPS:
            raw = msgs.serialize(msgs.odometry(s, true_pose(s), 'map', 'ego_vehicle'))
            writer.write(odom, s, b'\x00\x01\x00\x00bad' if s == garbage_odom_at else raw)
        for topic, stamp, cloud in clouds:
            if topic not in topics:
                topics[topic] = writer.add_connection(topic, POINTCLOUD2, typestore=store)
            raw = cloud if isinstance(cloud, bytes) else msgs.serialize(cloud)
            writer.write(topics[topic], stamp, raw)


def test_ambiguous_lidar_topic_lists_candidates(tmp_path):
    msgs = CarlaMessages()
    cloud = msgs.cloud(SCAN_STAMPS[0], 'ego_vehicle/lidar', np.zeros((2, 3)), None)
    write_custom_bag(tmp_path / 'two', [('/front', SCAN_STAMPS[0], cloud),
                                        ('/rear', SCAN_STAMPS[0], cloud)])
    with pytest.raises(BagError, match='several .*PointCloud2 topics.*: /front, /rear'):
        BagDriveReader(tmp_path / 'two', lidar_topic='')
    assert len(list(BagDriveReader(tmp_path / 'two', lidar_topic='/rear'))) == 1


def test_malformed_clouds_are_dropped_and_counted(tmp_path):
    msgs = CarlaMessages()
    xyz = np.ones((4, 3), np.float32)
    good = [msgs.cloud(s, 'ego_vehicle/lidar', xyz * k, None) for k, s in enumerate(SCAN_STAMPS)]
    good[3].row_step = 10  # smaller than width * point_step
    good[5].fields = good[5].fields[1:]  # no x field
    good[7].data = good[7].data[:-3]  # truncated data
    good[8].point_step = 0
    good[9].data[:16] = np.frombuffer(np.full(4, np.nan, np.float32).tobytes(), np.uint8)
    good[10].fields = good[10].fields[:3]  # no intensity: valid, read as xyz only
    clouds = [(LIDAR, c.header.stamp.sec * S + c.header.stamp.nanosec, c) for c in good]
    clouds.insert(12, (LIDAR, SCAN_STAMPS[11] + 1, b'\x00\x01\x00\x00garbage'))
    write_custom_bag(tmp_path / 'bad', clouds)
    reader = BagDriveReader(tmp_path / 'bad')
    out = list(reader)
    assert [s.stamp_ns for s in out] == [s for i, s in enumerate(SCAN_STAMPS)
                                         if i not in (3, 5, 7, 8)]
    assert reader.stats.dropped == {DROP_BAD_CLOUD: 5} and reader.stats.scans_read == 21
    assert 'undecodable message' in reader.stats.last_error[DROP_BAD_CLOUD]
    assert reader.stats.points_nonfinite == 1
    assert out[5].points_sensor.shape == (3, 3) and out[5].intensity.shape == (3,)
    assert out[6].points_sensor.shape == (4, 3) and out[6].intensity is None


def test_extrinsic_published_on_dynamic_tf_is_found(tmp_path):
    msgs = CarlaMessages()
    scans = make_scans(SCAN_STAMPS[:6], n=50)
    write_custom_bag(tmp_path / 'dyn', [(LIDAR, s, msgs.cloud(s, 'ego_vehicle/lidar', xyz, i))
                                        for s, xyz, i in scans], extrinsic_topic='/tf',
                     garbage_odom_at=ODOM_STAMPS[3])
    reader = BagDriveReader(tmp_path / 'dyn')
    out = list(reader)
    assert [s.stamp_ns for s in out] == SCAN_STAMPS[:6]
    assert reader.stats.undecodable_pose_messages == 1  # skipped; its neighbours interpolate
    for scan, (stamp, xyz, _) in zip(out, scans, strict=True):
        np.testing.assert_array_equal(scan.points_sensor, xyz)
        np.testing.assert_allclose(scan.T_map_sensor, true_pose(stamp) @ extrinsic(), atol=1e-9)


def test_truncated_mcap_raises_bag_error(tmp_path):
    write_drive(tmp_path / 'cut', 'mcap')
    mcap = next((tmp_path / 'cut').glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagError, match='cannot open bag .*cut.*mcap recover'):
        list(BagDriveReader(tmp_path / 'cut'))


def test_garbage_sqlite3_raises_bag_error(tmp_path):
    write_drive(tmp_path / 'junk', 'sqlite3')
    db3 = next((tmp_path / 'junk').glob('*.db3'))
    db3.write_bytes(b'not a database' * 100)
    with pytest.raises(BagError, match='cannot open bag .*junk.*not a database'):
        list(BagDriveReader(tmp_path / 'junk'))


def test_missing_path_raises_bag_error(tmp_path):
    with pytest.raises(BagError, match='does not exist'):
        BagDriveReader(tmp_path / 'nothing')


def test_writer_refuses_existing_path_and_unknown_storage(tmp_path):
    (tmp_path / 'exists').mkdir()
    with pytest.raises(BagError, match='exists'):
        write_carla_bag(tmp_path / 'exists', [], [], np.eye(4))
    with pytest.raises(ValueError, match='storage must be one of'):
        write_carla_bag(tmp_path / 'x', [], [], np.eye(4), storage='rosbag1')
    with pytest.raises(ValueError, match='not rigid'):
        write_carla_bag(tmp_path / 'y', [], [], np.diag([2.0, 1, 1, 1]))


def test_writer_streams_scans_lazily(tmp_path):
    produced = []

    def scans():
        for stamp, xyz, intensity in make_scans(SCAN_STAMPS[:5]):
            produced.append(stamp)
            yield stamp, xyz, intensity

    written = write_carla_bag(tmp_path / 'lazy', scans(), [(s, true_pose(s)) for s in ODOM_STAMPS],
                              extrinsic(), storage='sqlite3', lidar_topic='/lidar',
                              lidar_frame='velodyne')
    assert (written.n_scans, written.n_odometry) == (5, 41) and produced == SCAN_STAMPS[:5]
    out = list(BagDriveReader(written.path, lidar_topic='/lidar'))
    assert [s.frame_id for s in out] == ['velodyne'] * 5


def test_io_modules_import_without_rclpy():
    code = ('import sys; sys.modules["rclpy"] = None\n'
            'import noksr_ros.io.pointcloud2, noksr_ros.io.transforms, noksr_ros.io.bag\n'
            'import noksr_ros.io.bag_writer\n'
            'assert not any(m.startswith(("sensor_msgs", "rclpy")) and sys.modules[m] '
            'for m in sys.modules)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert result.returncode == 0, result.stderr

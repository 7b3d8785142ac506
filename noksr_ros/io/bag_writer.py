"""
Write a ROS 2 bag laid out like a CARLA ROS bridge recording (rosbags, no ROS install).

Topics and types: the LiDAR as `sensor_msgs/msg/PointCloud2` (x, y, z, intensity float32,
point_step 16, unorganized, in the LiDAR frame), `nav_msgs/msg/Odometry` (frame map, child
ego_vehicle), `/tf` (`tf2_msgs/msg/TFMessage`, map -> ego_vehicle at each odometry sample) and
`/tf_static` (ego_vehicle -> ego_vehicle/lidar, once, offered transient-local like a latched
static broadcaster). Every message is logged at its header stamp, in time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from noksr_ros.errors import BagError
from noksr_ros.io.pointcloud2 import create_cloud
from noksr_ros.io.transforms import check_rigid, matrix_to_pose

POINTCLOUD2 = 'sensor_msgs/msg/PointCloud2'
ODOMETRY = 'nav_msgs/msg/Odometry'
TFMESSAGE = 'tf2_msgs/msg/TFMessage'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}

_INFINITE = QosTime(sec=2147483647, nsec=4294967295)  # rmw's "no deadline/lifespan"
#: What a tf2 static broadcaster offers: reliable, transient local, keep last 1.
STATIC_TF_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
                    QosDurability.TRANSIENT_LOCAL, _INFINITE, _INFINITE, QosLiveliness.AUTOMATIC,
                    _INFINITE, False)

Scan = tuple[int, np.ndarray, 'np.ndarray | None']


@dataclass(frozen=True)
class WrittenBag:
    """Summary of a written bag: its directory and message counts."""

    path: Path
    n_scans: int
    n_odometry: int


@cache
def default_typestore() -> Any:
    """The rosbags ROS 2 Humble typestore, built once (its message classes are shared)."""
    return get_typestore(Stores.ROS2_HUMBLE)


class CarlaMessages:
    """Builds the rosbags message objects of a CARLA drive from numpy data."""

    def __init__(self, typestore: Any = None) -> None:
        """Use `typestore` (default: rosbags' ROS 2 Humble store) for classes and CDR."""
        self.typestore = typestore or default_typestore()
        self._t = self.typestore.types

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """`std_msgs/Header` at integer nanoseconds."""
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        stamp = self._t['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
        return self._t['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)

    def cloud(self, stamp_ns: int, frame_id: str, xyz: np.ndarray,
              intensity: np.ndarray | None) -> Any:
        """PointCloud2 of (N, 3) points in `frame_id` with (N,) intensity (None: zeros)."""
        return create_cloud(self.header(stamp_ns, frame_id), xyz, intensity,
                            msg_type=self._t[POINTCLOUD2],
                            field_type=self._t['sensor_msgs/msg/PointField'])

    def _pose(self, transform: np.ndarray) -> Any:
        translation, quat = matrix_to_pose(transform)
        return self._t['geometry_msgs/msg/Pose'](
            position=self._t['geometry_msgs/msg/Point'](*map(float, translation)),
            orientation=self._t['geometry_msgs/msg/Quaternion'](*map(float, quat)))

    def odometry(self, stamp_ns: int, pose: np.ndarray, parent: str, child: str) -> Any:
        """`nav_msgs/Odometry` with pose T_parent_child (4, 4), zero twist and covariances."""
        vector = self._t['geometry_msgs/msg/Vector3']
        twist = self._t['geometry_msgs/msg/Twist'](linear=vector(0.0, 0.0, 0.0),
                                                   angular=vector(0.0, 0.0, 0.0))
        return self._t[ODOMETRY](
            header=self.header(stamp_ns, parent), child_frame_id=child,
            pose=self._t['geometry_msgs/msg/PoseWithCovariance'](
                pose=self._pose(pose), covariance=np.zeros(36)),
            twist=self._t['geometry_msgs/msg/TwistWithCovariance'](
                twist=twist, covariance=np.zeros(36)))

    def tf_message(self, stamp_ns: int, pose: np.ndarray, parent: str, child: str) -> Any:
        """`tf2_msgs/TFMessage` holding one transform T_parent_child (4, 4)."""
        translation, quat = matrix_to_pose(pose)
        transform = self._t['geometry_msgs/msg/Transform'](
            translation=self._t['geometry_msgs/msg/Vector3'](*map(float, translation)),
            rotation=self._t['geometry_msgs/msg/Quaternion'](*map(float, quat)))
        stamped = self._t['geometry_msgs/msg/TransformStamped'](
            header=self.header(stamp_ns, parent), child_frame_id=child, transform=transform)
        return self._t[TFMESSAGE](transforms=[stamped])

    def serialize(self, msg: Any) -> memoryview:
        """CDR bytes of a message built here."""
        return self.typestore.serialize_cdr(msg, msg.__msgtype__)


def write_carla_bag(path: str | Path, scans: Iterable[Scan],
                    odom: Sequence[tuple[int, np.ndarray]], T_base_sensor: np.ndarray,  # noqa: N803
                    *, storage: str = 'mcap', lidar_topic: str = '/carla/ego_vehicle/lidar',
                    odom_topic: str = '/carla/ego_vehicle/odometry', map_frame: str = 'map',
                    base_frame: str = 'ego_vehicle', lidar_frame: str = 'ego_vehicle/lidar',
                    tf_topic: str = '/tf', tf_static_topic: str = '/tf_static') -> WrittenBag:
    """
    Write a CARLA-bridge-like drive to a new rosbag2 directory, streaming the scans.

    Args:
        path: bag directory to create (must not exist).
        scans: iterable of (stamp_ns int, xyz (N, 3) float32 in the LiDAR frame, intensity (N,)
            float32 or None), in increasing stamp order; consumed one at a time.
        odom: (stamp_ns, T_map_base (4, 4)) vehicle poses; written as Odometry and /tf.
        T_base_sensor: (4, 4) LiDAR extrinsic, written once on /tf_static.
        storage: 'mcap' or 'sqlite3'.
        lidar_topic: PointCloud2 topic.
        odom_topic: Odometry topic.
        map_frame: fixed frame of the poses (Odometry header, /tf parent).
        base_frame: vehicle frame (Odometry child, /tf child, /tf_static parent).
        lidar_frame: frame of the clouds (/tf_static child).
        tf_topic: dynamic transform topic.
        tf_static_topic: static transform topic.

    Returns:
        The bag directory and how many scans and odometry messages were written.

    Raises:
        ValueError: unknown storage or a non-rigid transform.
        BagError: the bag cannot be created (e.g. the path exists).
    """
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
    T_base_sensor = check_rigid(T_base_sensor)  # noqa: N806
    odom_sorted = sorted(((int(s), check_rigid(t)) for s, t in odom), key=lambda item: item[0])
    scan_iter = iter(scans)
    first = next(scan_iter, None)
    starts = [odom_sorted[0][0]] if odom_sorted else []
    starts += [int(first[0])] if first is not None else []
    scan_iter = itertools.chain([first] if first is not None else [], scan_iter)
    msgs = CarlaMessages()
    try:
        with Writer(Path(path), version=9, storage_plugin=STORAGES[storage]) as writer:
            topics = _DriveTopics(writer, msgs, lidar_topic, odom_topic, tf_topic,
                                  tf_static_topic)
            topics.static(min(starts, default=0), T_base_sensor, base_frame, lidar_frame)
            n_scans = topics.merge(scan_iter, odom_sorted, map_frame, base_frame, lidar_frame)
    except WriterError as exc:
        raise BagError(f'cannot write bag {path}: {exc}') from exc
    return WrittenBag(Path(path), n_scans, len(odom_sorted))


class _DriveTopics:
    """The four connections of a drive and the time-ordered writing of its messages."""

    def __init__(self, writer: Writer, msgs: CarlaMessages, lidar_topic: str, odom_topic: str,
                 tf_topic: str, tf_static_topic: str) -> None:
        ts = msgs.typestore
        self.writer, self.msgs = writer, msgs
        self.lidar = writer.add_connection(lidar_topic, POINTCLOUD2, typestore=ts)
        self.odom = writer.add_connection(odom_topic, ODOMETRY, typestore=ts)
        self.tf = writer.add_connection(tf_topic, TFMESSAGE, typestore=ts)
        self.tf_static = writer.add_connection(tf_static_topic, TFMESSAGE, typestore=ts,
                                               offered_qos_profiles=[STATIC_TF_QOS])

    def _write(self, connection: Any, stamp_ns: int, msg: Any) -> None:
        self.writer.write(connection, stamp_ns, self.msgs.serialize(msg))

    def static(self, stamp_ns: int, extrinsic: np.ndarray, base: str, lidar: str) -> None:
        self._write(self.tf_static, stamp_ns,
                    self.msgs.tf_message(stamp_ns, extrinsic, base, lidar))

    def _pose(self, stamp_ns: int, pose: np.ndarray, map_frame: str, base: str) -> None:
        self._write(self.odom, stamp_ns, self.msgs.odometry(stamp_ns, pose, map_frame, base))
        self._write(self.tf, stamp_ns, self.msgs.tf_message(stamp_ns, pose, map_frame, base))

    def merge(self, scans: Iterator[Scan], odom: list[tuple[int, np.ndarray]], map_frame: str,
              base: str, lidar: str) -> int:
        """Write scans and poses interleaved by stamp; returns the number of scans."""
        next_pose, n_scans = 0, 0
        for stamp_ns, xyz, intensity in scans:
            stamp_ns = int(stamp_ns)
            while next_pose < len(odom) and odom[next_pose][0] <= stamp_ns:
                self._pose(*odom[next_pose], map_frame, base)
                next_pose += 1
            self._write(self.lidar, stamp_ns, self.msgs.cloud(stamp_ns, lidar, xyz, intensity))
            n_scans += 1
        for pose in odom[next_pose:]:
            self._pose(*pose, map_frame, base)
        return n_scans

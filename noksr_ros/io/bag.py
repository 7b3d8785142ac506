"""
Read a recorded drive (ROS 2 bag, MCAP or sqlite3) as posed LiDAR scans, with rosbags only.

Each PointCloud2 on the LiDAR topic becomes a `DriveScan` posed in the map frame at its header
stamp: T_map_sensor = T_map_base(stamp) @ T_base_sensor. T_map_base comes from the odometry topic
(frame map, child base), or from map -> base on /tf when the bag has no odometry topic; it is
interpolated between samples and never extrapolated. T_base_sensor comes from /tf_static (chains
of static transforms are followed; the first /tf sample is the fallback for a sensor transform
published as dynamic). Scans without a pose, malformed or over the size caps are dropped and
counted in `stats`; they never stop the iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from noksr_ros.config import NoksrConfig
from noksr_ros.errors import BagError, PointCloudError
from noksr_ros.io.bag_writer import ODOMETRY, POINTCLOUD2, TFMESSAGE, default_typestore
from noksr_ros.io.pointcloud2 import CloudReadResult, cloud_field_names, read_points, stamp_to_ns
from noksr_ros.io.transforms import PoseTrack, compose, invert, pose_to_matrix

DROP_NO_POSE = 'no_pose'
DROP_POSE_JUMP = 'pose_jump'
DROP_BAD_CLOUD = 'bad_cloud'
DROP_TOO_LARGE = 'too_large'
_CDR_SLACK_BYTES = 1 << 16  # header, frame id and field table around the point data


@dataclass(frozen=True)
class DriveScan:
    """
    One LiDAR scan of a drive, posed in the map frame.

    `points_sensor` (N, 3) float32 metres in the sensor frame `frame_id`, finite only;
    `intensity` (N,) float32 or None when the cloud has no intensity field; `T_map_sensor`
    (4, 4) float64 maps sensor-frame points to the map frame at `stamp_ns` (header stamp, ns).
    """

    stamp_ns: int
    points_sensor: np.ndarray
    intensity: np.ndarray | None
    T_map_sensor: np.ndarray
    frame_id: str


@dataclass
class DriveReadStats:
    """Counts of one pass over a bag; `dropped` maps a reason to the number of scans dropped."""

    scans_read: int = 0
    scans_yielded: int = 0
    points_nonfinite: int = 0
    undecodable_pose_messages: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def drop(self, reason: str, detail: str) -> None:
        """Count one dropped scan and remember why."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_error[reason] = detail


class BagDriveReader:
    """Iterate a recorded drive as `DriveScan`s; `len()` is the number of LiDAR messages."""

    def __init__(self, path: str | Path, *, lidar_topic: str = '/carla/ego_vehicle/lidar',
                 odom_topic: str = '/carla/ego_vehicle/odometry', tf_topic: str = '/tf',
                 tf_static_topic: str = '/tf_static', map_frame: str = 'map',
                 base_frame: str = 'ego_vehicle', lidar_frame: str = '',
                 max_pose_gap_s: float = 0.5, max_pose_speed_mps: float = np.inf,
                 max_pose_turn_dps: float = np.inf, max_points: int | None = None,
                 max_bytes: int | None = None) -> None:
        """
        Open the bag's metadata and choose its topics.

        Args:
            path: bag directory, or a single .mcap / .db3 file.
            lidar_topic: PointCloud2 topic; '' picks the only PointCloud2 topic of the bag.
            odom_topic: nav_msgs/Odometry topic; '' or absent: map -> base from `tf_topic`.
            tf_topic: dynamic transforms.
            tf_static_topic: static transforms (the sensor extrinsic).
            map_frame: fixed frame of the poses.
            base_frame: vehicle frame (child frame of the odometry).
            lidar_frame: sensor frame; '' uses each cloud's header.frame_id.
            max_pose_gap_s: scans farther than this from the nearest pose sample are dropped.
            max_pose_speed_mps: pose samples farther apart than this speed allows are a jump;
                scans between them are dropped.
            max_pose_turn_dps: the same for rotation (degrees per second).
            max_points: scans with more points are dropped (None: no cap).
            max_bytes: scans with a larger data buffer are dropped (None: no cap).

        Raises:
            BagError: unreadable bag, missing or ambiguous topic, wrong topic type.
        """
        self.path = Path(path)
        self.tf_topic, self.tf_static_topic = tf_topic, tf_static_topic
        self.map_frame, self.base_frame = _frame(map_frame), _frame(base_frame)
        self.lidar_frame = _frame(lidar_frame)
        self.max_pose_gap_s = max_pose_gap_s
        self.pose_limits = (max_pose_speed_mps, max_pose_turn_dps)
        self.max_points, self.max_bytes = max_points, max_bytes
        self._typestore = default_typestore()
        with open_bag(self.path) as reader:
            self._topics = {name: info.msgtype or '?' for name, info in reader.topics.items()}
            counts = {name: info.msgcount for name, info in reader.topics.items()}
        self.lidar_topic = _choose_lidar_topic(self._topics, lidar_topic)
        self.pose_source, self.pose_topic = _choose_pose_topic(self._topics, odom_topic, tf_topic)
        self._n_scans = int(counts[self.lidar_topic])
        self.stats = DriveReadStats()

    @classmethod
    def from_config(cls, path: str | Path, cfg: NoksrConfig) -> BagDriveReader:
        """Reader with topic/frame names from `cfg.ros` and size caps from `cfg.ingest`."""
        ros = cfg.ros
        return cls(path, lidar_topic=ros.lidar_topic, odom_topic=ros.odom_topic,
                   tf_topic=ros.tf_topic, tf_static_topic=ros.tf_static_topic,
                   map_frame=ros.map_frame, base_frame=ros.base_frame,
                   lidar_frame=ros.lidar_frame, max_pose_gap_s=ros.max_pose_gap_s,
                   max_pose_speed_mps=ros.max_pose_speed_mps,
                   max_pose_turn_dps=ros.max_pose_turn_dps,
                   max_points=cfg.ingest.max_points_per_scan,
                   max_bytes=cfg.ingest.max_scan_bytes)

    def __len__(self) -> int:
        """Number of messages on the LiDAR topic (before any scan is dropped)."""
        return self._n_scans

    def __iter__(self) -> Iterator[DriveScan]:
        """Scans in bag order; resets `stats` and counts every dropped scan there."""
        self.stats = DriveReadStats()
        with open_bag(self.path) as reader:
            track = self._pose_track(reader)
            edges = _transform_edges(self._deserialized(reader, self.tf_static_topic))
            extrinsics = _Extrinsics(edges, self.base_frame, self._dynamic_edges)
            for connection, raw in self._raw(reader, self.lidar_topic):
                cloud = self._decode(connection.msgtype, raw)
                scan = None if cloud is None else self._posed(cloud, track, extrinsics)
                if scan is not None:
                    self.stats.scans_yielded += 1
                    yield scan

    def _raw(self, reader: Reader, topic: str) -> Iterator[tuple[Any, bytes]]:
        """(connection, CDR bytes) of every message on `topic`; damage raises BagError."""
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            return
        messages = reader.messages(connections=connections)
        while True:
            try:
                connection, _, raw = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # rosbags raises many types for a damaged file
                raise BagError(f'bag {self.path} is damaged (reading {topic}): {exc}') from exc
            yield connection, raw

    def _deserialized(self, reader: Reader, topic: str) -> Iterator[Any]:
        """Deserialized messages of a small topic (poses, transforms); garbled ones skipped."""
        for connection, raw in self._raw(reader, topic):
            try:
                msg = self._typestore.deserialize_cdr(raw, connection.msgtype)
            except Exception:  # one garbled message must not end the drive; counted instead
                self.stats.undecodable_pose_messages += 1
                continue
            yield msg

    def _pose_track(self, reader: Reader) -> PoseTrack:
        """T_map_base samples of the bag as a PoseTrack."""
        msgs = self._deserialized(reader, self.pose_topic)
        if self.pose_source == 'odometry':
            samples = (_odometry_sample(m) for m in msgs)
        else:
            samples = (s for m in msgs for s in _tf_samples(m))
        stamps, poses, seen = [], [], set()
        for stamp_ns, parent, child, pose in samples:
            if (parent, child) == (self.map_frame, self.base_frame):
                stamps.append(stamp_ns)
                poses.append(pose)
            else:
                seen.add(f'{parent} -> {child}')
        if not stamps:
            raise BagError(
                f'no {self.map_frame} -> {self.base_frame} pose on {self.pose_topic} '
                f'({self.pose_source}); transforms seen: {", ".join(sorted(seen)) or "none"}; '
                'set ros.map_frame / ros.base_frame to match')
        return PoseTrack(np.array(stamps, dtype=np.int64), np.stack(poses), self.max_pose_gap_s,
                         *self.pose_limits)

    def _dynamic_edges(self) -> dict[str, tuple[str, np.ndarray]]:
        """First sample of every transform on the /tf topic (fallback for sensor extrinsics)."""
        if self.tf_topic not in self._topics:
            return {}
        with open_bag(self.path) as reader:  # its own reader: the scan iteration is under way
            return _transform_edges(self._deserialized(reader, self.tf_topic))

    def _decode(self, msgtype: str, raw: bytes) -> CloudReadResult | None:
        """One LiDAR message -> its finite points, or None after counting why it was dropped."""
        self.stats.scans_read += 1
        if self.max_bytes is not None and len(raw) > self.max_bytes + _CDR_SLACK_BYTES:
            self.stats.drop(DROP_TOO_LARGE, f'message of {len(raw)} bytes')
            return None
        try:
            msg = self._typestore.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # a truncated or garbled message is dropped, never fatal
            self.stats.drop(DROP_BAD_CLOUD, f'undecodable message: {exc}')
            return None
        n_points, n_bytes = int(msg.height) * int(msg.width), len(msg.data)
        if ((self.max_points is not None and n_points > self.max_points)
                or (self.max_bytes is not None and n_bytes > self.max_bytes)):
            self.stats.drop(DROP_TOO_LARGE, f'{n_points} points, {n_bytes} bytes')
            return None
        try:
            has_intensity = 'intensity' in cloud_field_names(msg)
            return read_points(msg, ('x', 'y', 'z', 'intensity') if has_intensity else
                               ('x', 'y', 'z'))
        except PointCloudError as exc:
            self.stats.drop(DROP_BAD_CLOUD, str(exc))
            return None

    def _posed(self, cloud: CloudReadResult, track: PoseTrack,
               extrinsics: _Extrinsics) -> DriveScan | None:
        """Attach T_map_sensor at the cloud's stamp, or None (counted) without a pose."""
        query = track.at(np.array([cloud.stamp_ns]))
        if query.jump[0]:
            self.stats.drop(DROP_POSE_JUMP, f'the pose jumps around stamp {cloud.stamp_ns} ns '
                                            '(faster than ros.max_pose_speed_mps / turn_dps)')
            return None
        if not query.valid[0]:
            self.stats.drop(DROP_NO_POSE, f'no pose within {self.max_pose_gap_s} s of stamp '
                                          f'{cloud.stamp_ns} ns')
            return None
        frame_id = self.lidar_frame or _frame(cloud.frame_id)
        self.stats.points_nonfinite += cloud.n_dropped_nonfinite
        points = cloud.points
        return DriveScan(cloud.stamp_ns, np.ascontiguousarray(points[:, :3]),
                         points[:, 3].copy() if points.shape[1] == 4 else None,
                         compose(query.poses[0], extrinsics.get(frame_id)), frame_id)


def _frame(name: str) -> str:
    """Frame ids without a leading slash (ROS 1 style names appear in converted bags)."""
    return name.lstrip('/')


def _storage_path(path: Path) -> Path:
    """The bag directory, or its only storage file when metadata.yaml is missing."""
    if not path.is_dir() or (path / 'metadata.yaml').exists():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix in ('.mcap', '.db3'))
    # an interrupted `ros2 bag record` leaves the storage file without metadata.yaml
    return files[0] if len(files) == 1 else path


@contextmanager
def open_bag(path: Path) -> Iterator[Reader]:
    """An open rosbags Reader; every failure to open is a BagError naming the path."""
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    try:
        reader = Reader(_storage_path(path))
        reader.open()
    except Exception as exc:  # rosbags and its storages raise many types for damaged files
        raise BagError(f'cannot open bag {path}: {exc} (an interrupted recording may need '
                       '`ros2 bag reindex` or `mcap recover`)') from exc
    try:
        yield reader
    finally:
        reader.close()


def _topic_list(topics: dict[str, str]) -> str:
    return ', '.join(f'{name} ({msgtype})' for name, msgtype in sorted(topics.items())) or 'none'


def _choose_lidar_topic(topics: dict[str, str], wanted: str) -> str:
    clouds = sorted(name for name, msgtype in topics.items() if msgtype == POINTCLOUD2)
    if wanted:
        if wanted not in topics:
            raise BagError(f'LiDAR topic {wanted!r} is not in the bag; topics: '
                           f'{_topic_list(topics)}')
        if topics[wanted] != POINTCLOUD2:
            raise BagError(f'LiDAR topic {wanted!r} has type {topics[wanted]}, expected '
                           f'{POINTCLOUD2}')
        return wanted
    if len(clouds) == 1:
        return clouds[0]
    if not clouds:
        raise BagError(f'the bag has no {POINTCLOUD2} topic; topics: {_topic_list(topics)}')
    raise BagError(f'several {POINTCLOUD2} topics, set ros.lidar_topic to one of: '
                   f'{", ".join(clouds)}')


def _choose_pose_topic(topics: dict[str, str], odom_topic: str,
                       tf_topic: str) -> tuple[str, str]:
    """('odometry' | 'tf', topic): the odometry topic if present, else the /tf topic."""
    choices = (('odometry', odom_topic, ODOMETRY), ('tf', tf_topic, TFMESSAGE))
    for source, topic, msgtype in choices:
        if topic and topic in topics:
            if topics[topic] != msgtype:
                raise BagError(f'{source} topic {topic!r} has type {topics[topic]}, expected '
                               f'{msgtype}')
            return source, topic
    raise BagError(f'no poses: neither odometry topic {odom_topic!r} nor tf topic {tf_topic!r} '
                   f'is in the bag; topics: {_topic_list(topics)}')


def _matrix(translation: Any, rotation: Any) -> np.ndarray:
    """(4, 4) float64 from geometry_msgs Vector3/Point + Quaternion; BagError if invalid."""
    try:
        return pose_to_matrix((translation.x, translation.y, translation.z),
                              (rotation.x, rotation.y, rotation.z, rotation.w))
    except ValueError as exc:
        raise BagError(f'invalid transform in the bag: {exc}') from exc


def _odometry_sample(msg: Any) -> tuple[int, str, str, np.ndarray]:
    pose = msg.pose.pose
    return (stamp_to_ns(msg.header.stamp), _frame(msg.header.frame_id),
            _frame(msg.child_frame_id), _matrix(pose.position, pose.orientation))


def _tf_samples(msg: Any) -> Iterator[tuple[int, str, str, np.ndarray]]:
    for t in msg.transforms:
        yield (stamp_to_ns(t.header.stamp), _frame(t.header.frame_id), _frame(t.child_frame_id),
               _matrix(t.transform.translation, t.transform.rotation))


def _transform_edges(msgs: Iterator[Any]) -> dict[str, tuple[str, np.ndarray]]:
    """Child frame -> (parent frame, T_parent_child) from TFMessages; first sample wins."""
    edges: dict[str, tuple[str, np.ndarray]] = {}
    for msg in msgs:
        for _, parent, child, pose in _tf_samples(msg):
            edges.setdefault(child, (parent, pose))
    return edges


class _Extrinsics:
    """T_base_sensor per sensor frame from a static transform tree, cached."""

    def __init__(self, edges: dict[str, tuple[str, np.ndarray]], base_frame: str,
                 fallback: Any) -> None:
        self.edges, self.base_frame, self._fallback = edges, base_frame, fallback
        self._cache: dict[str, np.ndarray] = {base_frame: np.eye(4)}
        self._fallback_used = False

    def get(self, frame: str) -> np.ndarray:
        """(4, 4) T_base_frame; BagError listing the known transforms when there is no chain."""
        if frame not in self._cache:
            found = _chain(self.edges, self.base_frame, frame)
            if found is None and not self._fallback_used:
                self._fallback_used = True
                self.edges = {**self._fallback(), **self.edges}
                found = _chain(self.edges, self.base_frame, frame)
            if found is None:
                known = ', '.join(f'{p} -> {c}' for c, (p, _) in sorted(self.edges.items()))
                raise BagError(f'no transform chain from {self.base_frame!r} to the LiDAR frame '
                               f'{frame!r} on the static (or first dynamic) transforms; known: '
                               f'{known or "none"}; set ros.lidar_frame / ros.base_frame')
            self._cache[frame] = found
        return self._cache[frame]


def _to_root(edges: dict[str, tuple[str, np.ndarray]], frame: str) -> tuple[str, np.ndarray]:
    """Walk parents from `frame`: (root frame, T_root_frame)."""
    pose, seen = np.eye(4), {frame}
    while frame in edges:
        parent, pose_parent_frame = edges[frame]
        pose, frame = pose_parent_frame @ pose, parent
        if frame in seen:
            raise BagError(f'the transform tree has a cycle through {frame!r}')
        seen.add(frame)
    return frame, pose


def _chain(edges: dict[str, tuple[str, np.ndarray]], target: str,
           source: str) -> np.ndarray | None:
    """T_target_source through a common root of the tree, or None if they are not connected."""
    root_t, pose_root_target = _to_root(edges, target)
    root_s, pose_root_source = _to_root(edges, source)
    if root_t != root_s:
        return None
    return compose(invert(pose_root_target), pose_root_source)

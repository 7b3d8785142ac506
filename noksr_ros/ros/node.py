"""
The `noksr` ROS 2 node: PointCloud2 in, `/noksr/mesh` and `/noksr/mesh_segments` out.

A thin shell: callbacks only decode and enqueue (LivePipeline.submit); the worker thread of the
pipeline runs the model; timers here publish changed segment meshes and diagnostics from the
pipeline's cache, and services act on that cache. Poses come from tf2_ros (when importable),
odometry or a TransformStamped topic (`ros.pose_source`).
"""

from __future__ import annotations

from dataclasses import replace
import signal
import sys
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from noksr_ros.allocator import process_memory, tune_allocator
from noksr_ros.config import NoksrConfig
from noksr_ros.errors import NoksrError, PointCloudError
from noksr_ros.io.pointcloud2 import read_points, stamp_to_ns
from noksr_ros.io.transforms import compose, pose_to_matrix
from noksr_ros.live import drops as reasons
from noksr_ros.live.drops import DropCounter
from noksr_ros.live.pipeline import LivePipeline, LiveScan
from noksr_ros.live.pose_buffer import OK, UNKNOWN, WAIT, PoseBuffer, PoseLookup
from noksr_ros.offline import model_from_config
from noksr_ros.ros.interface import CLEAR_MAP, DIAGNOSTICS_TOPIC, PUBLISH_MAP, SAVE_MESH
from noksr_ros.ros.marker_cdr import group_for_size, installed_layout_is_humble, marker_array_cdr
from noksr_ros.ros.mesh_markers import MarkerIds, change_markers
from noksr_ros.ros.params import accept_runtime_changes, declare_config_parameters
from noksr_ros.ros.segment_publisher import SegmentPublisher

NODE_NAME = 'noksr'
DIAGNOSTIC_NAME = 'noksr_ros: reconstruction'


def extrinsic_matrix(xyz_rpy: tuple[float, ...]) -> np.ndarray:
    """T_base_lidar from x y z (m) roll pitch yaw (deg)."""
    from scipy.spatial.transform import Rotation

    out = np.eye(4)
    out[:3, :3] = Rotation.from_euler('xyz', xyz_rpy[3:], degrees=True).as_matrix()
    out[:3, 3] = xyz_rpy[:3]
    return out


def tf2_available() -> bool:
    """Whether tf2_ros can be imported (a ROS distro install; not in the pip wheels)."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


class NoksrNode(Node):
    """Live incremental NoKSR; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config: NoksrConfig = declare_config_parameters(self)
        cfg = self.config.ros
        log = self.get_logger()
        self.drops = DropCounter(log=log.warning)
        model, device = model_from_config(self.config)
        self.pose_source = cfg.pose_source
        if self.pose_source == 'auto':
            self.pose_source = 'tf' if tf2_available() else 'odometry'
        self._extrinsic = extrinsic_matrix(cfg.base_to_lidar_xyz_rpy)
        self._poses = PoseBuffer(cfg.max_pose_gap_s, max_speed_mps=cfg.max_pose_speed_mps,
                                 max_turn_dps=cfg.max_pose_turn_dps)
        reliability = (ReliabilityPolicy.BEST_EFFORT if cfg.input_qos == 'sensor_data' else
                       ReliabilityPolicy.RELIABLE)
        input_qos = QoSProfile(depth=cfg.input_qos_depth, reliability=reliability)
        self._setup_pose_source(input_qos)
        self.pipeline = LivePipeline(self.config, model, device, self._resolve_pose, self.drops,
                                     log=log.info)
        accept_runtime_changes(self, lambda: self.config, self._apply_config)
        self.ids = MarkerIds()
        self._humble = installed_layout_is_humble()
        self.create_subscription(PointCloud2, cfg.lidar_topic, self._on_cloud, input_qos)
        mesh_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.mesh_pub = self.create_publisher(MarkerArray, cfg.mesh_topic, mesh_qos)
        self.segments = SegmentPublisher(self, self.config)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_service(Trigger, SAVE_MESH, self._save_mesh)
        self.create_service(Trigger, CLEAR_MAP, self._clear_map)
        self.create_service(Trigger, PUBLISH_MAP, self._publish_map)
        self._resend = False
        self._subscribers = 0
        self._drops_seen = 0
        self.messages_published = 0
        self.create_timer(1.0 / cfg.publish_rate_hz, self._publish_tick)
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, self._diagnostics_tick)
        self.pipeline.start()
        log.info(f'noksr on {device}: {cfg.lidar_topic} -> {cfg.mesh_topic}, '
                 f'{cfg.mesh_segments_topic} in frame {cfg.map_frame!r}, poses from '
                 f'{self.pose_source}')

    # -- poses ----------------------------------------------------------------------------------

    def _setup_pose_source(self, qos: QoSProfile) -> None:
        cfg = self.config.ros
        if self.pose_source == 'tf':
            import tf2_ros

            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        elif self.pose_source == 'odometry':
            self.create_subscription(Odometry, cfg.odom_topic, self._on_odometry, qos)
        else:
            if not cfg.transform_topic:
                raise NoksrError("ros.pose_source is 'transform' but ros.transform_topic is empty")
            self.create_subscription(TransformStamped, cfg.transform_topic, self._on_transform,
                                     qos)

    def _on_odometry(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        self._add_pose(msg.header, msg.child_frame_id, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))

    def _on_transform(self, msg: TransformStamped) -> None:
        t, q = msg.transform.translation, msg.transform.rotation
        self._add_pose(msg.header, msg.child_frame_id, (t.x, t.y, t.z), (q.x, q.y, q.z, q.w))

    def _add_pose(self, header: Any, child: str, xyz: tuple, quat: tuple) -> None:
        cfg = self.config.ros
        if header.frame_id != cfg.map_frame or (cfg.base_frame and child != cfg.base_frame):
            self.drops.drop(reasons.WRONG_FRAME, f'pose {header.frame_id!r} -> {child!r}, '
                            f'expected {cfg.map_frame!r} -> {cfg.base_frame!r}')
            return
        norm = float(np.linalg.norm(quat))
        if not np.all(np.isfinite(xyz)) or not np.isfinite(norm) or norm < 1e-6:
            self.drops.drop(reasons.BAD_POSE, 'non-finite position or zero quaternion')
            return
        try:
            self._poses.add(stamp_to_ns(header.stamp),
                            pose_to_matrix(np.array(xyz), np.array(quat) / norm))
        except ValueError as exc:
            self.drops.drop(reasons.BAD_POSE, str(exc))

    def _resolve_pose(self, stamp_ns: int, frame_id: str) -> PoseLookup:
        """T_map_sensor at the scan stamp (worker thread)."""
        if self.pose_source == 'tf':
            return self._tf_lookup(stamp_ns, frame_id)
        lookup = self._poses.lookup(stamp_ns)
        if lookup.status != OK:
            return lookup
        return PoseLookup(OK, compose(lookup.pose, self._extrinsic))

    def _tf_lookup(self, stamp_ns: int, frame_id: str) -> PoseLookup:
        from rclpy.duration import Duration
        from rclpy.time import Time

        target, when = self.config.ros.map_frame, Time(nanoseconds=stamp_ns)
        if not self._tf_buffer.can_transform(target, frame_id, when, Duration(seconds=0.0)):
            return PoseLookup(WAIT)
        try:
            tf = self._tf_buffer.lookup_transform(target, frame_id, when).transform
        except Exception:  # noqa: BLE001 - any tf2 exception means: no pose for this scan
            return PoseLookup(UNKNOWN)
        t, q = tf.translation, tf.rotation
        return PoseLookup(OK, pose_to_matrix(np.array([t.x, t.y, t.z]),
                                             np.array([q.x, q.y, q.z, q.w])))

    # -- input ----------------------------------------------------------------------------------

    def _on_cloud(self, msg: PointCloud2) -> None:
        """Decode and enqueue; every failure is a counted drop (executor thread, no model)."""
        ingest, cfg = self.config.ingest, self.config.ros
        try:
            n_points, n_bytes = int(msg.height) * int(msg.width), len(msg.data)
            if n_points > ingest.max_points_per_scan or n_bytes > ingest.max_scan_bytes:
                self.drops.drop(reasons.TOO_LARGE, f'{n_points} points, {n_bytes} bytes')
                return
            cloud = read_points(msg, ('x', 'y', 'z'))
        except (PointCloudError, TypeError, ValueError) as exc:
            self.drops.drop(reasons.BAD_CLOUD, str(exc))
            return
        if cfg.lidar_frame and cloud.frame_id != cfg.lidar_frame:
            self.drops.drop(reasons.WRONG_FRAME, f'scan in frame {cloud.frame_id!r}, expected '
                            f'{cfg.lidar_frame!r}')
            return
        if len(cloud.points) == 0:
            self.drops.drop(reasons.EMPTY, f'scan at {cloud.stamp_ns} ns has no finite point')
            return
        self.pipeline.submit(LiveScan(cloud.stamp_ns, cloud.points, cloud.frame_id))

    # -- output ---------------------------------------------------------------------------------

    def _publish_tick(self) -> None:
        count = self.mesh_pub.get_subscription_count()
        marker_resend = self._resend or count > self._subscribers
        segment_resend = self.segments.new_subscriber() or self._resend
        self._subscribers, self._resend = count, False
        changes = self.pipeline.take_changes(snapshot=marker_resend or segment_resend)
        self.segments.publish(changes, segment_resend, self.pipeline.stats())
        markers = change_markers(replace(changes, meshes=changes.snapshot) if marker_resend
                                 else changes, self.ids, self.config.ros)
        budget = self.config.ros.max_message_bytes
        for group in group_for_size(markers, budget, self._humble):
            self.mesh_pub.publish(marker_array_cdr(group, self._humble))
            self.messages_published += 1

    def _apply_config(self, config: NoksrConfig) -> None:
        """A validated run-time parameter change (see params.RUNTIME_KEYS)."""
        self.config = config
        self.pipeline.set_config(config)
        self.get_logger().info('parameters changed')

    def _diagnostics_tick(self) -> None:
        stats = self.pipeline.stats()
        drops = self.drops.counts()
        total = sum(drops.values())
        level, message = DiagnosticStatus.OK, 'reconstructing'
        if total > self._drops_seen:
            level, message = DiagnosticStatus.WARN, f'{total - self._drops_seen} inputs dropped'
        self._drops_seen = total
        if stats.get('segments_out_of_memory'):
            level = DiagnosticStatus.WARN
            message = (f'{stats["segments_out_of_memory"]} segments do not fit in memory '
                       '(kept dirty, retried)')
        stats['mesh_messages_published'] = self.messages_published
        values = [KeyValue(key=k, value=str(v)) for k, v in {**stats, **process_memory()}.items()]
        values += [KeyValue(key=f'drops.{k}', value=str(v)) for k, v in sorted(drops.items())]
        values.append(KeyValue(key='pose_source', value=self.pose_source))
        status = DiagnosticStatus(level=level, name=DIAGNOSTIC_NAME, message=message,
                                  hardware_id=str(stats['device']), values=values)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    # -- services (cached state only) -----------------------------------------------------------

    def _save_mesh(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        try:
            path, n_vertices, n_faces = self.pipeline.save_mesh(self.config.ros.output_dir)
        except OSError as exc:
            response.success, response.message = False, f'cannot write the mesh: {exc}'
            return response
        response.success = True
        response.message = str(path)
        self.get_logger().info(f'saved {n_faces} triangles, {n_vertices} vertices to {path}')
        return response

    def _clear_map(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        self.pipeline.request_clear()
        response.success, response.message = True, 'map cleared'
        return response

    def _publish_map(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        self._resend = True
        n = len(self.pipeline.mesh_snapshot().meshes)
        response.success, response.message = True, f'{n} segment meshes queued for publishing'
        return response

    def shutdown(self) -> None:
        """Stop the worker (it finishes its current step)."""
        self.pipeline.stop()


def main(args: list[str] | None = None) -> int:
    """Entry point of `noksr_node` (ros2 run / ros2 launch)."""
    tune_allocator()  # before rclpy and the worker start their threads
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = NoksrNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (NoksrError, ValueError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {exc}')
        code = 2
    finally:
        # A terminal Ctrl-C reaches the node twice (process group, then launch): ignore the
        # second one while the worker finishes its segment, or the interpreter aborts.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())

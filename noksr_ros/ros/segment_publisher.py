"""
The node's indexed mesh output: `/noksr/mesh_segments` (MeshMapUpdate) and `/noksr/mesh_status`.

Fed by the same `take_changes()` as the markers, so both topics carry the same map. A new
subscriber on the segment topic, `~/publish_map` and `~/clear_map` give a full resend; the status
is latched (transient local, depth 1), so a new consumer learns the map's keys, revisions and
newest sequence at once.
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from noksr_ros.config import NoksrConfig
from noksr_ros.live.mesh_cache import MeshChanges
from noksr_ros.msg import MeshMapStatus, MeshMapUpdate
from noksr_ros.ros.segment_msgs import status_message, update_message
from noksr_ros.ros.segment_stream import SegmentStream

# Messages the publisher keeps until every reader has them. A full resend goes out as one burst
# of parts; a reliable KEEP_LAST writer overwrites unacknowledged ones beyond its depth, so the
# depth bounds the parts a resend may have (the split is by ros.max_message_bytes).
UPDATE_HISTORY = 100


class SegmentPublisher:
    """MeshMapUpdate and MeshMapStatus publishers around one SegmentStream."""

    def __init__(self, node: Node, config: NoksrConfig) -> None:
        cfg = config.ros
        self.node, self.frame_id = node, cfg.map_frame
        self.stream = SegmentStream(config.mapping.segment_size_m, config.mapping.curve,
                                    cfg.max_message_bytes, cfg.mesh_segment_normals)
        self.updates_pub = node.create_publisher(
            MeshMapUpdate, cfg.mesh_segments_topic,
            QoSProfile(depth=UPDATE_HISTORY, reliability=ReliabilityPolicy.RELIABLE))
        self.status_pub = node.create_publisher(
            MeshMapStatus, cfg.mesh_status_topic,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._subscribers = 0
        self.messages_published = 0

    def new_subscriber(self) -> bool:
        """Whether the segment topic gained a subscriber since the last call."""
        count = self.updates_pub.get_subscription_count()
        grew, self._subscribers = count > self._subscribers, count
        return grew

    def publish(self, changes: MeshChanges, full: bool, stats: dict) -> None:
        """Publish `changes` (everything when `full`), then the status."""
        for update in self.stream.updates(changes, full):
            self.updates_pub.publish(update_message(update, self.frame_id))
            self.messages_published += 1
        now_ns = self.node.get_clock().now().nanoseconds
        self.status_pub.publish(status_message(self.stream.status(), self.frame_id, now_ns,
                                               stats))

"""
A consumer of `/noksr/mesh_segments` and `/noksr/mesh_status`: the map rebuilt as a MeshMapCopy.

Used by the tests and the benchmark, and a template for other consumers: apply every update in
arrival order, trust the copy while `copy.consistent`, and compare it with the newest status.
A copy that is out of sync (it joined mid-stream, or DDS lost a message: a volatile reader can
miss the messages sent right after discovery) asks the node for a full resend through
~/publish_map, at most every `resync_period_s`.
"""

from __future__ import annotations

import threading
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from noksr_ros.msg import MeshMapStatus, MeshMapUpdate
from noksr_ros.ros.segment_msgs import status_from_message, update_from_message
from noksr_ros.ros.segment_stream import MeshMapCopy, StreamStatus


class SegmentCollector:
    """Thread-safe MeshMapCopy fed by a subscription; `arrivals`: (wall s, sequence)."""

    def __init__(self, node: Node, topic: str = '/noksr/mesh_segments',
                 status_topic: str | None = '/noksr/mesh_status',
                 resync_service: str | None = '/noksr/publish_map',
                 resync_period_s: float = 2.0) -> None:
        self.copy = MeshMapCopy()
        self.resync_requests = 0
        self._resync = node.create_client(Trigger, resync_service) if resync_service else None
        self._resync_period_s = resync_period_s
        self._next_resync_s = time.monotonic() + resync_period_s
        self.status: StreamStatus | None = None
        self.arrivals: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self.subscription = node.create_subscription(
            MeshMapUpdate, topic, self._on_update,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.status_subscription = None
        if status_topic:
            self.status_subscription = node.create_subscription(
                MeshMapStatus, status_topic, self._on_status,
                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def _on_update(self, msg: MeshMapUpdate) -> None:
        update = update_from_message(msg)
        with self._lock:
            self.copy.apply(update)
            self.arrivals.append((time.time(), update.sequence))
        self._maybe_resync()

    def _on_status(self, msg: MeshMapStatus) -> None:
        status = status_from_message(msg)
        with self._lock:
            self.status = status
        self._maybe_resync()

    def _maybe_resync(self) -> None:
        """Ask for a full resend when the copy is not exact (never waits for the answer)."""
        with self._lock:
            published = self.copy.sequence or (self.status.sequence if self.status else 0)
            lost = not self.copy.synced and published > 0
        if self._resync is None or not lost or time.monotonic() < self._next_resync_s:
            return
        if self._resync.service_is_ready():
            self._next_resync_s = time.monotonic() + self._resync_period_s
            self._resync.call_async(Trigger.Request())
            self.resync_requests += 1

    def describe(self) -> str:
        """One line on the copy's state, for logs and failure messages."""
        with self._lock:
            status = self.status.sequence if self.status else None
            return (f'sequence {self.copy.sequence} (status {status}), synced '
                    f'{self.copy.synced}, consistent {self.copy.consistent}, '
                    f'{len(self.copy.segments)} segments, {len(self.arrivals)} messages, '
                    f'{self.copy.fulls} full, {self.copy.gaps} gaps, '
                    f'{self.resync_requests} resync requests')

    def in_sync(self) -> bool:
        """Whether the copy is consistent and names what the newest status names."""
        with self._lock:
            return (self.copy.consistent and self.status is not None
                    and self.copy.matches(self.status))

    def mesh(self):
        """The copy welded in the map frame: (V,3) float64, (F,3) int64."""
        with self._lock:
            return self.copy.mesh()

    def destroy(self, node: Node) -> None:
        """Remove the subscriptions and the client from `node`."""
        node.destroy_subscription(self.subscription)
        if self._resync is not None:
            node.destroy_client(self._resync)
        if self.status_subscription is not None:
            node.destroy_subscription(self.status_subscription)

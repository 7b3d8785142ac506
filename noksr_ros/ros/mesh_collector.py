"""
A subscriber of `/noksr/mesh` that keeps the map RViz would show: the newest marker per id.

Used by the demo recorder, the tests and the end-to-end benchmark. It subscribes with `raw=True`
and reads the bytes with numpy (`marker_cdr_read`), applies ADD / DELETE / DELETEALL like RViz,
and records when each message arrived and the newest scan stamp it carries (for latency).
"""

from __future__ import annotations

from dataclasses import dataclass
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from visualization_msgs.msg import MarkerArray

from noksr_ros.ros.marker_cdr import ADD, DELETE, DELETEALL, MarkerSpec, installed_layout_is_humble
from noksr_ros.ros.marker_cdr_read import read_marker_array_cdr


@dataclass(frozen=True)
class Arrival:
    """One received message: wall time (time.time) and the stamps and ids it carried."""

    wall_s: float
    stamp_ns: int
    adds: int
    deletes: int
    delete_all: bool


class MeshCollector:
    """Markers by (ns, id) as a display would hold them; thread-safe."""

    def __init__(self, node: Node, topic: str = '/noksr/mesh') -> None:
        self.markers: dict[tuple[str, int], MarkerSpec] = {}
        self.arrivals: list[Arrival] = []
        self.delete_alls = 0
        self._humble = installed_layout_is_humble()
        self._lock = threading.Lock()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.subscription = node.create_subscription(MarkerArray, topic, self._on_message, qos,
                                                     raw=True)

    def _on_message(self, data: bytes) -> None:
        now = time.time()
        markers = read_marker_array_cdr(data, self._humble)
        with self._lock:
            adds = deletes = 0
            delete_all = False
            for marker in markers:
                if marker.action == DELETEALL:
                    self.markers.clear()
                    self.delete_alls += 1
                    delete_all = True
                elif marker.action == DELETE:
                    self.markers.pop((marker.ns, marker.id), None)
                    deletes += 1
                elif marker.action == ADD:
                    self.markers[(marker.ns, marker.id)] = marker
                    adds += 1
            stamp = max((m.stamp_ns for m in markers), default=0)
            self.arrivals.append(Arrival(now, stamp, adds, deletes, delete_all))

    def triangle_count(self) -> int:
        """Triangles currently shown."""
        with self._lock:
            return sum(len(m.points) // 3 for m in self.markers.values())

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The union of the shown markers: (3F,3) float64 vertices, (F,3) faces, (3F,4) colours."""
        with self._lock:
            parts = [m for m in self.markers.values() if m.points is not None]
        if not parts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 4), np.float32)
        vertices = np.concatenate([m.points for m in parts])
        colors = np.concatenate([m.colors if m.colors is not None else
                                 np.tile(np.float32(m.color), (len(m.points), 1)) for m in parts])
        faces = np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)
        return vertices, faces, colors

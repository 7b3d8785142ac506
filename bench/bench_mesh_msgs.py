"""
One 200k-triangle segment: the RViz marker path against the indexed MeshMapUpdate path.

For each path: build time (segment mesh -> what publish() takes, as the node builds it), message
size, and publish -> received as numpy arrays in a subscriber process (markers: raw CDR read with
numpy; segments: the typed message, then `update_from_message`). The subscriber answers each
message with its CLOCK_MONOTONIC time after the conversion. Medians over --repeats messages.

Run with the ROS environment set (as scripts/run_tests.sh does): python -m bench.bench_mesh_msgs
[--triangles 200000] [--repeats 9]. Prints a table and writes out/bench/mesh_msgs.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.bench_markers import _repo_root, _spin_until, _stop, grid_mesh
from bench.common import report
from noksr_ros.config import RosConfig
from noksr_ros.live.pipeline import MeshChanges
from noksr_ros.mapping.keys import key_from_ijk
from noksr_ros.segment_mesher import SegmentMesh

ORIGIN = np.array([250.0, -80.0, 3.0])
_ACK = '/ack'


def segment_mesh(n_triangles: int) -> SegmentMesh:
    """A grid mesh as the node caches it: float32 local vertices, int32 faces, edge ids."""
    vertices, faces = grid_mesh(n_triangles)
    key = int(key_from_ijk(np.array([[1, 2, 0]]))[0])
    return SegmentMesh(key, vertices.astype(np.float32), faces.astype(np.int32),
                       np.arange(len(vertices), dtype=np.int64) * 3, 0)


def builders(mesh: SegmentMesh) -> dict:
    """Path name -> function building what the node hands to publish()."""
    from noksr_ros.ros.marker_cdr import marker_array_cdr
    from noksr_ros.ros.mesh_markers import segment_marker
    from noksr_ros.ros.segment_msgs import update_message
    from noksr_ros.ros.segment_stream import SegmentStream

    cfg = RosConfig()
    changes = MeshChanges({mesh.key: mesh}, set(), False, ORIGIN, 1)

    def segments(normals: bool):
        stream = SegmentStream(12.8, 'z', cfg.max_message_bytes, normals=normals)
        return lambda: update_message(stream.updates(changes)[0], 'map')

    return {'markers': lambda: marker_array_cdr([segment_marker(mesh, ORIGIN, 0, cfg, 1)]),
            'segments (normals)': segments(True), 'segments (no normals)': segments(False)}


def run_path(name: str, build, repeats: int) -> dict:
    """Build and publish `repeats` (+1 warm-up) messages to a subscriber process."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Float64

    from noksr_ros.msg import MeshMapUpdate

    kind = 'markers' if name == 'markers' else 'segments'
    topic = f'/noksr_bench/{kind}_{os.getpid()}'
    child = subprocess.Popen([sys.executable, '-m', 'bench.bench_mesh_msgs', '--subscriber',
                              kind, '--topic', topic], cwd=_repo_root())
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    acks: list[float] = []
    rclpy.init()
    node = rclpy.create_node('bench_mesh_msgs_pub')
    try:
        from visualization_msgs.msg import MarkerArray

        msg_type = MarkerArray if kind == 'markers' else MeshMapUpdate
        pub = node.create_publisher(msg_type, topic, qos)
        node.create_subscription(Float64, topic + _ACK, lambda m: acks.append(m.data), qos)
        _spin_until(node, lambda: pub.get_subscription_count() > 0
                    and node.count_publishers(topic + _ACK) > 0, 30.0)
        build_s, deliver_s = [], []
        for sent in range(1, repeats + 2):
            t0 = time.monotonic()
            msg = build()
            t1 = time.monotonic()
            pub.publish(msg)
            _spin_until(node, lambda n=sent: len(acks) >= n, 60.0)
            if sent > 1:
                build_s.append(t1 - t0)
                deliver_s.append(acks[-1] - t1)
        size = len(msg) if isinstance(msg, bytes) else len(serialize_message(msg))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        _stop(child)
    build_ms, deliver_ms = statistics.median(build_s) * 1e3, statistics.median(deliver_s) * 1e3
    total = statistics.median(b + d for b, d in zip(build_s, deliver_s, strict=True)) * 1e3
    return {'path': name, 'MB': round(size / 1e6, 2), 'build_ms': build_ms,
            'publish_to_numpy_ms': deliver_ms, 'total_ms': total}


def run_subscriber(kind: str, topic: str) -> None:
    """Child process: convert each message to numpy, answer with the monotonic time."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Float64

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    node = rclpy.create_node('bench_mesh_msgs_sub')
    ack = node.create_publisher(Float64, topic + _ACK, qos)
    if kind == 'markers':
        from visualization_msgs.msg import MarkerArray

        from noksr_ros.ros.marker_cdr import installed_layout_is_humble
        from noksr_ros.ros.marker_cdr_read import read_marker_array_cdr

        humble = installed_layout_is_humble()
        node.create_subscription(MarkerArray, topic, lambda data: (
            read_marker_array_cdr(data, humble), ack.publish(Float64(data=time.monotonic()))),
            qos, raw=True)
    else:
        from noksr_ros.msg import MeshMapUpdate
        from noksr_ros.ros.segment_msgs import update_from_message

        node.create_subscription(MeshMapUpdate, topic, lambda msg: (
            update_from_message(msg), ack.publish(Float64(data=time.monotonic()))), qos)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--triangles', type=int, default=200_000)
    parser.add_argument('--repeats', type=int, default=9)
    parser.add_argument('--subscriber', choices=('markers', 'segments'), help=argparse.SUPPRESS)
    parser.add_argument('--topic', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        run_subscriber(args.subscriber, args.topic)
        return
    mesh = segment_mesh(args.triangles)
    rows = [run_path(name, build, args.repeats) for name, build in builders(mesh).items()]
    for row in rows:
        row['triangles'] = len(mesh.faces)
    report('mesh_msgs', rows, ['path', 'triangles', 'MB', 'build_ms', 'publish_to_numpy_ms',
                               'total_ms'],
           {'repeats': args.repeats, 'load_average': os.getloadavg()})


if __name__ == '__main__':
    main()

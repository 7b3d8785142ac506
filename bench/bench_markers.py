"""
Time mesh MarkerArray building, serialization and delivery to a subscriber in another process.

Cases for one TRIANGLE_LIST marker of a height-coloured grid mesh (200k triangles by default):
numpy CDR bytes (`marker_array_cdr`) against geometry_msgs/Point objects + `serialize_message`
(on `--slow-triangles`, scaled linearly to the full mesh), and publish -> subscriber callback over
DDS on loopback, raw bytes published, to a subscriber with `raw=True` and to a typed one. The
subscriber runs in a child process and answers each message with its callback time on
CLOCK_MONOTONIC (shared by all processes of the machine).

Run with the ROS environment set (AMENT_PREFIX_PATH, ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST): python -m bench.bench_markers [--triangles 200000] [--repeats 5]. Prints a table and
writes out/bench/markers.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.common import median_s, report
from noksr_ros.meshcolor import face_soup, height_colors
from noksr_ros.ros.marker_cdr import MarkerSpec, marker_array_cdr, triangle_marker

GOAL_MS = 100.0
_ACK_SUFFIX = '/ack'


def grid_mesh(n_triangles: int) -> tuple[np.ndarray, np.ndarray]:
    """A wavy height-field grid with about `n_triangles` triangles: vertices (V,3), faces (F,3)."""
    side = int(np.sqrt(n_triangles / 2)) + 1
    xs, ys = np.meshgrid(np.arange(side) * 0.1, np.arange(side) * 0.1, indexing='xy')
    zs = np.sin(xs) * np.cos(ys)
    vertices = np.column_stack([xs.ravel(), ys.ravel(), zs.ravel()])
    cell = (np.arange(side - 1)[:, None] * side + np.arange(side - 1)[None, :]).ravel()
    faces = np.concatenate([np.column_stack([cell, cell + 1, cell + side + 1]),
                            np.column_stack([cell, cell + side + 1, cell + side])])
    return vertices, faces[:n_triangles]


def mesh_marker(n_triangles: int) -> MarkerSpec:
    """A coloured TRIANGLE_LIST marker of `n_triangles` triangles."""
    vertices, faces = grid_mesh(n_triangles)
    points, colors = face_soup(vertices, faces, height_colors(vertices))
    return triangle_marker('noksr', 1, points, colors, frame_id='map', stamp_ns=time.time_ns())


def slow_serialize(marker: MarkerSpec) -> bytes:
    """Marker from geometry_msgs/Point and ColorRGBA objects, then rclpy's serialize_message."""
    from geometry_msgs.msg import Point, Vector3
    from rclpy.serialization import serialize_message
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    msg = Marker(ns=marker.ns, id=marker.id, type=Marker.TRIANGLE_LIST,
                 scale=Vector3(x=1.0, y=1.0, z=1.0))
    msg.header.frame_id = marker.frame_id
    msg.points = [Point(x=x, y=y, z=z) for x, y, z in marker.points.tolist()]
    msg.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in marker.colors.tolist()]
    return serialize_message(MarkerArray(markers=[msg]))


def local_rows(args: argparse.Namespace) -> list[dict]:
    """Rows of the in-process cases: mesh preparation, numpy CDR, the slow way."""
    vertices, faces = grid_mesh(args.triangles)
    marker = mesh_marker(args.triangles)
    raw = marker_array_cdr([marker])
    size_mb = len(raw) / 1e6
    rows = [
        _row('colours + face_soup', args.triangles, size_mb,
             median_s(lambda: face_soup(vertices, faces, height_colors(vertices)), args.repeats)),
        _row('marker_array_cdr (numpy)', args.triangles, size_mb,
             median_s(lambda: marker_array_cdr([marker]), args.repeats)),
    ]
    small = mesh_marker(args.slow_triangles)
    slow_s = median_s(lambda: slow_serialize(small), max(1, args.repeats // 2))
    scale = args.triangles / args.slow_triangles
    rows.append(_row('Point objects + serialize_message', args.slow_triangles,
                     len(marker_array_cdr([small])) / 1e6, slow_s))
    rows.append(_row('  same, scaled linearly', args.triangles, size_mb, slow_s * scale,
                     note=f'x{scale:.3g} extrapolated'))
    return rows


def _row(case: str, triangles: int, size_mb: float, seconds: float, note: str = '') -> dict:
    return {'case': case, 'triangles': triangles, 'MB': round(size_mb, 2),
            'median_ms': seconds * 1e3, 'note': note}


def end_to_end_rows(args: argparse.Namespace) -> list[dict]:
    """Publish raw bytes to a subscriber in a child process, raw and typed."""
    rows = []
    for mode, repeats in (('raw', args.repeats), ('typed', args.typed_repeats)):
        if repeats <= 0:
            continue
        topic = f'/noksr_bench/mesh_{os.getpid()}_{mode}'
        child = subprocess.Popen([sys.executable, '-m', 'bench.bench_markers', '--subscriber',
                                  mode, '--topic', topic], cwd=_repo_root())
        try:
            samples = _publish_and_time(topic, args.triangles, repeats)
        finally:
            _stop(child)
        size_mb = samples['bytes'] / 1e6
        for key, label in (('total', 'build + publish -> callback'),
                           ('delivery', 'publish -> callback'),
                           ('publish_call', 'publish() call')):
            rows.append(_row(f'e2e {mode} sub: {label}', args.triangles, size_mb,
                             statistics.median(samples[key]), note=f'{repeats} messages'))
    return rows


def _publish_and_time(topic: str, n_triangles: int, repeats: int) -> dict:
    """Publish `repeats` (+1 warm-up) messages, each after the previous one was acknowledged."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Float64
    from visualization_msgs.msg import MarkerArray

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    marker = mesh_marker(n_triangles)
    acks: list[float] = []
    rclpy.init()
    node = rclpy.create_node('bench_markers_pub')
    try:
        publisher = node.create_publisher(MarkerArray, topic, qos)
        node.create_subscription(Float64, topic + _ACK_SUFFIX, lambda m: acks.append(m.data), qos)
        _spin_until(node, lambda: (publisher.get_subscription_count() > 0
                                   and node.count_publishers(topic + _ACK_SUFFIX) > 0), 30.0)
        samples: dict = {'total': [], 'delivery': [], 'publish_call': []}
        for sent in range(1, repeats + 2):
            t_build = time.monotonic()
            raw = marker_array_cdr([marker])
            t_publish = time.monotonic()
            publisher.publish(raw)
            t_returned = time.monotonic()
            _spin_until(node, lambda n=sent: len(acks) >= n, 60.0)
            if sent > 1:  # the first message is the warm-up
                samples['total'].append(acks[-1] - t_build)
                samples['delivery'].append(acks[-1] - t_publish)
                samples['publish_call'].append(t_returned - t_publish)
        samples['bytes'] = len(raw)
        return samples
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _spin_until(node: object, done: object, timeout_s: float) -> None:
    import rclpy

    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError('no answer from the subscriber process')
        rclpy.spin_once(node, timeout_sec=0.01)


def run_subscriber(mode: str, topic: str) -> None:
    """Child process: answer each MarkerArray on `topic` with the callback's monotonic time."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Float64
    from visualization_msgs.msg import MarkerArray

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    node = rclpy.create_node('bench_markers_sub')
    ack = node.create_publisher(Float64, topic + _ACK_SUFFIX, qos)

    def on_message(msg: object) -> None:
        ack.publish(Float64(data=time.monotonic()))

    node.create_subscription(MarkerArray, topic, on_message, qos, raw=(mode == 'raw'))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _stop(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--triangles', type=int, default=200_000)
    parser.add_argument('--slow-triangles', type=int, default=20_000)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--typed-repeats', type=int, default=3)
    parser.add_argument('--no-e2e', action='store_true', help='skip the DDS round trips')
    parser.add_argument('--fastdds-profile', help='Fast DDS XML profile for both processes '
                        '(sets FASTDDS_DEFAULT_PROFILES_FILE; JSON goes to markers_<name>.json)')
    parser.add_argument('--subscriber', choices=('raw', 'typed'), help=argparse.SUPPRESS)
    parser.add_argument('--topic', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        run_subscriber(args.subscriber, args.topic)
        return
    name = 'markers'
    if args.fastdds_profile:
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = os.path.abspath(args.fastdds_profile)
        name += '_' + os.path.splitext(os.path.basename(args.fastdds_profile))[0]
    rows = local_rows(args)
    if not args.no_e2e:
        rows += end_to_end_rows(args)
    e2e = [r for r in rows if r['case'] == 'e2e raw sub: build + publish -> callback']
    extra = {'goal_ms': GOAL_MS, 'repeats': args.repeats,
             'goal_met': bool(e2e) and e2e[0]['median_ms'] < GOAL_MS,
             'rmw': os.environ.get('RMW_IMPLEMENTATION', 'default (rmw_fastrtps_cpp)'),
             'fastdds_profile': os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE'),
             'load_average': os.getloadavg()}
    report(name, rows, ['case', 'triangles', 'MB', 'median_ms', 'note'], extra)


if __name__ == '__main__':
    main()

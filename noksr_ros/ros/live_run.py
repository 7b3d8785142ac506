"""
One live run of a recorded drive through a real ROS 2 graph: player -> node -> mesh recorder.

Shared by `noksr demo` and the end-to-end benchmark. The node runs in its own process (exactly as
`ros2 run` starts it); this process plays the bag on the CARLA bridge topics at its real rate
from a thread and records `/noksr/mesh` and `/diagnostics`. Latency of a mesh message is the
time from the publication of the newest scan it contains (its header stamp) to its arrival.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import os
from pathlib import Path
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
import yaml

from noksr_ros.ros.mesh_collector import MeshCollector
from noksr_ros.ros.node import DIAGNOSTIC_NAME
from noksr_ros.ros.player import DISCOVERY_SETTLE_S, BagPlayer

TRANSPORT_GRACE_S = 5.0


@dataclass
class LiveRunResult:
    """What the recorder saw, with timings in seconds."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    scans_published: int
    diagnostics: dict[str, str]
    latencies_s: list[float]
    play_s: float
    settle_s: float
    node_log: str
    messages: int
    published_at: dict[int, float] = field(default_factory=dict)
    integrated_at: list[tuple[float, int]] = field(default_factory=list)

    def latency_stats(self) -> tuple[float, float]:
        """(median, p95) mesh latency in seconds; NaN when no mesh message carried a scan."""
        lat = sorted(self.latencies_s)
        if not lat:
            return float('nan'), float('nan')
        return statistics.median(lat), lat[min(len(lat) - 1, int(0.95 * len(lat)))]

    def integration_rate(self) -> float:
        """Scans integrated per second, from the first scan published to the last integrated."""
        if not self.integrated_at or not self.published_at:
            return 0.0
        last_s, count = self.integrated_at[-1]
        span = last_s - min(self.published_at.values())
        return count / span if span > 0 else 0.0

    def stat(self, key: str) -> int:
        """Integer diagnostics value (0 when absent)."""
        return int(float(self.diagnostics.get(key, 0)))


def ros_environment(log_dir: Path) -> dict[str, str]:
    """The environment for a local demo: loopback-only DDS, a domain of its own, logs here."""
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('ROS_DOMAIN_ID', str(random.randint(101, 200)))
    env.setdefault('ROS_LOG_DIR', str(log_dir))
    return env


def write_node_params(path: Path, values: dict) -> Path:
    """ROS parameter file (`/**: ros__parameters:`) from dotted names."""
    tree: dict = {}
    for name, value in values.items():
        node = tree
        *parents, leaf = name.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': tree}}))
    return path


def run_live_drive(bag: str | Path, params: dict, work_dir: str | Path, *,
                   lidar_topic: str = '/carla/ego_vehicle/lidar', rate: float = 1.0,
                   settle_timeout_s: float = 900.0,
                   progress: Callable[[dict], None] | None = None) -> LiveRunResult:
    """Play `bag` into a fresh node process with `params` and return what was recorded."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    env = ros_environment(work_dir / 'ros_log')
    os.environ.update({k: env[k] for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID',
                                           'ROS_LOG_DIR')})
    params_file = write_node_params(work_dir / 'node_params.yaml', params)
    log_path = work_dir / 'node.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, '-m', 'noksr_ros.ros.node', '--ros-args',
                                 '--params-file', str(params_file)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            return _record(proc, log_path, bag, lidar_topic, rate, settle_timeout_s, progress,
                           _input_topics(params, lidar_topic))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _record(proc: subprocess.Popen, log_path: Path, bag: str | Path, lidar_topic: str,
            rate: float, settle_timeout_s: float,
            progress: Callable[[dict], None] | None,
            input_topics: tuple[str, ...]) -> LiveRunResult:
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('noksr_demo_recorder', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    collector = MeshCollector(node)
    diagnostics: dict[str, str] = {}

    integrated_at: list[tuple[float, int]] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == DIAGNOSTIC_NAME:
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})
                count = int(float(diagnostics.get('scans_integrated', 0)))
                if count and (not integrated_at or integrated_at[-1][1] != count):
                    integrated_at.append((time.time(), count))

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    published_at: dict[int, float] = {}
    player = BagPlayer(node, bag, rate=rate)
    player.prepare()
    done = threading.Event()

    def on_message(topic: str, log_ns: int) -> None:
        if topic == lidar_topic:
            published_at[log_ns] = time.time()

    def play() -> None:
        try:
            player.play(on_message=on_message)
        finally:
            done.set()

    def stat(key: str) -> int:
        return int(float(diagnostics.get(key, 0)))

    def spin_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        last_report = 0.0
        while not condition():
            if proc.poll() is not None:
                raise RuntimeError(f'the node exited with code {proc.returncode} while waiting '
                                   f'for {what}:\n{log_path.read_text()[-3000:]}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'timed out after {timeout_s:.0f} s waiting for {what}')
            executor.spin_once(timeout_sec=0.05)
            if progress is not None and time.monotonic() - last_report > 0.5:
                last_report = time.monotonic()
                progress({'published': len(published_at), 'diagnostics': dict(diagnostics),
                          'latencies': _latencies(collector, published_at),
                          'playing': not done.is_set()})

    try:
        spin_until(lambda: bool(diagnostics), 120, 'the node to start')
        # Every topic the node reads must be matched, or its first messages are lost.
        wanted = [p for t, p in player.publishers.items() if p is not None and t in input_topics]
        spin_until(lambda: all(p.get_subscription_count() > 0 for p in wanted), 60,
                   'the node to subscribe')
        matched = time.monotonic() + DISCOVERY_SETTLE_S  # the other side matches too
        spin_until(lambda: time.monotonic() > matched, 10, 'discovery to settle')
        t0 = time.monotonic()
        thread = threading.Thread(target=play, name='noksr-player', daemon=True)
        thread.start()
        spin_until(done.is_set, settle_timeout_s, 'the drive to be played')
        play_s = time.monotonic() - t0
        scans = len(published_at)

        played_at = time.monotonic()

        def settled() -> bool:
            # Best-effort input may lose scans in transport, uncounted by the node: after a
            # grace period an empty queue is enough.
            expected = None if time.monotonic() - played_at > TRANSPORT_GRACE_S else scans
            return map_complete(stat, expected)

        spin_until(settled, settle_timeout_s, 'the map to be reconstructed')
        spin_until(lambda: markers_received(stat, collector), 60, 'the last mesh messages')
        settle_s = time.monotonic() - t0 - play_s
        vertices, faces, colors = collector.mesh()
        return LiveRunResult(vertices, faces, colors, scans, dict(diagnostics),
                             _latencies(collector, published_at), play_s, settle_s,
                             log_path.read_text(), len(collector.arrivals), published_at,
                             integrated_at)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def map_complete(stat: Callable[[str], int], scans: int | None) -> bool:
    """
    Whether the node's diagnostics say the map is done and published.

    Done: `scans` integrated or counted as dropped (None: not checked), nothing queued, no
    segment dirty, every mesh change published. The node refreshes its map counters before its
    queue shrinks and counts unpublished changes, so no diagnostics message shows an empty queue
    over stale counters. A recorder must also wait for `markers_received`.
    """
    accounted = scans is None or stat('scans_integrated') + stat('drops_total') >= scans
    return (accounted and stat('queue_length') == 0 and stat('segments_dirty') == 0
            and stat('mesh_changes_pending') == 0 and stat('segments_meshed') > 0)


def markers_received(stat: Callable[[str], int], collector: MeshCollector) -> bool:
    """Whether `collector` got every `/noksr/mesh` message the node reports as published."""
    return len(collector.arrivals) >= stat('mesh_messages_published')


def _input_topics(params: dict, lidar_topic: str) -> tuple[str, ...]:
    """Topics the node subscribes to with `params` (LiDAR plus its pose topic)."""
    from noksr_ros.config import NoksrConfig

    ros = NoksrConfig().with_overrides(params).ros
    pose = {'odometry': ros.odom_topic, 'transform': ros.transform_topic}.get(ros.pose_source)
    return tuple(t for t in (lidar_topic, pose) if t)


def _latencies(collector: MeshCollector, published_at: dict[int, float]) -> list[float]:
    """Seconds from publishing the newest scan in a mesh message to receiving the message."""
    return [a.wall_s - published_at[a.stamp_ns] for a in list(collector.arrivals)
            if a.adds and a.stamp_ns in published_at]

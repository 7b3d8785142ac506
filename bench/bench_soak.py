"""
Soak: the node under a looping 10 Hz stream of ~100k-point scans for a long time.

A simulated drive is published again and again (stamps keep increasing; the car jumps back to the
start of the route at each loop, a pose jump the node must absorb) into a node started with
`config/carla.yaml` plus a segment store. Every `--sample-s` seconds the node's RSS (from
/proc/PID/status) and its diagnostics are sampled. Goals (issue 8): the queue stays bounded, RSS
stays flat after warm-up, drops are counted, subscriptions never stall (the node keeps counting
scans every sample).

    python -m bench.bench_soak [--minutes 30] [--sample-s 10]

Prints a table (one row per minute), writes out/bench/soak.json and out/bench/soak_rss.png.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from builtin_interfaces.msg import Time
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from bench.common import OUT_DIR, report
from noksr_ros.config import read_yaml_values
from noksr_ros.data.drive import simulate_drive
from noksr_ros.io.pointcloud2 import create_cloud
from noksr_ros.io.transforms import invert, matrix_to_pose
from noksr_ros.offline import npz_source
from noksr_ros.ros.live_run import write_node_params

ROOT = Path(__file__).resolve().parents[1]
LIDAR_FROM_BASE_Z_M = 2.4  # the simulator's and carla.yaml's roof mount


def _rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return float('nan')


def _stamp(ns: int) -> Time:
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def _publisher_loop(node, scans, stop: threading.Event, period_s: float = 0.1) -> None:
    """Publish scans and odometry at 10 Hz forever (looping), stamps strictly increasing."""
    from nav_msgs.msg import Odometry

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    lidar = node.create_publisher(PointCloud2, '/carla/ego_vehicle/lidar', qos)
    odom = node.create_publisher(Odometry, '/carla/ego_vehicle/odometry', qos)
    extrinsic = np.eye(4)
    extrinsic[2, 3] = LIDAR_FROM_BASE_Z_M
    t_next = time.monotonic()
    i = 0
    while not stop.is_set():
        _, points, pose = scans[i % len(scans)]
        stamp_ns = time.time_ns()
        base = pose @ invert(extrinsic)
        for dt in (-0.02, 0.0, 0.02):  # odometry samples around the scan stamp
            msg = Odometry()
            msg.header = Header(stamp=_stamp(stamp_ns + int(dt * 1e9)), frame_id='map')
            msg.child_frame_id = 'ego_vehicle'
            xyz, quat = matrix_to_pose(base)
            msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = xyz
            o = msg.pose.pose.orientation
            o.x, o.y, o.z, o.w = quat
            odom.publish(msg)
        header = Header(stamp=_stamp(stamp_ns), frame_id='ego_vehicle/lidar')
        lidar.publish(create_cloud(header, points, msg_type=PointCloud2, field_type=PointField))
        i += 1
        t_next += period_s
        time.sleep(max(0.0, t_next - time.monotonic()))


def main() -> None:
    """Run the soak and report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--minutes', type=float, default=30.0)
    parser.add_argument('--sample-s', type=float, default=10.0)
    parser.add_argument('--seed', type=int, default=1103)
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(101, 200)))
    samples = []
    with tempfile.TemporaryDirectory(prefix='noksr-soak-') as tmp:
        drive = simulate_drive(args.seed, Path(tmp) / 'drive', length_m=30.0, write_bag=False,
                               progress=False)
        scans = list(npz_source(drive.out_dir).scans)
        params = read_yaml_values(ROOT / 'config' / 'carla.yaml')
        params.update({'ros.pose_source': 'odometry', 'model.device': 'auto',
                       'mapping.store_dir': str(Path(tmp) / 'store'),
                       'ros.output_dir': str(Path(tmp) / 'saved')})
        params_file = write_node_params(Path(tmp) / 'params.yaml', params)
        with open(Path(tmp) / 'node.log', 'w') as log:
            proc = subprocess.Popen([sys.executable, '-m', 'noksr_ros.ros.node', '--ros-args',
                                     '--params-file', str(params_file)], stdout=log,
                                    stderr=subprocess.STDOUT)
        context = rclpy.context.Context()
        rclpy.init(context=context)
        node = rclpy.create_node('noksr_soak', context=context)
        diagnostics: dict[str, str] = {}
        from diagnostic_msgs.msg import DiagnosticArray

        def on_diag(msg):
            for status in msg.status:
                if status.name.startswith('noksr_ros'):
                    diagnostics.update({kv.key: kv.value for kv in status.values})

        node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        stop = threading.Event()
        while not diagnostics:
            executor.spin_once(timeout_sec=0.1)
        pub_node = rclpy.create_node('noksr_soak_pub', context=context)
        thread = threading.Thread(target=_publisher_loop, args=(pub_node, scans, stop),
                                  daemon=True)
        t0 = time.monotonic()
        thread.start()
        next_sample = t0
        try:
            while time.monotonic() - t0 < args.minutes * 60 and proc.poll() is None:
                executor.spin_once(timeout_sec=0.1)
                if time.monotonic() >= next_sample:
                    next_sample += args.sample_s
                    samples.append({
                        't_s': round(time.monotonic() - t0, 1), 'rss_mb': _rss_mb(proc.pid),
                        **{k: int(float(diagnostics.get(k, 0))) for k in (
                            'queue_length', 'scans_integrated', 'drops_total', 'segments_total',
                            'segments_on_disk', 'points_in_memory', 'updates')},
                        **{k: float(diagnostics.get(k, 'nan')) for k in (
                            'heap_in_use_mb', 'heap_free_mb', 'heap_mmapped_mb')}})
        finally:
            stop.set()
            thread.join(5)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGINT)
            code = proc.wait(120)
            executor.shutdown()
            context.try_shutdown()
    _report(samples, args, alive, code)


WARMUP_S = 300.0  # the looping drive's map is complete (every cell at its cap) well before this
WINDOW_S = 300.0  # RSS medians over windows this long, so single forward passes do not dominate


def rss_trend(samples: list[dict]) -> dict[str, float]:
    """
    RSS after warm-up: least-squares slope (MB/min), medians of the first and last windows.

    RSS swings by a few hundred MB with each forward pass, so flatness is
    judged on window medians (last within 5 % of first), not on single samples.
    """
    warm = [s for s in samples if s['t_s'] >= WARMUP_S] or samples
    t = np.array([s['t_s'] for s in warm]) / 60.0
    rss = np.array([s['rss_mb'] for s in warm])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(warm) > 2 else float('nan')
    first = float(np.median(rss[t * 60 < warm[0]['t_s'] + WINDOW_S]))
    last = float(np.median(rss[t * 60 >= warm[-1]['t_s'] - WINDOW_S]))
    return {'rss_slope_mb_per_min': round(slope, 2),
            'rss_first_window_median_mb': round(first), 'rss_last_window_median_mb': round(last),
            'rss_last_over_first': round(last / first, 3),
            'rss_after_warmup_min_mb': float(rss.min()),
            'rss_after_warmup_max_mb': float(rss.max())}


def _report(samples: list[dict], args, alive: bool, code: int) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    per_minute = [s for s in samples if s['t_s'] % 60 < args.sample_s] or samples
    trend = rss_trend(samples)
    extra = {'minutes': args.minutes, 'node_alive_at_end': alive, 'node_exit_code': code,
             **trend, 'max_queue_length': max(s['queue_length'] for s in samples),
             'samples': samples}
    rows = [{'minute': round(s['t_s'] / 60, 1), **{k: v for k, v in s.items() if k != 't_s'}}
            for s in per_minute]
    report('soak', rows, ['minute', 'rss_mb', 'heap_in_use_mb', 'heap_free_mb', 'queue_length',
                          'scans_integrated', 'drops_total', 'segments_total', 'segments_on_disk',
                          'points_in_memory'], extra=extra)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    minutes = [s['t_s'] / 60 for s in samples]
    ax.plot(minutes, [s['rss_mb'] for s in samples], lw=2, label='RSS')
    ax.plot(minutes, [s.get('heap_in_use_mb', np.nan) for s in samples], lw=1,
            label='malloc heap in use')
    ax.axvline(WARMUP_S / 60, color='grey', ls=':', label='end of warm-up')
    ax.set_xlabel('minutes of 10 Hz input')
    ax.set_ylabel('node memory (MB)')
    ax.set_title('noksr node memory under a looping 10 Hz drive')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT_DIR / 'soak_rss.png', dpi=100)
    print(f"RSS after warm-up: {trend['rss_after_warmup_min_mb']:.0f}-"
          f"{trend['rss_after_warmup_max_mb']:.0f} MB, slope "
          f"{trend['rss_slope_mb_per_min']:+.2f} MB/min, median of the first "
          f"{WINDOW_S / 60:.0f} min {trend['rss_first_window_median_mb']} MB, of the last "
          f"{trend['rss_last_window_median_mb']} MB (x{trend['rss_last_over_first']}); node "
          f'alive at the end: {alive}, exit code {code}; plot {OUT_DIR / "soak_rss.png"}')


if __name__ == '__main__':
    main()

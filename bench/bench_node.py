"""
End to end through a real ROS 2 graph: a 10 Hz simulated 64-beam drive -> the node -> /noksr/mesh.

Configurations run one after the other on the same drive, each with a fresh node process:
- `carla`: the shipped `config/carla.yaml` (queue of 10 scans, reliable input); on a CPU that
  cannot keep up with 10 Hz, scans beyond the queue are dropped and counted.
- `best-effort`: the same with `sensor_data` (best-effort) input QoS.
- `no-drop`: a queue of 1000 scans, so every scan is integrated (late).
- `every-max-wait`, `per-scan-normals`: carla.yaml with the earlier scheduling (every segment
  rebuilt at every max_wait_s) or without the per-segment normals re-estimation, for comparison.

Reports per configuration: scans published / integrated / dropped / lost in transport (never
reached the node), integrated scans per second (first scan published to last integrated, at the
diagnostics' 1 Hz resolution), mesh latency (scan published -> marker received) median and p95,
time from the last scan until the map was complete, triangles.

    python -m bench.bench_node [--length-m 40] [--seed 1102] [--configs carla,no-drop]
    python -m bench.bench_node --configs carla,every-max-wait,per-scan-normals

Prints a table and writes out/bench/node.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile

from bench.common import report
from noksr_ros.config import read_yaml_values
from noksr_ros.data.drive import simulate_drive
from noksr_ros.ros.live_run import run_live_drive

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    'carla': {},
    'best-effort': {'ros.input_qos': 'sensor_data'},
    'no-drop': {'ros.queue_size': 1000, 'ros.input_qos_depth': 1000},
    # carla.yaml with the scheduling before max_wait_growth / max_wait_radius_m existed
    'every-max-wait': {'reconstruct.max_wait_growth': 0.0, 'reconstruct.max_wait_radius_m': 0.0},
    'per-scan-normals': {'normals.segment_knn': 0, 'normals.scan_pca': True},  # no re-estimation
}


def _params(name: str) -> dict:
    values = read_yaml_values(ROOT / 'config' / 'carla.yaml')
    values.update({'ros.pose_source': 'odometry', 'model.device': 'auto',
                   'ros.idle_flush_s': 1.0, **CONFIGS[name]})
    return values


def main() -> None:
    """Run the configurations and report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--length-m', type=float, default=40.0)
    parser.add_argument('--seed', type=int, default=1102)
    parser.add_argument('--configs', default='carla,best-effort,no-drop',
                        help=f'comma-separated, of {",".join(CONFIGS)}')
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix='noksr-bench-node-') as tmp:
        summary = simulate_drive(args.seed, Path(tmp) / 'drive', length_m=args.length_m,
                                 progress=False)
        for name in args.configs.split(','):
            live = run_live_drive(summary.bag_path, _params(name), Path(tmp) / name)
            median, p95 = live.latency_stats()
            rows.append({
                'config': name, 'device': live.diagnostics.get('device'),
                'published': live.scans_published, 'integrated': live.stat('scans_integrated'),
                'dropped': live.stat('drops_total'),
                'lost_in_transport': live.scans_published - live.stat('scans_integrated')
                - live.stat('drops_total'),
                'integrated_per_s': live.integration_rate(),
                'latency_median_s': median, 'latency_p95_s': p95,
                'settle_s': live.settle_s, 'play_s': live.play_s,
                'triangles': len(live.faces), 'messages': live.messages})
    report('node', rows, ['config', 'device', 'published', 'integrated', 'dropped',
                          'lost_in_transport',
                          'integrated_per_s', 'latency_median_s', 'latency_p95_s', 'settle_s',
                          'triangles'],
           extra={'drive': {'seed': args.seed, 'length_m': args.length_m, 'rate_hz': 10.0}})


if __name__ == '__main__':
    main()

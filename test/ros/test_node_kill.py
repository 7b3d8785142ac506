"""
SIGKILL the node process at random moments, many times, on one segment store (issue 8).

Each round starts the real node (`python -m noksr_ros.ros.node`, checkpointing every second) on
the same store, plays the drive into it and kills it at a random moment: while it integrates,
reconstructs, meshes, publishes or writes the store. After each kill the store must load with
every checksum valid, keep every segment of the previous round at least at its revision, hold
at least as many segments as the node last reported on disk, and index every stored segment
still awaiting reconstruction as pending. A last round resumes once more, publishes the stored
meshes from its start, takes the whole drive, and its saved mesh must reproduce the scene.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import open3d as o3d
import pytest

from node_harness import ROOT, GraphProbe, NodeProcess, ros_env, write_params
from noksr_ros.data.drive import simulate_drive
from noksr_ros.evaluation.compare import observed_points
from noksr_ros.evaluation.metrics import mesh_quality
from noksr_ros.mapping.store import SegmentStore
from noksr_ros.offline import npz_source
from noksr_ros.ros.live_run import map_complete
from noksr_ros.ros.mesh_collector import MeshCollector

SEED = 1004  # held out: training uses 1-3, evaluation 1001+
# Kill windows (seconds after the player starts): integrating, first meshes, later meshes and
# checkpoints, anywhere.
KILL_WINDOWS = ((3.0, 8.0), (8.0, 18.0), (18.0, 30.0), (3.0, 30.0))
# A small map (short range), so every phase of the node is reached within the windows.
RANGE = {'ingest.max_range_m': 20.0}
LIDAR = '/carla/ego_vehicle/lidar'
# What the shipped checkpoint gives live (see test_node.py) less what the kills may drop: 0.909
# on 2026-12-07.
MIN_FSCORE_10CM = 0.82


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    out = tmp_path_factory.mktemp('drive')
    simulate_drive(SEED, out, length_m=10.0)
    return out, list(npz_source(out).scans)


def _play(drive_dir, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, '-m', 'noksr_ros.cli.main', 'play', str(drive_dir / 'drive.mcap'),
         '--wait-for', f'{LIDAR},/carla/ego_vehicle/odometry'], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stored(store_dir) -> dict[int, int]:
    """Key -> revision of every stored segment; loading verifies each checksum."""
    store = SegmentStore(store_dir)
    segments = {key: store.load(key) for key in store.keys()}
    awaiting = {k for k, s in segments.items() if s.dirty.get('reconstruct', False)}
    assert awaiting <= set(store.read_pending()), awaiting - set(store.read_pending())
    return {k: s.revision for k, s in segments.items()}


def _start(params, env, log_path, probe) -> NodeProcess:
    probe.diagnostics = {}
    node = NodeProcess(params, env, log_path)
    probe.spin_until(lambda: probe.diagnostics or node.proc.poll() is not None, 90,
                     'the first diagnostics of the node')
    assert node.proc.poll() is None, node.log()
    return node


def test_random_kills_of_the_node_never_lose_a_checkpoint(tmp_path, drive):
    drive_dir, scans = drive
    domain = random.randint(150, 230)
    env = ros_env(domain, tmp_path / 'log')
    store_dir = tmp_path / 'store'
    params = write_params(tmp_path / 'params.yaml', {
        'ros.pose_source': 'odometry', 'ros.queue_size': 100, 'ros.input_qos': 'reliable',
        'ros.input_qos_depth': 1000, 'ros.update_rate_hz': 4.0, 'ros.publish_rate_hz': 4.0,
        'ros.idle_flush_s': 1.0, 'ros.pose_wait_s': 2.0, 'ros.output_dir': str(tmp_path / 'out'),
        'reconstruct.debounce_s': 0.3, 'reconstruct.max_segments_per_update': 2,
        'mapping.store_dir': str(store_dir), 'mapping.persist_period_s': 1.0,
        **RANGE})
    rng = random.Random(4)
    probe = GraphProbe(domain)
    last: dict[int, int] = {}
    try:
        for kill, window in enumerate(KILL_WINDOWS):
            node = _start(params, env, tmp_path / f'node{kill}.log', probe)
            player = _play(drive_dir, env)
            on_disk = 0
            start = time.monotonic()
            end = start + rng.uniform(*window)
            while time.monotonic() < end:
                probe.spin_for(0.1)
                on_disk = max(on_disk, probe.stat('segments_on_disk'))
            print('round', kill, 'killed after', round(time.monotonic() - start, 1), 's',
                  {k: probe.diagnostics.get(k) for k in ('scans_integrated', 'segments_meshed',
                                                         'segments_on_disk', 'segments_dirty')})
            node.proc.send_signal(signal.SIGKILL)
            assert node.stop() == -signal.SIGKILL
            player.kill()
            player.wait()
            state = _stored(store_dir)
            assert len(state) >= on_disk, (len(state), on_disk)
            assert set(last) <= set(state), set(last) - set(state)
            assert all(state[k] >= rev for k, rev in last.items())
            last = state
        assert last, 'no checkpoint was completed before any kill'

        # The resumed map is published from the start, before any new scan.
        with_mesh = sum(1 for k in last if len(SegmentStore(store_dir).load(k).mesh_faces))
        fresh = MeshCollector(probe.node)
        node = _start(params, env, tmp_path / 'node_final.log', probe)
        probe.spin_until(lambda: len(fresh.markers) >= with_mesh, 60,
                         'the resumed meshes to be published')
        player = _play(drive_dir, env)
        probe.spin_until(lambda: map_complete(probe.stat, len(scans)), 300,
                         'the drive to be meshed')
        assert player.wait(60) == 0
        saved = probe.call_trigger('/noksr/save_mesh')
        assert saved.success, saved.message
        assert node.stop() == 0, node.log()
    finally:
        probe.close()
    mesh = o3d.io.read_triangle_mesh(saved.message)
    gt = o3d.io.read_triangle_mesh(str(drive_dir / 'gt_mesh.ply'))
    quality = mesh_quality(np.asarray(mesh.vertices), np.asarray(mesh.triangles),
                           np.asarray(gt.vertices), np.asarray(gt.triangles), n_samples=200_000,
                           observed_points=observed_points(drive_dir, RANGE), with_p2p=False)
    print('map after', len(KILL_WINDOWS), 'kills', quality)
    assert quality['fscore@10cm'] >= MIN_FSCORE_10CM, quality
    final = _stored(store_dir)
    assert set(last) <= set(final) and all(final[k] >= rev for k, rev in last.items())

"""
SIGKILL the live pipeline at random points, many times, on one segment store (issue 8).

A child process runs the node's ROS-free core (`LivePipeline` with a store, checkpointing every
step) on a short drive, resuming the store it finds. After each completed checkpoint it prints the
state of every segment. The test kills it at a random moment (while it integrates, reconstructs,
meshes or writes the store), then checks that the store loads, that every segment is at least
the last completed version and identical to it when its revision is the same, and that the
pending-work index covers every stored segment still awaiting reconstruction. The next child
resumes the same store, so each kill also tests the resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import time

import numpy as np
from test_reconstructor import drive  # noqa: F401 - the shared short drive

import noksr_ros
from noksr_ros.mapping.store import SegmentStore

HERE = Path(__file__).resolve().parent
KILLS = 6

_CHILD = r"""
import hashlib, json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[4])
from test_reconstructor import config, model
from noksr_ros.live.pipeline import LivePipeline, LiveScan
from noksr_ros.live.pose_buffer import OK, PoseLookup

store, data, offset_s = sys.argv[1], np.load(sys.argv[2]), float(sys.argv[3])
cfg = config(**{'mapping.store_dir': store, 'mapping.keep_radius_m': 6.0,
                'mapping.persist_period_s': 1e-3, 'ros.idle_flush_s': 0.0,
                'ros.update_rate_hz': 100.0, 'ros.queue_size': 100})
poses = {}
pipe = LivePipeline(cfg, model(), torch.device('cpu'),
                    lambda stamp, frame: PoseLookup(OK, poses[stamp]))

def state():
    out = {}
    for key in pipe.rec.map.keys():
        seg = pipe.rec.map.peek(key)
        digest = hashlib.sha256(seg.mesh_vertices.tobytes() + seg.mesh_faces.tobytes()
                                + seg.points.tobytes()).hexdigest()
        out[str(key)] = [int(seg.revision), digest]
    return out

n = len(data['stamps'])
for i in range(10_000):
    k = i % n
    stamp = int((offset_s + 0.3 * i) * 1e9)
    poses[stamp] = data['poses'][k]
    pipe.submit(LiveScan(stamp, data[f'points{k}'], 'lidar'))
    before = pipe.checkpoints
    pipe.step()
    if pipe.checkpoints > before:  # the checkpoint is the last thing a step does
        print(json.dumps(state()), flush=True)
"""


def _digest(seg) -> str:
    """Hash of what a checkpoint must keep: points and mesh (same formula as the child's)."""
    return hashlib.sha256(seg.mesh_vertices.tobytes() + seg.mesh_faces.tobytes()
                          + seg.points.tobytes()).hexdigest()


def _check_store(store_dir: Path, last: dict[str, list]) -> int:
    """Loadable, nothing older than the last completed checkpoint, pending work indexed."""
    store = SegmentStore(store_dir)  # removes temp files of an interrupted write
    assert not any(p.name.startswith('.tmp-') for p in store_dir.iterdir())
    pending = set(store.read_pending())
    stored = {key: store.load(key) for key in store.keys()}  # StoreError if any is damaged
    for key, (revision, digest) in last.items():
        seg = stored[int(key)]
        assert seg.revision >= revision, (key, seg.revision, revision)
        if seg.revision == revision:
            assert _digest(seg) == digest, f'segment {key} changed without a new revision'
    awaiting = {key for key, seg in stored.items() if seg.dirty.get('reconstruct')}
    assert awaiting <= pending, awaiting - pending
    return len(stored)


def test_random_kills_never_lose_a_completed_checkpoint(tmp_path, drive):  # noqa: F811
    _, scans = drive
    data = tmp_path / 'scans.npz'
    np.savez(data, stamps=np.array([s for s, _, _ in scans]),
             poses=np.stack([p for _, _, p in scans]),
             **{f'points{k}': pts for k, (_, pts, _) in enumerate(scans)})
    store_dir = tmp_path / 'store'
    env = dict(os.environ, PYTHONPATH=str(Path(noksr_ros.__file__).resolve().parents[1]),
               OMP_NUM_THREADS='1')
    rng = random.Random(8)
    last: dict[str, list] = {}
    sizes = []
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, '-c', _CHILD, str(store_dir), str(data), str(100.0 * kill),
             str(HERE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(rng.randint(1, 3)):
                line = proc.stdout.readline()
                assert line, f'the child died: {proc.stderr.read()[-3000:]}'
                state = json.loads(line)
                # A resumed map keeps every segment of the last checkpoint.
                assert set(last) <= set(state), set(last) - set(state)
                last = state
            # Kill somewhere inside a later step: integrate, update, mesh or store write.
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        sizes.append(_check_store(store_dir, last))
    assert len(last) > 5 and sizes[-1] >= len(last)

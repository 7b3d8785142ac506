"""The demo pipeline on a short drive: simulated drive -> live node -> outputs and quality."""

import os
from pathlib import Path
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from noksr_ros.io.ply import read_ply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    from noksr_ros.ros.demo import run_demo

    out = tmp_path_factory.mktemp('demo')
    os.environ['ROS_DOMAIN_ID'] = str(random.randint(150, 230))
    report = run_demo(out, seed=1101, length_m=8.0, n_samples=200_000)
    return out, report


def test_demo_writes_mesh_picture_and_report(demo):
    import matplotlib.image as mpimg

    out, report = demo
    vertices, faces = read_ply(out / 'mesh.ply')
    assert len(faces) > 20_000 and np.isfinite(vertices).all()
    assert len(vertices) < len(faces)  # welded, not a triangle soup
    image = mpimg.imread(out / 'preview.png')
    assert image.shape[:2] == (1050, 1600)
    not_white = (image[..., :3] < 0.95).any(axis=2).mean()
    assert 0.1 < not_white < 0.9, not_white
    text = report.read_text()
    assert '![preview](preview.png)' in text and '| scans integrated |' in text


def test_demo_report_scores_ours_above_tsdf(demo):
    out, report = demo
    rows = {}
    for line in report.read_text().splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 9 and re.match(r'^[\d.]+$', cells[1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    ours, tsdf = rows['noksr (live node)'], rows['TSDF fusion 0.1 m (open3d)']
    assert ours[4] >= 80.0, ours  # F@10cm in %
    assert ours[6] >= ours[4] and ours[6] > tsdf[6], (ours, tsdf)  # F@10cm on the seen GT
    assert ours[0] < tsdf[0], (ours, tsdf)  # Chamfer-L1
    assert ours[2] < tsdf[2], (ours, tsdf)  # completeness


def test_demo_on_a_recorded_bag(demo, tmp_path):
    out, _ = demo
    env = dict(os.environ, PYTHONPATH=str(ROOT), ROS_DOMAIN_ID=str(random.randint(150, 230)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    run = subprocess.run([sys.executable, '-m', 'noksr_ros.cli.main', 'demo', '--bag',
                          str(out / 'drive' / 'drive.mcap'), '--out', str(tmp_path / 'bag'),
                          '--set', 'ingest.max_range_m=30'],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'no ground truth' in run.stdout
    _, faces = read_ply(tmp_path / 'bag' / 'mesh.ply')
    assert len(faces) > 20_000
    assert (tmp_path / 'bag' / 'preview.png').stat().st_size > 50_000
    assert 'Quality against' not in (tmp_path / 'bag' / 'report.md').read_text()


def test_demo_rejects_a_bad_parameter(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, '-m', 'noksr_ros.cli.main', 'demo', '--out',
                          str(tmp_path), '--set', 'ros.queue_sise=3'], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert 'ros.queue_sise' in run.stdout + run.stderr

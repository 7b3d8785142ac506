"""The `noksr` command line, run as a user would (a subprocess on the source tree)."""

import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def noksr(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'noksr_ros.cli.main', *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_simulate_writes_gt_mesh_npz_and_a_carla_bag(tmp_path):
    out = tmp_path / 'drive'
    noksr('simulate', '--seed', 5, '--out', out, '--length-m', 12, '--speed-mps', 10)
    assert (out / 'gt_mesh.ply').stat().st_size > 1000
    info = json.loads((out / 'npz' / 'drive.json').read_text())
    scans = sorted((out / 'npz').glob('scan_*.npz'))
    assert info['num_scans'] == len(scans) > 5
    with np.load(scans[0], allow_pickle=False) as scan:
        assert scan['points'].shape[1] == 3 and scan['points'].shape[0] > 50_000
    from noksr_ros.io.bag import BagDriveReader
    reader = BagDriveReader(out / 'drive.mcap')
    first = next(iter(reader))
    assert len(reader) == len(scans)
    with np.load(scans[0], allow_pickle=False) as scan:
        assert np.array_equal(first.points_sensor, scan['points'])
        assert np.allclose(first.T_map_sensor, scan['T_map_sensor'], atol=1e-9)


def test_config_command_validates_and_explains(tmp_path):
    ok = noksr('config', REPO / 'config' / 'default.yaml', '--set', 'mapping.halo_m=2')
    assert 'mapping.halo_m = 2.0' in ok.stdout
    bad = noksr('config', '--set', 'mapping.halo=2', check=False)
    assert bad.returncode == 2 and 'valid keys' in bad.stderr
    yaml_file = tmp_path / 'bad.yaml'
    yaml_file.write_text('mapping: [oops\n')
    broken = noksr('config', yaml_file, check=False)
    assert broken.returncode == 2 and 'not valid YAML' in broken.stderr


def test_simulate_refuses_bad_arguments(tmp_path):
    bad = noksr('simulate', '--seed', 1, '--out', tmp_path, '--storage', 'zip', check=False)
    assert bad.returncode == 2 and 'storage' in bad.stderr


def test_reconstruct_turns_a_bag_into_a_mesh_near_the_ground_truth(tmp_path):
    from scipy.spatial import cKDTree

    from noksr_ros.io.ply import read_ply
    drive = tmp_path / 'drive'
    noksr('simulate', '--seed', 6, '--out', drive, '--length-m', 1.5, '--speed-mps', 10)
    mesh = tmp_path / 'mesh.ply'
    proc = noksr('reconstruct', '--bag', drive / 'drive.mcap', '--out', mesh,
                 '--set', 'ingest.max_range_m=6', '--set', 'mapping.segment_size_m=6.4')
    assert 'faces' in proc.stdout
    vertices, faces = read_ply(mesh)
    timings = json.loads(mesh.with_suffix('.json').read_text())
    assert timings['faces'] == len(faces) and timings['scans'] >= 1
    assert 0 < timings['network_s'] < timings['wall_s']
    assert len(faces) > 1000
    gt_v, gt_f = read_ply(drive / 'gt_mesh.ply')
    import open3d as o3d
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(gt_v.astype(np.float32)),
                        o3d.core.Tensor(gt_f.astype(np.uint32)))
    dist = scene.compute_distance(o3d.core.Tensor(vertices.astype(np.float32))).numpy()
    assert np.median(dist) < 0.05 and np.mean(dist < 0.2) > 0.9
    assert cKDTree(vertices).query(drive_origin(drive))[0] < 8.0


def drive_origin(drive):
    with np.load(sorted((drive / 'npz').glob('scan_*.npz'))[0], allow_pickle=False) as scan:
        return scan['T_map_sensor'][:3, 3]


def test_reconstruct_needs_exactly_one_source_and_a_valid_checkpoint(tmp_path):
    proc = noksr('reconstruct', '--out', tmp_path / 'm.ply', check=False)
    assert proc.returncode == 2 and 'exactly one of --bag' in proc.stderr
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    drive = tmp_path / 'none'
    proc = noksr('reconstruct', '--npz', drive, '--out', tmp_path / 'm.ply',
                 '--set', f'model.checkpoint={bad}', check=False)
    assert proc.returncode == 2 and 'error:' in proc.stderr


def test_evaluate_scores_methods_on_one_drive_and_refuses_unknown_ones(tmp_path):
    drive = tmp_path / 'drive'
    noksr('simulate', '--seed', 7, '--out', drive, '--length-m', 1.5, '--speed-mps', 10,
          '--no-bag')
    out = tmp_path / 'eval.json'
    noksr('evaluate', drive, '--methods', 'tsdf_10cm', '--samples', 20000, '--out', out)
    (row,) = json.loads(out.read_text())['rows']
    assert row['method'] == 'tsdf_10cm' and 0 < row['cd_cm'] < 20 and 50 < row['f10'] <= 100
    assert row['time_s'] > 0 and row['peak_rss_mb'] > 50
    # the seen-GT crop is a subset of the proximity crop: recall can only rise, CD only fall
    assert row['r10_seen'] >= row['r10'] and row['cd_seen_cm'] <= row['cd_cm']
    proc = noksr('evaluate', drive, '--methods', 'marching_squares', check=False)
    assert proc.returncode == 2 and 'valid: noksr' in proc.stderr


def test_reconstruct_topic_flags_reach_the_bag_reader(tmp_path):
    drive = tmp_path / 'drive'
    noksr('simulate', '--seed', 6, '--out', drive, '--length-m', 0.5, '--speed-mps', 10,
          '--no-npz')
    proc = noksr('reconstruct', '--bag', drive / 'drive.mcap', '--out', tmp_path / 'm.ply',
                 '--lidar-topic', '/velodyne_points', check=False)
    assert proc.returncode == 2 and '/velodyne_points' in proc.stderr

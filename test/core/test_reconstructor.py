"""
The Reconstructor on a short simulated drive: seams, incremental = batch, store, determinism.

Small segments (3.2 m) put many segment borders into a short drive; the model is an untrained
small network, i.e. the classical point-to-plane estimate the trained heads correct, which is
enough to test the orchestration exactly.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from noksr_ros.config import NoksrConfig
from noksr_ros.data.lidar import LidarSimulator, LidarSpec
from noksr_ros.data.town import generate_town
from noksr_ros.data.trajectory import Trajectory
from noksr_ros.io.ply import read_ply
from noksr_ros.meshing import marching_cubes_sparse
from noksr_ros.model.backbone import BackboneSpec
from noksr_ros.model.decoder import DecoderSpec
from noksr_ros.model.noksr import ModelSpec, NoksrModel
from noksr_ros.reconstructor import Reconstructor
from noksr_ros.segment_grid import active_corners
from noksr_ros.segment_inference import trim_distance

SPEC = ModelSpec(backbone=BackboneSpec(enc_channels=(8, 16, 16, 16), dec_channels=(8, 8, 16),
                                       heads=(1, 2, 2, 2), patch_size=32),
                 decoder=DecoderSpec(hidden=16, head_hidden=16))


@pytest.fixture(scope='module')
def drive():
    town = generate_town(3, length_m=30.0)
    spec = replace(LidarSpec(), channels=16, azimuth_steps=360, dropout_rate=0.0)
    sim = LidarSimulator(town.mesh_vertices, town.mesh_faces, spec)
    traj = Trajectory(town.route, speed_mps=8.0)
    rng = np.random.default_rng(0)
    scans = []
    for i in range(4):
        pose = traj.pose_at(0.3 * i) @ spec.t_base_sensor()
        scans.append((1.0 + 0.3 * i, sim.scan(pose, rng).points, pose))
    return town, scans


def config(tmp_path=None, **over):
    values = {'mapping.segment_size_m': 3.2, 'mapping.halo_m': 0.6, 'ingest.max_range_m': 12.0,
              'reconstruct.debounce_s': 0.0, 'normals.knn': 12}
    if tmp_path is not None:
        values['mapping.store_dir'] = str(tmp_path / 'store')
        values['mapping.keep_radius_m'] = 8.0
    values.update(over)
    return NoksrConfig().with_overrides(values)


def model():
    torch.manual_seed(0)
    return NoksrModel(SPEC)


def run(cfg, scans, update_every=None):
    rec = Reconstructor(cfg, model())
    for i, (stamp, pts, pose) in enumerate(scans):
        rec.integrate(stamp, pts, pose)
        if update_every and i % update_every == 0:
            rec.update(max_segments=3)
    rec.finish()
    return rec


def _union_reference(rec):
    """One marching-cubes pass over all points and all segments' corners: the seamless mesh."""
    mesh = rec.config.meshing
    points = np.concatenate([rec.map.peek(k).points for k in rec.map.keys()])
    grids = [rec.map.peek(k).grid for k in rec.map.keys()]
    ijk = np.concatenate([g['ijk'] for g in grids])
    sdf = np.concatenate([g['sdf'] for g in grids])
    dist = np.concatenate([g['dist'] for g in grids])
    return points, ijk, sdf, dist, mesh


def _face_set(vertices, faces):
    """Faces as a set of sorted, rounded vertex-coordinate triples (index-free comparison)."""
    tri = np.round(vertices[faces] * 1e4).astype(np.int64)
    keyed = [tuple(sorted(map(tuple, t))) for t in tri]
    return set(keyed)


def test_segment_meshes_are_deterministic_and_weld_into_the_seamless_batch_mesh(drive, tmp_path):
    _, scans = drive
    rec = run(config(), scans)
    v1, f1 = rec.export_mesh(tmp_path / 'a.ply')
    v2, f2 = run(config(), scans).export_mesh(tmp_path / 'b.ply')
    assert len(rec.map.keys()) > 20 and len(f1) > 2000
    assert np.array_equal(v1, v2) and np.array_equal(f1, f2)
    assert len(np.unique(np.sort(f1, axis=1), axis=0)) == len(f1)

    points, ijk, sdf, dist, mesh = _union_reference(rec)
    # Every corner is owned by exactly one segment ...
    assert len(np.unique(ijk, axis=0)) == len(ijk)
    # ... the halo made each segment activate exactly the corners a batch run activates ...
    expected = active_corners(points, mesh.voxel_size_m, mesh.dilation_voxels)
    assert np.array_equal(np.unique(ijk, axis=0), np.unique(expected, axis=0))
    # ... with exact trimming distances ...
    order = np.lexsort(ijk.T[::-1])
    cap = 2 * mesh.udf_trim_m + 1e-3
    ref_dist = trim_distance(points, ijk[order], mesh.voxel_size_m, cap, mesh.trim_near_m,
                             mesh.udf_trim_m, mesh.trim_side_ratio, sdf[order])
    assert np.allclose(dist[order], ref_dist, atol=1e-6)
    # (the one-sided test acted: some corners near the data were pushed out to the cap)
    plain = trim_distance(points, ijk[order], mesh.voxel_size_m, cap)
    assert np.count_nonzero((ref_dist == np.float32(cap)) & (plain <= mesh.udf_trim_m)) > 0
    # ... and the welded segment meshes are exactly one marching-cubes pass over the union.
    verts, faces = marching_cubes_sparse(torch.from_numpy(ijk), torch.from_numpy(sdf),
                                         mesh.voxel_size_m, udf=torch.from_numpy(dist),
                                         udf_trim_m=mesh.udf_trim_m)
    verts = verts.numpy().astype(np.float64) + rec.origin_m
    assert len(faces) == len(f1)
    assert _face_set(verts, faces.numpy()) == _face_set(v1, f1)


def test_incremental_updates_end_in_the_batch_mesh(drive, tmp_path):
    _, scans = drive
    batch = run(config(), scans).export_mesh(tmp_path / 'batch.ply')
    incremental = run(config(), scans, update_every=1).export_mesh(tmp_path / 'inc.ply')
    assert np.array_equal(batch[0], incremental[0]) and np.array_equal(batch[1], incremental[1])


def test_eviction_keeps_every_segment_and_export_includes_the_store(drive, tmp_path):
    _, scans = drive
    memory_only = run(config(), scans)
    reference = memory_only.export_mesh(tmp_path / 'ref.ply')
    rec = run(config(tmp_path), scans, update_every=1)
    stats = rec.map.stats()
    assert stats.segments_evicted > 0
    assert stats.segments_in_memory < len(rec.map.keys())
    exported = rec.export_mesh(tmp_path / 'evicted.ply')
    assert np.array_equal(exported[1], reference[1]) and np.allclose(exported[0], reference[0])
    v, f = read_ply(tmp_path / 'evicted.ply')
    assert len(f) == len(reference[1])


def test_restart_on_the_store_resumes_the_map(drive, tmp_path):
    _, scans = drive
    first = run(config(tmp_path), scans[:3], update_every=1)
    first.map.flush()
    resumed = Reconstructor(config(tmp_path), model())
    assert resumed.origin_m is not None
    assert np.array_equal(resumed.origin_m, first.origin_m)
    assert sorted(resumed.map.keys()) == sorted(first.map.keys())
    for stamp, pts, pose in scans[3:]:
        resumed.integrate(stamp, pts, pose)
    resumed.finish()
    full = run(config(), scans)
    a = resumed.export_mesh(tmp_path / 'resumed.ply')
    b = full.export_mesh(tmp_path / 'full.ply')
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])


def test_bad_poses_are_rejected_and_empty_scans_are_harmless(drive):
    _, scans = drive
    rec = Reconstructor(config(), model())
    with pytest.raises(ValueError, match='4x4'):
        rec.integrate(1.0, scans[0][1], np.eye(3))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match='finite'):
        rec.integrate(1.0, scans[0][1], bad)
    result = rec.integrate(1.0, np.zeros((0, 3), np.float32), np.eye(4))
    assert result.points_kept == 0
    assert rec.finish().meshes == {}


def test_skipping_normals_of_points_in_full_cells_changes_nothing_in_the_map(drive):
    """Points whose density cell is full are dropped anyway: their normals are not computed."""
    from noksr_ros.ingest import ScanIngestor
    from noksr_ros.mapping.segment_map import SegmentMap

    _, scans = drive
    cfg = config(**{'mapping.max_points_per_cell': 1})
    ingest = ScanIngestor.from_config(cfg, scan_pca=True)
    maps = [SegmentMap.from_config(cfg.mapping, origin_m=scans[0][2][:3, 3]) for _ in range(2)]
    skipped = 0
    for stamp, points, pose in scans:
        full = maps[1].full_cells(ingest.prepare(points, pose, maps[1].origin_m)[0])
        skipped += int(full.sum())
        for seg_map, skip in zip(maps, (None, maps[1].full_cells)):
            local, normals = ingest.prepare(points, pose, seg_map.origin_m, skip=skip)
            seg_map.integrate(local, normals, stamp)
    assert skipped > 100  # consecutive scans overlap: points land in full cells
    assert maps[0].keys() == maps[1].keys()
    for key in maps[0].keys():
        a, b = maps[0].get(key), maps[1].get(key)
        assert np.array_equal(a.points, b.points) and np.array_equal(a.normals, b.normals)
    # Nothing is full in an empty map, and bad rows are simply not full.
    fresh = SegmentMap.from_config(cfg.mapping, origin_m=np.zeros(3))
    assert not fresh.full_cells(scans[0][1]).any()
    assert not maps[1].full_cells(np.full((3, 3), np.nan, np.float32)).any()


def test_ingest_without_scan_normals_keeps_every_point_with_its_ray_to_the_sensor(drive):
    """The default ingest: no per-scan PCA, so no point is dropped for its angle."""
    from noksr_ros.errors import ConfigError
    from noksr_ros.ingest import ScanIngestor

    _, scans = drive
    _, points, pose = scans[3]
    cfg = config()
    assert not cfg.normals.scan_pca
    origin = scans[0][2][:3, 3]
    local, rays = ScanIngestor.from_config(cfg).prepare(points, pose, origin)
    kept = ScanIngestor.from_config(cfg).filter.apply(points)
    assert len(local) == len(kept) > 1000
    to_sensor = (pose[:3, 3] - origin) - local.astype(np.float64)
    cosine = np.einsum('ij,ij->i', rays, to_sensor) / np.linalg.norm(to_sensor, axis=1)
    assert np.allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-5)
    assert cosine.min() > 1.0 - 1e-4
    pca_local, _ = ScanIngestor.from_config(cfg, scan_pca=True).prepare(points, pose, origin)
    assert len(pca_local) < len(local)  # grazing and degenerate points dropped
    with pytest.raises(ConfigError, match='scan_pca'):
        config(**{'normals.segment_knn': 0})

"""TSDF fusion and screened Poisson baselines on a simulated toy street."""

import numpy as np
import open3d as o3d
import pytest
from scipy.spatial.transform import Rotation

from noksr_ros.evaluation.baselines import (
    BaselineUnavailableError,
    poisson_depth,
    poisson_reconstruction,
    tsdf_fusion,
    vdbfusion_available,
    vdbfusion_fusion,
)
from noksr_ros.evaluation.metrics import mesh_quality
from noksr_ros.evaluation.ray_tsdf import RayTsdf
from noksr_ros.evaluation.toy_scene import LidarSpec, ToyLidar, drive_poses, toy_street_mesh
from noksr_ros.normals import estimate_normals_scan

EMPTY_SCAN = np.zeros((0, 3), np.float32)


@pytest.fixture(scope='module')
def street():
    """GT mesh, scans with tilted sensor frames, and the observed points in the map frame."""
    gt = toy_street_mesh()
    lidar = ToyLidar(*gt, LidarSpec(n_beams=64, n_azimuth=1024, range_noise_m=0.005))
    tilts = Rotation.from_euler('zyx', [[0, 0, 0], [35, 3, 0], [-60, 0, 4], [120, -2, -3],
                                        [200, 0, 0]], degrees=True)
    scans = []
    for i, pose in enumerate(drive_poses(5, (-10.0, -1.0), (10.0, 1.0))):
        pose[:3, :3] = pose[:3, :3] @ tilts[i].as_matrix()
        scans.append((lidar.scan(pose, seed=i), pose))
    observed = np.concatenate([p @ t[:3, :3].T + t[:3, 3] for p, t in scans])
    return gt, scans, observed


def score(mesh, street):
    (gt_v, gt_f), _, observed = street
    return mesh_quality(*mesh, gt_v, gt_f, n_samples=100_000, observed_points=observed)


@pytest.mark.parametrize('voxel_m', [0.1, 0.05])
def test_tsdf_fusion_reconstructs_the_street(street, voxel_m):
    vertices, faces = tsdf_fusion(street[1], voxel_m)
    assert vertices.dtype == np.float32 and faces.dtype == np.int64 and len(faces) > 1000
    q = score((vertices, faces), street)
    assert q['fscore@10cm'] > 0.8
    assert q['accuracy'] < voxel_m / 2


def test_poisson_reconstructs_the_street(street):
    points, normals = [], []
    for pts, pose in street[1]:
        res = estimate_normals_scan(pts)
        points.append(pts[res.keep] @ pose[:3, :3].T + pose[:3, 3])
        normals.append(res.normals @ pose[:3, :3].T)
    points, normals = np.concatenate(points), np.concatenate(normals)
    vertices, faces = poisson_reconstruction(points, normals, voxel_size_m=0.1)
    assert vertices.dtype == np.float32 and faces.dtype == np.int64
    assert score((vertices, faces), street)['fscore@10cm'] > 0.8


def test_poisson_trims_low_density_vertices():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(3000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals[normals[:, 2] > 0.0]  # an open hemisphere: Poisson closes it thinly
    points = normals.copy()
    kept = poisson_reconstruction(points, normals, depth=6, density_quantile=0.3)
    full = poisson_reconstruction(points, normals, depth=6, density_quantile=0.0)
    assert 0 < len(kept[0]) < 0.8 * len(full[0])
    assert np.all(np.isin(np.unique(kept[1]), np.arange(len(kept[0]))))


def test_block_layout_matches_open3d():
    fusion = RayTsdf(0.1, block_resolution=8)
    keys = np.array([[0, 0, 0], [-2, 3, 1]])
    buf = fusion._activate(keys)
    coords, flat = fusion.grid.voxel_coordinates_and_flattened_indices(
        o3d.core.Tensor(buf.astype(np.int32)))
    cells = np.rint(coords.numpy() / 0.1).astype(np.int64)
    block = np.floor_divide(cells, 8)
    local = cells - block * 8
    mine = ((local[:, 2] * 8 + local[:, 1]) * 8 + local[:, 0])
    mine += buf[[int(np.flatnonzero((keys == b).all(1))[0]) for b in block]] * 512
    np.testing.assert_array_equal(mine, flat.numpy())


def test_a_single_wall_scan_gives_a_flat_mesh_at_the_wall():
    ys, zs = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-2, 2, 150))
    wall = np.stack([np.full(ys.size, 5.0), ys.ravel(), zs.ravel()], 1).astype(np.float32)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    vertices, faces = tsdf_fusion([(wall, pose)], 0.1)
    assert len(faces) > 100
    error = np.abs(vertices[:, 0] - 6.0)  # the wall is at x = 5 + 1
    # Its rim (one cell beyond the last rays) bends toward the sensor: check the inside only.
    inside = (np.abs(vertices[:, 1] - 2.0) < 2.8) & (np.abs(vertices[:, 2] - 3.0) < 1.8)
    assert np.median(error) < 0.005 and error[inside].max() < 0.04


def test_empty_inputs_give_empty_meshes():
    for vertices, faces in (tsdf_fusion([], 0.1), tsdf_fusion([(EMPTY_SCAN, np.eye(4))], 0.1),
                            poisson_reconstruction(EMPTY_SCAN, EMPTY_SCAN)):
        assert vertices.shape == (0, 3) and faces.shape == (0, 3)


def test_out_of_range_points_are_ignored():
    far = np.array([[100.0, 0.0, 0.0]], np.float32)
    vertices, faces = tsdf_fusion([(far, np.eye(4))], 0.1, max_range_m=80.0)
    assert len(faces) == 0


def test_poisson_depth_follows_extent_and_voxel():
    pts = np.array([[0.0, 0.0, 0.0], [100.0, 10.0, 5.0]])
    assert poisson_depth(pts, 0.1) == 11  # 110 m / 2^11 = 5.4 cm
    assert poisson_depth(pts, 0.05) == 12
    assert poisson_depth(pts, 0.05, max_depth=10) == 10
    assert poisson_depth(pts[:1], 0.1) == 1


def test_vdbfusion_is_optional():
    # It is not a dependency: without it the baseline says so; with it, it runs.
    if vdbfusion_available():
        assert len(vdbfusion_fusion([], 0.1)[1]) == 0
    else:
        with pytest.raises(BaselineUnavailableError, match='not available'):
            vdbfusion_fusion([], 0.1)


@pytest.mark.parametrize('kwargs', [{'voxel_size_m': 0.0}, {'voxel_size_m': 0.1,
                                                            'sdf_trunc_m': 0.05}])
def test_bad_tsdf_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        tsdf_fusion([], **kwargs)


def test_bad_scan_shapes_are_rejected():
    with pytest.raises(ValueError, match='points_sensor'):
        tsdf_fusion([(np.zeros((4, 2)), np.eye(4))], 0.1)
    with pytest.raises(ValueError, match='T_map_sensor'):
        tsdf_fusion([(np.zeros((4, 3)), np.eye(3))], 0.1)
    with pytest.raises(ValueError, match='max_range_m'):
        tsdf_fusion([(np.ones((4, 3)), np.eye(4))], 0.1, max_range_m=np.inf)
    with pytest.raises(ValueError, match='normals_map'):
        poisson_reconstruction(np.zeros((5, 3)), np.zeros((4, 3)))

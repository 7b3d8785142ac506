"""Mesh-quality metrics: surface distances, F-scores, cropping, determinism."""

import numpy as np
import open3d as o3d
import pytest

from noksr_ros.evaluation.metrics import (
    crop_to_observed,
    mesh_quality,
    sample_mesh,
    sample_mesh_with_normals,
    surface_distance,
    tau_key,
)


def sphere(radius_m: float, resolution: int = 60) -> tuple[np.ndarray, np.ndarray]:
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=radius_m, resolution=resolution)
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def square(x0: float, size_m: float = 2.0, z_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A flat square of two triangles at z_m, x in [x0, x0 + size_m], y in [0, size_m]."""
    v = np.array([[x0, 0, z_m], [x0 + size_m, 0, z_m], [x0 + size_m, size_m, z_m],
                  [x0, size_m, z_m]], dtype=np.float64)
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def merge(*meshes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    verts, faces, base = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + base)
        base += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def test_samples_are_uniform_by_area_and_on_the_surface():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [8, 0, 0], [5, 2, 0]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3.0
    pts = sample_mesh(verts, faces, 70_000, seed=1)
    assert pts.shape == (70_000, 3)
    share_small = np.mean(pts[:, 0] < 2.0)
    assert share_small == pytest.approx(0.5 / 3.5, abs=0.01)
    assert np.max(surface_distance(verts, faces, pts)) < 1e-5


def test_sampling_is_seeded():
    v, f = sphere(1.0, 20)
    np.testing.assert_array_equal(sample_mesh(v, f, 500, 3), sample_mesh(v, f, 500, 3))
    assert not np.array_equal(sample_mesh(v, f, 500, 3), sample_mesh(v, f, 500, 4))


def test_sampling_nothing_or_an_empty_mesh_gives_no_points():
    v, f = sphere(1.0, 10)
    assert sample_mesh(v, f, 0).shape == (0, 3)
    assert sample_mesh(np.zeros((0, 3)), np.zeros((0, 3), int), 10).shape == (0, 3)
    flat = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float)  # zero area
    assert sample_mesh(flat, np.array([[0, 1, 2]]), 10).shape == (0, 3)


def test_a_mesh_against_itself_is_perfect():
    v, f = sphere(2.0)
    q = mesh_quality(v, f, v, f, n_samples=50_000)
    assert q['chamfer_l1'] < 1e-5 and q['accuracy'] < 1e-5 and q['completeness'] < 1e-5
    for tau in (0.05, 0.10, 0.20):
        assert q[tau_key('fscore', tau)] == 1.0
        assert q[tau_key('precision', tau)] == q[tau_key('recall', tau)] == 1.0
    # Point-to-sample distances are biased upward even for identical meshes.
    assert q['chamfer_l1_p2p'] > 100 * q['chamfer_l1']


def test_a_sphere_2cm_larger_scores_2cm():
    gt_v, gt_f = sphere(1.0, 100)
    pred_v, pred_f = sphere(1.02, 100)
    q = mesh_quality(pred_v, pred_f, gt_v, gt_f, n_samples=50_000, taus_m=(0.01, 0.05))
    assert q['chamfer_l1'] == pytest.approx(0.02, abs=1e-3)
    assert q['accuracy'] == pytest.approx(0.02, abs=1e-3)
    assert q['completeness'] == pytest.approx(0.02, abs=1e-3)
    assert q['fscore@1cm'] == 0.0
    assert q['fscore@5cm'] == 1.0


def test_cropping_excludes_unobserved_ground_truth():
    seen, unseen = square(0.0), square(10.0)
    gt_v, gt_f = merge(seen, unseen)
    observed = sample_mesh(*seen, 2000, seed=5)
    full = mesh_quality(*seen, gt_v, gt_f, n_samples=20_000)
    cropped = mesh_quality(*seen, gt_v, gt_f, n_samples=20_000, observed_points=observed,
                           crop_m=0.5)
    assert full['recall@10cm'] == pytest.approx(0.5, abs=0.02)
    assert cropped['recall@10cm'] == 1.0 and cropped['completeness'] < 1e-5
    assert cropped['n_gt_samples'] == pytest.approx(10_000, rel=0.03)


def test_seen_scores_leave_out_the_unseen_back_of_a_thin_wall():
    front, back = square(0.0), square(0.0, z_m=-0.2)  # a 0.2 m slab seen from above only
    gt_v, gt_f = merge(front, back)
    observed = sample_mesh(*front, 4000, seed=8)
    observed[:, 2] += np.random.default_rng(9).normal(0.0, 0.02, len(observed))  # range noise
    q = mesh_quality(*front, gt_v, gt_f, n_samples=20_000, observed_points=observed,
                     surface_tol_m=0.08)
    # the proximity crop keeps the back face (0.2 m from the points), the seen crop does not
    assert q['recall@10cm'] == pytest.approx(0.5, abs=0.03)
    assert q['recall@10cm_seen'] == 1.0 and q['fscore@10cm_seen'] == 1.0
    assert q['n_gt_samples_seen'] == pytest.approx(q['n_gt_samples'] / 2, rel=0.05)
    assert 'accuracy_seen' not in q and 'precision@10cm_seen' not in q
    with pytest.raises(ValueError, match='observed_points'):
        mesh_quality(*front, gt_v, gt_f, n_samples=1000, surface_tol_m=0.08)


def test_samples_with_normals_are_the_same_samples_with_unit_face_normals():
    verts, faces = sphere(1.0, 12)
    pts, nrm = sample_mesh_with_normals(verts, faces, 5000, seed=3)
    assert np.array_equal(pts, sample_mesh(verts, faces, 5000, seed=3))
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1.0)
    # a sphere's face normals are nearly radial
    radial = pts / np.linalg.norm(pts, axis=1)[:, None]
    assert np.abs(np.einsum('ij,ij->i', nrm, radial)).min() > 0.9


def test_prediction_crop_drops_extrapolated_surface():
    gt = square(0.0)
    pred_v, pred_f = merge(gt, square(10.0, z_m=1.0))  # an invented far-away patch
    observed = sample_mesh(*gt, 2000, seed=6)
    plain = mesh_quality(pred_v, pred_f, *gt, n_samples=20_000, observed_points=observed)
    cropped = mesh_quality(pred_v, pred_f, *gt, n_samples=20_000, observed_points=observed,
                           pred_crop_m=0.5)
    assert plain['precision@10cm'] == pytest.approx(0.5, abs=0.02)
    assert cropped['precision@10cm'] == 1.0 and cropped['accuracy'] < 1e-5


def test_results_are_deterministic_with_the_seed():
    gt_v, gt_f = sphere(1.0, 30)
    pred_v, pred_f = sphere(1.03, 17)
    a = mesh_quality(pred_v, pred_f, gt_v, gt_f, n_samples=5000, seed=7)
    b = mesh_quality(pred_v, pred_f, gt_v, gt_f, n_samples=5000, seed=7)
    c = mesh_quality(pred_v, pred_f, gt_v, gt_f, n_samples=5000, seed=8)
    assert a == b
    assert a['chamfer_l1'] != c['chamfer_l1']
    d = mesh_quality(pred_v, pred_f, gt_v, gt_f, n_samples=5000, seed=7, with_p2p=False)
    assert 'chamfer_l1_p2p' not in d and d['chamfer_l1'] == a['chamfer_l1']


def test_an_empty_prediction_scores_zero_without_crashing():
    gt_v, gt_f = sphere(1.0, 20)
    q = mesh_quality(np.zeros((0, 3)), np.zeros((0, 3), int), gt_v, gt_f, n_samples=1000)
    assert np.isnan(q['accuracy']) and np.isinf(q['completeness']) and np.isinf(q['chamfer_l1'])
    assert q['fscore@10cm'] == q['precision@10cm'] == q['recall@10cm'] == 0.0
    assert np.isinf(q['chamfer_l1_p2p']) and q['n_pred_samples'] == 0


def test_far_from_origin_frames_keep_millimetre_precision():
    v, f = sphere(1.0, 60)
    offset = np.array([3500.0, -2200.0, 40.0])
    q = mesh_quality(v + offset, f, v + offset, f, n_samples=20_000)
    assert q['chamfer_l1'] < 1e-4


def test_crop_mask_marks_points_near_observations():
    obs = np.array([[0.0, 0.0, 0.0]])
    pts = np.array([[0.3, 0, 0], [0.6, 0, 0], [0, 0, -0.49]])
    np.testing.assert_array_equal(crop_to_observed(pts, obs, 0.5), [True, False, True])
    assert not crop_to_observed(pts, np.zeros((0, 3)), 0.5).any()


@pytest.mark.parametrize('faces', [np.array([[0, 1, 5]]), np.array([[0, 1]]),
                                   np.array([[0.0, 1.0, 2.0]])])
def test_bad_meshes_are_rejected(faces):
    v = np.zeros((3, 3))
    with pytest.raises(ValueError):
        mesh_quality(v, faces, *sphere(1.0, 10), n_samples=10)


def test_bad_arguments_are_rejected():
    v, f = sphere(1.0, 10)
    with pytest.raises(ValueError, match='pred_crop_m'):
        mesh_quality(v, f, v, f, n_samples=10, pred_crop_m=0.5)
    with pytest.raises(ValueError, match='no ground-truth samples'):
        mesh_quality(v, f, v, f, n_samples=100, observed_points=np.full((1, 3), 50.0))
    with pytest.raises(ValueError, match='taus_m'):
        mesh_quality(v, f, v, f, n_samples=10, taus_m=(0.0,))
    with pytest.raises(ValueError, match='no faces'):
        mesh_quality(v, f, v, np.zeros((0, 3), int), n_samples=10)

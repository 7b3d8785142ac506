"""Rigid transform maths and pose interpolation without extrapolation."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from noksr_ros.io.transforms import (
    PoseTrack,
    check_rigid,
    compose,
    interpolate_poses,
    invert,
    matrix_to_pose,
    pose_to_matrix,
    transform_points,
)

S = 1_000_000_000  # ns per second


def planar_pose(yaw_rad, x, y, z=0.0):
    pose = np.eye(4)
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = (x, y, z)
    return pose


def random_pose(rng):
    return pose_to_matrix(rng.normal(size=3) * 10, rng.normal(size=4))


def test_pose_to_matrix_quarter_turn_about_z():
    half = np.sqrt(0.5)
    pose = pose_to_matrix([1.0, 2.0, 3.0], [0.0, 0.0, half, half])
    np.testing.assert_allclose(pose, [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]],
                               atol=1e-15)
    assert pose.dtype == np.float64


def test_pose_to_matrix_normalises_and_batches():
    poses = pose_to_matrix(np.zeros((2, 3)), [[0, 0, 0, 2.0], [0, 0, 0, -5.0]])
    np.testing.assert_allclose(poses, np.broadcast_to(np.eye(4), (2, 4, 4)), atol=1e-15)


@pytest.mark.parametrize('quat', [[0, 0, 0, 0], [np.nan, 0, 0, 1]])
def test_pose_to_matrix_rejects_degenerate_quaternions(quat):
    with pytest.raises(ValueError, match='quat_xyzw must be finite and non-zero'):
        pose_to_matrix([0, 0, 0], quat)


def test_pose_to_matrix_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r'translation must be \(..., 3\)'):
        pose_to_matrix([0, 0], [0, 0, 0, 1])


def test_matrix_to_pose_round_trip():
    rng = np.random.default_rng(0)
    pose = random_pose(rng)
    translation, quat = matrix_to_pose(pose)
    np.testing.assert_allclose(pose_to_matrix(translation, quat), pose, atol=1e-12)
    assert abs(np.linalg.norm(quat) - 1) < 1e-12


def test_check_rigid_rejects_non_rigid():
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match='not rigid'):
        check_rigid(scaled)
    mirrored = np.diag([-1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match='not rigid'):
        check_rigid(mirrored)
    with pytest.raises(ValueError, match=r'finite \(4, 4\)'):
        check_rigid(np.eye(3))


def test_invert_and_compose_follow_frame_naming():
    rng = np.random.default_rng(1)
    T_a_b, T_b_c = random_pose(rng), random_pose(rng)  # noqa: N806
    p_c = rng.normal(size=(5, 3))
    via_b = transform_points(T_a_b, transform_points(T_b_c, p_c))
    np.testing.assert_allclose(transform_points(compose(T_a_b, T_b_c), p_c), via_b, atol=1e-9)
    np.testing.assert_allclose(compose(T_a_b, invert(T_a_b)), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(invert(T_a_b), np.linalg.inv(T_a_b), atol=1e-12)
    batch = np.stack([T_a_b, T_b_c])
    np.testing.assert_allclose(compose(batch, invert(batch)), np.stack([np.eye(4)] * 2),
                               atol=1e-12)
    np.testing.assert_array_equal(compose(), np.eye(4))


def test_transform_points_keeps_float32():
    xyz = np.ones((3, 3), dtype=np.float32)
    out = transform_points(planar_pose(0.0, 1.0, 0.0), xyz)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], [2, 2, 2])


def test_interpolation_linear_translation_and_slerp_yaw():
    stamps = np.array([0, 1, 2]) * S
    poses = np.stack([planar_pose(0.0, 0, 0), planar_pose(0.4, 2, -2, 1), planar_pose(1.0, 4, 0)])
    query = np.array([S // 4, 3 * S // 2])
    result = interpolate_poses(stamps, poses, query, max_gap_s=1.0)
    assert result.valid.tolist() == [True, True]
    np.testing.assert_allclose(result.poses[0], planar_pose(0.1, 0.5, -0.5, 0.25), atol=1e-12)
    np.testing.assert_allclose(result.poses[1], planar_pose(0.7, 3.0, -1.0, 0.5), atol=1e-12)


def test_slerp_takes_the_short_way_round():
    stamps = np.array([0, S])
    poses = np.stack([planar_pose(np.deg2rad(170), 0, 0), planar_pose(np.deg2rad(-170), 0, 0)])
    mid = interpolate_poses(stamps, poses, [S // 2], 1.0).poses[0]
    yaw = Rotation.from_matrix(mid[:3, :3]).as_euler('zyx')[0]
    assert abs(abs(yaw) - np.pi) < 1e-9


def test_sample_stamps_return_samples_bit_for_bit():
    rng = np.random.default_rng(2)
    stamps = np.array([5, 17, 40]) * S // 10
    poses = np.stack([random_pose(rng) for _ in stamps])
    result = PoseTrack(stamps, poses, max_gap_s=0.0).at(stamps)
    assert result.valid.all()
    np.testing.assert_array_equal(result.poses, poses)


def test_no_extrapolation_and_gap_rule():
    # samples at 0 s, 1 s, 1.1 s; max gap 0.2 s
    stamps = np.array([0, S, S + S // 10])
    poses = np.stack([planar_pose(0, k, 0) for k in range(3)])
    track = PoseTrack(stamps, poses, max_gap_s=0.2)
    query = np.array([-1, 0, S // 10, S // 2, 85 * S // 100, 79 * S // 100, S + S // 10,
                      S + S // 10 + 1])
    result = track.at(query)
    assert result.valid.tolist() == [False, True, True, False, True, False, True, False]
    assert np.isnan(result.poses[~result.valid]).all()
    assert np.isfinite(result.poses[result.valid]).all()
    np.testing.assert_allclose(result.poses[2, 0, 3], 0.1, atol=1e-12)


def test_unsorted_and_duplicate_samples():
    stamps = np.array([2 * S, 0, S, S])
    poses = np.stack([planar_pose(0, 2, 0), planar_pose(0, 0, 0), planar_pose(0, 1, 0),
                      planar_pose(0, 99, 0)])
    track = PoseTrack(stamps, poses, max_gap_s=1.0)
    assert len(track) == 3
    result = track.at([S // 2, S, 3 * S // 2])
    np.testing.assert_allclose(result.poses[:, 0, 3], [0.5, 1.0, 1.5], atol=1e-12)


def test_single_and_empty_tracks():
    single = PoseTrack(np.array([S]), planar_pose(0, 3, 0)[None], max_gap_s=5.0)
    result = single.at([S, S + 1, S - 1])
    assert result.valid.tolist() == [True, False, False]
    np.testing.assert_array_equal(result.poses[0], planar_pose(0, 3, 0))
    empty = PoseTrack(np.zeros(0, np.int64), np.zeros((0, 4, 4)), max_gap_s=1.0)
    assert not empty.at([0, 1]).valid.any()


def test_track_argument_checks():
    with pytest.raises(ValueError, match=r'poses must be \(2, 4, 4\)'):
        PoseTrack(np.array([0, 1]), np.zeros((3, 4, 4)), 1.0)
    with pytest.raises(ValueError, match='max_gap_s must be >= 0'):
        PoseTrack(np.array([0]), np.eye(4)[None], -1.0)


def test_nanosecond_precision_late_stamps():
    base = 1_700_000_000 * S  # a 2023 epoch stamp: float seconds would lose the nanoseconds
    stamps = np.array([base, base + 2])
    poses = np.stack([planar_pose(0, 0, 0), planar_pose(0, 2, 0)])
    result = PoseTrack(stamps, poses, max_gap_s=0.0).at([base + 1])
    assert not result.valid[0]
    result = PoseTrack(stamps, poses, max_gap_s=1e-9).at([base + 1])
    assert result.valid[0]
    np.testing.assert_allclose(result.poses[0, 0, 3], 1.0, atol=1e-12)


def test_jumps_faster_than_the_limits_invalidate_only_the_queries_between():
    # 10 m/s for 1 s, a 50 m teleport within 0.1 s, then a 90 degree turn within 0.1 s.
    stamps = np.array([0, S, S + S // 10, 2 * S, 2 * S + S // 10])
    poses = np.stack([planar_pose(0, 0, 0), planar_pose(0, 10, 0), planar_pose(0, 60, 0),
                      planar_pose(0, 69, 0), planar_pose(np.pi / 2, 69, 0)])
    query = np.array([S // 2, S, S + S // 20, S + S // 10, 2 * S + S // 20])
    free = PoseTrack(stamps, poses, max_gap_s=1.0).at(query)
    assert free.valid.all() and not free.jump.any()
    limited = PoseTrack(stamps, poses, max_gap_s=1.0, max_speed_mps=70, max_turn_dps=360)
    result = limited.at(query)
    assert result.jump.tolist() == [False, False, True, False, True]
    assert result.valid.tolist() == [True, True, False, True, False]
    assert np.isnan(result.poses[result.jump]).all()
    # The samples on either side of a jump are still exact poses.
    np.testing.assert_array_equal(result.poses[[1, 3]], poses[[1, 2]])
    # A turn at 900 deg/s is within a limit of 1000 deg/s.
    loose = PoseTrack(stamps, poses, 1.0, max_speed_mps=600, max_turn_dps=1000)
    assert loose.at(query).valid.all()

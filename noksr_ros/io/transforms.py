"""
Rigid transform maths on 4x4 float64 matrices (numpy/scipy, no ROS).

Naming: `T_a_b` maps points from frame b to frame a (`p_a = T_a_b @ p_b`), so
`T_a_c = compose(T_a_b, T_b_c)`. Quaternions are (x, y, z, w), as in ROS messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def pose_to_matrix(translation: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """
    (3,) translation + (4,) quaternion x, y, z, w -> (4, 4) float64; batched over leading axes.

    The quaternion is normalised; a zero or non-finite one raises ValueError.
    """
    t = np.asarray(translation, dtype=np.float64)
    q = np.asarray(quat_xyzw, dtype=np.float64)
    if t.shape[-1:] != (3,) or q.shape[-1:] != (4,) or t.shape[:-1] != q.shape[:-1]:
        raise ValueError(f'translation must be (..., 3) and quat_xyzw (..., 4) with the same '
                         f'leading shape, got {t.shape} and {q.shape}')
    norm = np.linalg.norm(q, axis=-1)
    if not (np.all(np.isfinite(norm)) and np.all(norm > 1e-9)) or not np.all(np.isfinite(t)):
        raise ValueError('quat_xyzw must be finite and non-zero and translation finite')
    out = np.zeros(t.shape[:-1] + (4, 4))
    out[..., :3, :3] = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(
        t.shape[:-1] + (3, 3))
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose(transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) rigid transform -> ((3,) translation, (4,) unit quaternion x, y, z, w)."""
    transform = check_rigid(transform)
    return transform[:3, 3].copy(), Rotation.from_matrix(transform[:3, :3]).as_quat()


def check_rigid(transform: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Return `transform` as (4, 4) float64; ValueError if it is not a finite rigid transform."""
    transform = np.asarray(transform, dtype=np.float64)
    if transform.shape != (4, 4) or not np.all(np.isfinite(transform)):
        raise ValueError(f'expected a finite (4, 4) transform, got shape {transform.shape}')
    rot = transform[:3, :3]
    if (not np.allclose(transform[3], [0.0, 0.0, 0.0, 1.0], atol=tol)
            or not np.allclose(rot.T @ rot, np.eye(3), atol=tol) or np.linalg.det(rot) < 0):
        raise ValueError('transform is not rigid: its rotation part must be orthonormal with '
                         'determinant +1 and its last row 0 0 0 1')
    return transform


def invert(transform: np.ndarray) -> np.ndarray:
    """Inverse of rigid (..., 4, 4) transforms: `invert(T_a_b) = T_b_a`."""
    transform = np.asarray(transform, dtype=np.float64)
    rot_inv = np.swapaxes(transform[..., :3, :3], -1, -2)
    out = np.zeros_like(transform)
    out[..., :3, :3] = rot_inv
    out[..., :3, 3] = -np.einsum('...ij,...j->...i', rot_inv, transform[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def compose(*transforms: np.ndarray) -> np.ndarray:
    """Matrix product left to right: `compose(T_a_b, T_b_c) = T_a_c`; broadcasts over batches."""
    if not transforms:
        return np.eye(4)
    out = np.asarray(transforms[0], dtype=np.float64)
    for transform in transforms[1:]:
        out = out @ np.asarray(transform, dtype=np.float64)
    return out


def transform_points(transform: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) transform to (N, 3) points; returns (N, 3) in the dtype of `xyz`."""
    transform = np.asarray(transform, dtype=np.float64)
    xyz = np.asarray(xyz)
    return (xyz @ transform[:3, :3].T + transform[:3, 3]).astype(xyz.dtype, copy=False)


@dataclass(frozen=True)
class PoseQuery:
    """
    Poses looked up at query stamps: (K, 4, 4) float64 (NaN where invalid) and (K,) bool.

    `jump` (K,) bool marks invalid queries that fell between two samples the vehicle could not
    have moved between (a teleport or an odometry reset): interpolating there smears geometry.
    """

    poses: np.ndarray
    valid: np.ndarray
    jump: np.ndarray | None = None


class PoseTrack:
    """
    A timeline of poses interpolated without extrapolation.

    Translation is interpolated linearly and rotation by spherical linear interpolation between
    the two samples around a query stamp. A query is invalid when it lies outside
    [first, last] sample stamp, when its nearest sample is farther than `max_gap_s`, or when the
    two samples around it are a jump: faster than `max_speed_mps` or `max_turn_dps` (a teleport
    or an odometry reset; samples exactly at the query stamp stay valid).
    """

    def __init__(self, stamps_ns: np.ndarray, poses: np.ndarray, max_gap_s: float,
                 max_speed_mps: float = np.inf, max_turn_dps: float = np.inf) -> None:
        """
        Build from (M,) int64 sample stamps (any order) and (M, 4, 4) rigid transforms.

        Duplicate stamps keep their first sample.
        """
        stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        poses = np.asarray(poses, dtype=np.float64)
        if poses.shape != (stamps.size, 4, 4):
            raise ValueError(f'poses must be ({stamps.size}, 4, 4) to match stamps_ns, got '
                             f'{poses.shape}')
        if not max_gap_s >= 0:
            raise ValueError(f'max_gap_s must be >= 0, got {max_gap_s}')
        self.stamps_ns, first = np.unique(stamps, return_index=True)
        self.poses = poses[first]
        self.max_gap_ns = int(round(max_gap_s * 1e9))
        self._jump_after = _jumps(self.stamps_ns, self.poses, max_speed_mps, max_turn_dps)
        self._slerp = None
        if self.stamps_ns.size >= 2:
            self._slerp = Slerp(self._seconds(self.stamps_ns),
                                Rotation.from_matrix(self.poses[:, :3, :3]))

    def __len__(self) -> int:
        """Number of distinct pose samples."""
        return int(self.stamps_ns.size)

    def _seconds(self, stamps_ns: np.ndarray) -> np.ndarray:
        """Seconds since the first sample, float64 (keeps ns precision for days)."""
        return (stamps_ns - self.stamps_ns[0]).astype(np.float64) * 1e-9

    def valid(self, stamps_ns: np.ndarray) -> np.ndarray:
        """(K,) bool: which query stamps (K,) int64 ns can be interpolated."""
        q = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        if self.stamps_ns.size == 0:
            return np.zeros(q.shape, dtype=bool)
        inside = (q >= self.stamps_ns[0]) & (q <= self.stamps_ns[-1])
        right = np.searchsorted(self.stamps_ns, q).clip(0, self.stamps_ns.size - 1)
        left = (right - 1).clip(0, None)
        nearest = np.minimum(np.abs(q - self.stamps_ns[left]), np.abs(self.stamps_ns[right] - q))
        return inside & (nearest <= self.max_gap_ns) & ~self.in_jump(q)

    def in_jump(self, stamps_ns: np.ndarray) -> np.ndarray:
        """(K,) bool: query stamps strictly between two samples that are a jump."""
        q = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        if self.stamps_ns.size < 2:
            return np.zeros(q.shape, dtype=bool)
        right = np.searchsorted(self.stamps_ns, q).clip(1, self.stamps_ns.size - 1)
        between = (q > self.stamps_ns[right - 1]) & (q < self.stamps_ns[right])
        return between & self._jump_after[right - 1]

    def at(self, stamps_ns: np.ndarray) -> PoseQuery:
        """Poses at (K,) int64 ns stamps; exact sample stamps return the sample bit for bit."""
        q = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        valid = self.valid(q)
        jump = self.in_jump(q)
        out = np.full((q.size, 4, 4), np.nan)
        if not valid.any():
            return PoseQuery(out, valid, jump)
        if self._slerp is not None:
            qs = self._seconds(q[valid])
            out[valid, :3, :3] = self._slerp(qs).as_matrix()
            samples = self._seconds(self.stamps_ns)
            for axis in range(3):
                out[valid, axis, 3] = np.interp(qs, samples, self.poses[:, axis, 3])
            out[valid, 3] = (0.0, 0.0, 0.0, 1.0)
        index = np.searchsorted(self.stamps_ns, q).clip(0, self.stamps_ns.size - 1)
        exact = valid & (self.stamps_ns[index] == q)
        out[exact] = self.poses[index[exact]]
        return PoseQuery(out, valid, jump)


def _jumps(stamps_ns: np.ndarray, poses: np.ndarray, max_speed_mps: float,
           max_turn_dps: float) -> np.ndarray:
    """(M,) bool: sample i and i+1 are farther apart than the speed limits allow (last: False)."""
    out = np.zeros(stamps_ns.size, dtype=bool)
    if stamps_ns.size < 2:
        return out
    dt = np.diff(stamps_ns).astype(np.float64) * 1e-9
    dist = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    relative = np.einsum('kji,kjl->kil', poses[:-1, :3, :3], poses[1:, :3, :3])
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    turn_deg = np.degrees(np.arccos(cos))
    out[:-1] = (dist > max_speed_mps * dt) | (turn_deg > max_turn_dps * dt)
    return out


def interpolate_poses(sample_stamps_ns: np.ndarray, sample_poses: np.ndarray,
                      query_stamps_ns: np.ndarray, max_gap_s: float,
                      max_speed_mps: float = np.inf, max_turn_dps: float = np.inf) -> PoseQuery:
    """One-shot `PoseTrack(...).at(query_stamps_ns)` with the same arguments."""
    return PoseTrack(sample_stamps_ns, sample_poses, max_gap_s, max_speed_mps,
                     max_turn_dps).at(query_stamps_ns)

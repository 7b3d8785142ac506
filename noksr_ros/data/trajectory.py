"""
A car driving a route at constant speed: smooth poses T_map_base over time.

The route polyline is interpolated with a cubic spline in arc length, so position, heading and
pitch change smoothly. The base frame is CARLA's `ego_vehicle`: origin on the road surface under
the car, x forward along the route tangent, y left, z up; yaw follows the tangent, pitch follows
the road's grade, roll is zero.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import CubicSpline


class Trajectory:
    """Constant-speed drive along a route (M,3) float64 in the map frame."""

    def __init__(self, route: np.ndarray, speed_mps: float = 8.0) -> None:
        """Follow `route` (M>=2, 3) at `speed_mps` (> 0), starting at its first point at t = 0."""
        points = np.asarray(route, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
            raise ValueError(f'Trajectory: route must be (M>=2, 3), got shape {points.shape}')
        if not np.all(np.isfinite(points)):
            raise ValueError('Trajectory: route has non-finite coordinates')
        if not (math.isfinite(speed_mps) and speed_mps > 0.0):
            raise ValueError(f'Trajectory: speed_mps must be finite and > 0, got {speed_mps!r}')
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
        keep = np.concatenate([[True], steps > 1e-6])
        points = points[keep]
        if len(points) < 2:
            raise ValueError('Trajectory: route has fewer than two distinct points')
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
        self._spline = CubicSpline(arc, points, axis=0)
        self._velocity = self._spline.derivative()
        self.length_m = float(arc[-1])
        self.speed_mps = float(speed_mps)

    @property
    def duration_s(self) -> float:
        """Time to drive the whole route."""
        return self.length_m / self.speed_mps

    def pose_at(self, t_s: float) -> np.ndarray:
        """T_map_base (4,4) float64 at `t_s` seconds after the start, 0 <= t_s <= duration_s."""
        return self.poses_at(np.array([t_s], dtype=np.float64))[0]

    def poses_at(self, t_s: np.ndarray) -> np.ndarray:
        """T_map_base (K,4,4) float64 at times `t_s` (K,) in seconds within [0, duration_s]."""
        times = np.asarray(t_s, dtype=np.float64).reshape(-1)
        slack = 1e-9 * max(1.0, self.duration_s)
        if times.size and (not np.all(np.isfinite(times)) or times.min() < -slack
                           or times.max() > self.duration_s + slack):
            raise ValueError(f'Trajectory: times must lie in [0, {self.duration_s:.3f}] s, got '
                             f'[{times.min():.3f}, {times.max():.3f}]')
        arc = np.clip(times * self.speed_mps, 0.0, self.length_m)
        position, tangent = self._spline(arc), self._velocity(arc)
        yaw = np.arctan2(tangent[:, 1], tangent[:, 0])
        pitch = -np.arctan2(tangent[:, 2], np.hypot(tangent[:, 0], tangent[:, 1]))
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        poses = np.zeros((len(times), 4, 4))
        poses[:, 0, :3] = np.stack([cy * cp, -sy, cy * sp], axis=1)
        poses[:, 1, :3] = np.stack([sy * cp, cy, sy * sp], axis=1)
        poses[:, 2, :3] = np.stack([-sp, np.zeros_like(sp), cp], axis=1)
        poses[:, :3, 3] = position
        poses[:, 3, 3] = 1.0
        return poses

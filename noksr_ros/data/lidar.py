"""
Simulated spinning LiDAR (CARLA `sensor.lidar.ray_cast` style) on an open3d `RaycastingScene`.

The sensor frame is CARLA's as the ROS bridge publishes it: x forward, y left, z up. Beams are
evenly spread from `upper_fov_deg` down to `lower_fov_deg`; each sweep casts every beam at
`azimuth_steps` evenly spaced azimuths. A whole sweep is cast from the pose at its stamp: motion
during the sweep (rolling shutter) is not simulated. Rays that hit nothing, or whose measured range
falls outside [min_range_m, max_range_m], return no point; hits get Gaussian range noise and are
dropped at random with probability `dropout_rate`. Intensity is |cos(incidence)| attenuated with
range as in CARLA: exp(-intensity_decay_per_m * range), in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import math
from typing import Any, NamedTuple

import numpy as np
import open3d as o3d

from noksr_ros.data.primitives import pose_matrix


@dataclass(frozen=True)
class LidarSpec:
    """Spinning LiDAR parameters; defaults mimic a 64-beam CARLA LiDAR on a car's roof."""

    channels: int = 64
    upper_fov_deg: float = 2.0
    lower_fov_deg: float = -24.8
    azimuth_steps: int = 1800
    rotation_hz: float = 10.0
    max_range_m: float = 80.0
    min_range_m: float = 0.5
    range_noise_m: float = 0.02
    dropout_rate: float = 0.05
    intensity_decay_per_m: float = 0.004
    mount_xyz_m: tuple[float, float, float] = (0.0, 0.0, 2.4)

    def __post_init__(self) -> None:
        """Reject values no sensor could have, naming the field and the valid range."""
        checks = [
            ('channels', self.channels >= 1, 'an integer >= 1'),
            ('azimuth_steps', self.azimuth_steps >= 1, 'an integer >= 1'),
            ('upper_fov_deg', -90.0 <= self.lower_fov_deg <= self.upper_fov_deg <= 90.0,
             'within [-90, 90] and >= lower_fov_deg'),
            ('rotation_hz', self.rotation_hz > 0.0, '> 0'),
            ('max_range_m', 0.0 <= self.min_range_m < self.max_range_m, '> min_range_m >= 0'),
            ('range_noise_m', self.range_noise_m >= 0.0, '>= 0'),
            ('dropout_rate', 0.0 <= self.dropout_rate < 1.0, 'in [0, 1)'),
            ('intensity_decay_per_m', self.intensity_decay_per_m >= 0.0, '>= 0'),
            ('mount_xyz_m', len(self.mount_xyz_m) == 3, 'three numbers (x, y, z)'),
        ]
        for name, ok, valid in checks:
            value = getattr(self, name)
            if not ok or not all(math.isfinite(v) for v in np.ravel(value)):
                raise ValueError(f'LidarSpec.{name} must be {valid}, got {value!r}')

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LidarSpec:
        """Spec from a dict such as `to_dict()` wrote; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'LidarSpec: unknown keys {unknown}; valid keys: {sorted(known)}')
        values = dict(values)
        if 'mount_xyz_m' in values:
            values['mount_xyz_m'] = tuple(float(v) for v in values['mount_xyz_m'])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        out = asdict(self)
        out['mount_xyz_m'] = list(self.mount_xyz_m)
        return out

    @property
    def num_rays(self) -> int:
        """Rays per sweep: channels x azimuth_steps."""
        return self.channels * self.azimuth_steps

    def elevations_deg(self) -> np.ndarray:
        """Beam elevations (channels,) float64 in degrees, from the top beam down."""
        return np.linspace(self.upper_fov_deg, self.lower_fov_deg, self.channels)

    def t_base_sensor(self) -> np.ndarray:
        """Extrinsic T_base_sensor (4,4) float64: the mount offset, axes parallel to the base."""
        return pose_matrix(*(float(v) for v in self.mount_xyz_m))

    def ray_directions(self) -> np.ndarray:
        """
        Unit ray directions (channels * azimuth_steps, 3) float64 in the sensor frame.

        Ordered azimuth-major: ray k has beam k % channels and azimuth step k // channels,
        azimuth 0 along +x, increasing counter-clockwise (towards +y).
        """
        elev = np.deg2rad(self.elevations_deg())
        azim = np.linspace(0.0, 2.0 * np.pi, self.azimuth_steps, endpoint=False)
        cos_e = np.cos(elev)[None, :]
        dirs = np.stack([np.cos(azim)[:, None] * cos_e, np.sin(azim)[:, None] * cos_e,
                         np.broadcast_to(np.sin(elev)[None, :], (len(azim), len(elev)))], -1)
        return dirs.reshape(-1, 3)


class LidarScan(NamedTuple):
    """
    One sweep of a simulated LiDAR.

    points: (N,3) float32 metres in the sensor frame. intensity: (N,) float32 in [0, 1].
    ring: (N,) uint16 beam index, 0 = top beam.
    """

    points: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray


class LidarSimulator:
    """Casts the rays of a `LidarSpec` against a fixed triangle mesh (map frame)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray,
                 spec: LidarSpec | None = None) -> None:
        """Build the ray-casting scene of `vertices` (V,3) and `faces` (F,3) (map frame)."""
        vertices = np.asarray(vertices)
        faces = np.asarray(faces)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 \
                or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f'LidarSimulator: need vertices (V,3) and faces (F>0,3), got '
                             f'{vertices.shape} and {faces.shape}')
        self.spec = spec or LidarSpec()
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)))
        self._dirs = self.spec.ray_directions().astype(np.float32)
        self._dir_columns = np.ascontiguousarray(self._dirs.T)
        self._rays = np.empty((len(self._dirs), 6), dtype=np.float32)
        self._column = np.empty(len(self._dirs), dtype=np.float32)

    def scan(self, t_map_sensor: np.ndarray, rng: np.random.Generator) -> LidarScan:
        """
        Cast one sweep from the sensor pose T_map_sensor (4,4); `rng` draws noise and dropouts.

        Returns points in the sensor frame (x forward, y left, z up), so they do not depend on
        where the map frame is.
        """
        pose = np.asarray(t_map_sensor, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError(f'scan: t_map_sensor must be a finite (4,4) matrix, got {pose.shape}')
        self._fill_rays(pose)
        hits = self._scene.cast_rays(o3d.core.Tensor.from_numpy(self._rays))
        t_hit = hits['t_hit'].numpy()
        index = np.flatnonzero(np.isfinite(t_hit))
        spec = self.spec
        ranges = t_hit[index].astype(np.float64)
        if spec.range_noise_m > 0.0:
            ranges += rng.normal(0.0, spec.range_noise_m, len(index))
        keep = (ranges >= spec.min_range_m) & (ranges <= spec.max_range_m)
        if spec.dropout_rate > 0.0:
            keep &= rng.random(len(index)) >= spec.dropout_rate
        index, ranges = index[keep], ranges[keep]
        normals = hits['primitive_normals'].numpy()[index]
        rays = self._rays[index, 3:]
        cos_inc = np.abs(normals[:, 0] * rays[:, 0] + normals[:, 1] * rays[:, 1]
                         + normals[:, 2] * rays[:, 2])
        intensity = cos_inc * np.exp(-spec.intensity_decay_per_m * ranges)
        points = self._dirs[index] * ranges.astype(np.float32)[:, None]
        ring = (index % spec.channels).astype(np.uint16)
        return LidarScan(points, np.clip(intensity, 0.0, 1.0).astype(np.float32), ring)

    def _fill_rays(self, pose: np.ndarray) -> None:
        """
        Write origins and map-frame directions of every ray into the (N,6) float32 buffer.

        Element-wise on purpose: a BLAS matmul of (N,3) by (3,3) can be 30x slower when the BLAS
        thread pool fights other threads on a small machine.
        """
        rot = pose[:3, :3].astype(np.float32)
        self._rays[:, :3] = pose[:3, 3]
        for row in range(3):
            np.multiply(self._dir_columns[0], rot[row, 0], out=self._column)
            self._column += self._dir_columns[1] * rot[row, 1]
            self._column += self._dir_columns[2] * rot[row, 2]
            self._rays[:, 3 + row] = self._column

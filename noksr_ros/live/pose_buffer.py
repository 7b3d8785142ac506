"""
Vehicle poses arriving on a topic (odometry or TransformStamped), queried at scan stamps.

A scan is integrated only with a pose interpolated between two samples around its stamp (never
extrapolated), so a scan that arrives before the pose after it waits (`WAIT`), and a scan whose
stamp falls before the kept history or into a gap wider than `max_gap_s` is `UNKNOWN`. A scan
between two samples the vehicle cannot have moved between (faster than `max_speed_mps` or
`max_turn_dps`: a teleport or an odometry reset) is `JUMP`: interpolating there would smear it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
import threading

import numpy as np

from noksr_ros.io.transforms import check_rigid, interpolate_poses

OK = 'ok'
WAIT = 'wait'
UNKNOWN = 'unknown'
JUMP = 'jump'


@dataclass(frozen=True)
class PoseLookup:
    """Result of a query: `status` OK with `pose` (4,4), or WAIT / UNKNOWN / JUMP, `pose` None."""

    status: str
    pose: np.ndarray | None = None


class PoseBuffer:
    """Time-sorted (stamp ns, T_map_base) samples, bounded by count; thread-safe."""

    def __init__(self, max_gap_s: float, max_samples: int = 4096, max_speed_mps: float = np.inf,
                 max_turn_dps: float = np.inf) -> None:
        if max_samples < 2:
            raise ValueError(f'max_samples must be >= 2, got {max_samples}')
        self.max_gap_ns = int(round(max_gap_s * 1e9))
        self.limits = (max_speed_mps, max_turn_dps)
        self.max_samples = max_samples
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Number of samples kept."""
        return len(self._stamps)

    def add(self, stamp_ns: int, pose: np.ndarray) -> None:
        """
        Insert a sample (any arrival order); a repeated stamp replaces the old sample.

        Raises ValueError for a pose that is not a finite rigid 4x4 transform.
        """
        pose = check_rigid(np.asarray(pose, np.float64))
        with self._lock:
            i = bisect.bisect_left(self._stamps, stamp_ns)
            if i < len(self._stamps) and self._stamps[i] == stamp_ns:
                self._poses[i] = pose
                return
            self._stamps.insert(i, int(stamp_ns))
            self._poses.insert(i, pose)
            if len(self._stamps) > self.max_samples:
                del self._stamps[0], self._poses[0]

    def lookup(self, stamp_ns: int) -> PoseLookup:
        """Pose at `stamp_ns`: OK (interpolated), WAIT (newer than every sample), UNKNOWN, JUMP."""
        with self._lock:
            if not self._stamps:
                return PoseLookup(WAIT)
            if stamp_ns > self._stamps[-1]:
                return PoseLookup(WAIT)
            if stamp_ns < self._stamps[0]:
                return PoseLookup(UNKNOWN)
            right = bisect.bisect_left(self._stamps, stamp_ns)
            left = max(right - 1, 0)
            stamps = np.array(self._stamps[left:right + 1], np.int64)
            poses = np.stack(self._poses[left:right + 1])
        query = interpolate_poses(stamps, poses, np.array([stamp_ns], np.int64),
                                  self.max_gap_ns * 1e-9, *self.limits)
        if query.jump[0]:
            return PoseLookup(JUMP)
        if not query.valid[0]:
            return PoseLookup(UNKNOWN)
        return PoseLookup(OK, query.poses[0])

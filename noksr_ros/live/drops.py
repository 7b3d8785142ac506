"""
Counted drops with throttled logging.

Every dropped input is counted by reason, and each reason is logged the first time and then at
most once per `log_period_s`, so a flood of bad messages cannot flood the log.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time

# Reasons used by the live pipeline and the node (diagnostics keys).
QUEUE_FULL = 'queue_full'
NO_POSE = 'no_pose'
POSE_JUMP = 'pose_jump'
BAD_POSE = 'bad_pose'
BAD_CLOUD = 'bad_cloud'
TOO_LARGE = 'too_large'
WRONG_FRAME = 'wrong_frame'
OUT_OF_ORDER = 'out_of_order'
EMPTY = 'empty'
INTEGRATE_ERROR = 'integrate_error'
RECONSTRUCT_ERROR = 'reconstruct_error'


class DropCounter:
    """Thread-safe counts by reason; `log(message)` is called once per reason per period."""

    def __init__(self, log: Callable[[str], None] | None = None,
                 log_period_s: float = 10.0) -> None:
        self._log = log
        self._period_s = log_period_s
        self._counts: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def drop(self, reason: str, detail: str = '') -> None:
        """Count one drop of `reason`; log it (with the running count) unless logged recently."""
        now = time.monotonic()
        with self._lock:
            count = self._counts[reason] = self._counts.get(reason, 0) + 1
            due = now - self._last_log.get(reason, -float('inf')) >= self._period_s
            if due:
                self._last_log[reason] = now
        if due and self._log is not None:
            suffix = f': {detail}' if detail else ''
            self._log(f'dropped ({reason}, {count} so far){suffix}')

    def counts(self) -> dict[str, int]:
        """Copy of the counts by reason."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        """All drops of every reason."""
        with self._lock:
            return sum(self._counts.values())

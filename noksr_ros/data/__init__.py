"""
Synthetic data: procedural CARLA-like towns, a simulated spinning LiDAR and recorded drives.

Modules, from the bottom up: `primitives` (closed solids, manifold3d), `tiles` and `layout`
(street pieces and how they chain), `ground`, `buildings`, `props`, `furnish`, `crossing` (what
stands on them), `town` (`generate_town`), `trajectory` (`Trajectory`), `lidar` (`LidarSpec`,
`LidarSimulator`), `npz_drive` (the npz drive format and `iter_npz_drive`) and `drive`
(`simulate_drive`). The names below are importable from this package; they load their module on
first use so that importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'Town': 'town', 'generate_town': 'town',
    'Trajectory': 'trajectory',
    'LidarScan': 'lidar', 'LidarSimulator': 'lidar', 'LidarSpec': 'lidar',
    'NpzDriveError': 'npz_drive', 'iter_npz_drive': 'npz_drive',
    'DriveSummary': 'drive', 'simulate_drive': 'drive',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{module}'), name)

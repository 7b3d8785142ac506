"""
Batch reconstruction of a whole recorded or simulated drive into one mesh in the map frame.

The same Reconstructor as the live node, fed from a ROS 2 bag or an npz drive instead of topics:
scans are integrated in order, dirty segments are reconstructed every `update_every_scans` scans
(so a store, when configured, keeps memory flat on long drives) and everything left at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from noksr_ros.allocator import release_free_memory
from noksr_ros.config import NoksrConfig
from noksr_ros.model.checkpoint import load_model
from noksr_ros.model.noksr import NoksrModel
from noksr_ros.reconstructor import Reconstructor

# (stamp seconds, points (N,3) float32 in the sensor frame, T_map_sensor (4,4)).
PosedScan = tuple[float, np.ndarray, np.ndarray]


@dataclass
class DriveSource:
    """Scans of one drive with their count (for progress bars)."""

    scans: Iterator[PosedScan]
    total: int | None
    description: str


def bag_source(path: str | Path, config: NoksrConfig) -> DriveSource:
    """Scans of a ROS 2 bag recorded from the CARLA bridge (topics/frames from `config.ros`)."""
    from noksr_ros.io.bag import BagDriveReader

    reader = BagDriveReader.from_config(path, config)

    def scans() -> Iterator[PosedScan]:
        for scan in reader:
            yield scan.stamp_ns * 1e-9, scan.points_sensor, scan.T_map_sensor

    return DriveSource(scans(), len(reader), f'bag {path}')


def npz_source(path: str | Path) -> DriveSource:
    """Scans of an npz drive written by `noksr simulate` (the drive folder or its npz/)."""
    from noksr_ros.data.npz_drive import iter_npz_drive, read_drive_json, resolve_npz_dir

    npz_dir = resolve_npz_dir(path)
    total = read_drive_json(npz_dir).get('num_scans')

    def scans() -> Iterator[PosedScan]:
        for stamp_ns, points, _, pose in iter_npz_drive(npz_dir):
            yield stamp_ns * 1e-9, points, pose

    return DriveSource(scans(), total, f'npz {npz_dir}')


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; anything else is passed to torch (clear error if bad)."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"model.device is {name!r} but this machine has no CUDA device; "
                         "use 'cpu' or 'auto'")
    return device


def model_from_config(config: NoksrConfig) -> tuple[NoksrModel, torch.device]:
    """The checkpoint named by `config.model.checkpoint` (or the shipped one) on its device."""
    device = resolve_device(config.model.device)
    model, _ = load_model(config.model.checkpoint or None, device)
    return model, device


@dataclass
class OfflineResult:
    """Mesh (map frame) and what it took."""

    vertices: np.ndarray
    faces: np.ndarray
    scans: int
    points_kept: int
    segments: int
    wall_s: float
    network_s: float
    meshing_s: float
    failed: dict[int, str] = field(default_factory=dict)  # segments that fit nowhere in memory


def reconstruct_drive(source: DriveSource, config: NoksrConfig, model: NoksrModel,
                      device: torch.device, out_path: str | Path | None = None, *,
                      update_every_scans: int = 20, progress: bool = True) -> OfflineResult:
    """Integrate every scan of `source`, reconstruct, optionally write a PLY; see module doc."""
    if update_every_scans < 1:
        raise ValueError(f'update_every_scans must be >= 1, got {update_every_scans}')
    t0 = time.perf_counter()
    rec = Reconstructor(config, model, device)
    network_s = meshing_s = 0.0
    kept = 0
    bar = tqdm(source.scans, total=source.total, desc='scans', unit='scan', disable=not progress)
    for i, (stamp_s, points, pose) in enumerate(bar, start=1):
        kept += rec.integrate(stamp_s, points, pose).points_kept
        if i % update_every_scans == 0:
            step = rec.update(max_segments=1_000_000)
            network_s += step.network_s
            meshing_s += step.meshing_s
            release_free_memory()  # freed network buffers back to the OS: RSS stays flat
            bar.set_postfix(segments=len(rec.map.keys()), pending=len(rec.pending(force=True)))
    bar.close()
    if rec.map is None:
        raise ValueError(f'{source.description} has no usable scans')
    pending = len(rec.pending(force=True))
    if progress and pending:
        tqdm.write(f'reconstructing the {pending} segments left')
    rest = rec.finish()
    network_s += rest.network_s
    meshing_s += rest.meshing_s
    if rest.failed:
        tqdm.write(f'{len(rest.failed)} segment(s) did not fit in memory and have no new mesh '
                   f'(their points are kept): {next(iter(rest.failed.values()))}')
    vertices, faces = rec.export_mesh(out_path) if out_path is not None else rec.full_mesh()
    return OfflineResult(vertices, faces, rec.scans, kept, len(rec.map.keys()),
                         time.perf_counter() - t0, network_s, meshing_s, rest.failed)

"""
Drives stored as one `.npz` file per LiDAR scan, plus a `drive.json` written last.

Layout of an npz drive directory:

- `scan_{index:06d}.npz` (index 0, 1, ...), written with `np.savez` and loadable with
  `allow_pickle=False`: `stamp_ns` () int64, `points` (N,3) float32 metres in the sensor frame,
  `intensity` (N,) float32, `T_map_sensor` (4,4) float64, `T_map_base` (4,4) float64.
- `drive.json`: `format_version`, `num_scans` and whatever describes the drive (seed, LiDAR spec,
  T_base_sensor). It is written after the last scan, so its presence marks a complete drive.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
from typing import Any
import zipfile

import numpy as np

from noksr_ros.errors import NoksrError
from noksr_ros.io.atomic import SHARED, atomic_write

FORMAT_VERSION = 1
DRIVE_JSON = 'drive.json'
SCAN_FIELDS = {'stamp_ns': ((), np.int64), 'points': ((-1, 3), np.float32),
               'intensity': ((-1,), np.float32), 'T_map_sensor': ((4, 4), np.float64),
               'T_map_base': ((4, 4), np.float64)}


class NpzDriveError(NoksrError):
    """An npz drive directory is missing, incomplete or holds a corrupt scan file."""


def scan_path(npz_dir: str | Path, index: int) -> Path:
    """Path of scan `index` in `npz_dir`."""
    return Path(npz_dir) / f'scan_{index:06d}.npz'


def write_scan(npz_dir: str | Path, index: int, stamp_ns: int, points: np.ndarray,
               intensity: np.ndarray, t_map_sensor: np.ndarray,
               t_map_base: np.ndarray) -> Path:
    """Write one scan atomically (temporary file, then rename); arrays as in the module doc."""
    arrays = {'stamp_ns': np.int64(stamp_ns), 'points': np.asarray(points, np.float32),
              'intensity': np.asarray(intensity, np.float32),
              'T_map_sensor': np.asarray(t_map_sensor, np.float64),
              'T_map_base': np.asarray(t_map_base, np.float64)}
    _check_scan(arrays, f'scan {index}')
    path = scan_path(npz_dir, index)
    return atomic_write(path, lambda handle: np.savez(handle, **arrays), SHARED)


def write_drive_json(npz_dir: str | Path, num_scans: int, info: dict[str, Any]) -> Path:
    """Write `drive.json` with the format version, `num_scans` and the JSON-ready `info`."""
    path = Path(npz_dir) / DRIVE_JSON
    content = {'format_version': FORMAT_VERSION, 'num_scans': int(num_scans), **info}
    text = json.dumps(content, indent=2) + '\n'
    return atomic_write(path, lambda handle: handle.write(text.encode()), SHARED)


def read_drive_json(path: str | Path) -> dict[str, Any]:
    """Contents of `drive.json` of the npz drive at `path` (the npz dir or the drive dir)."""
    json_path = resolve_npz_dir(path) / DRIVE_JSON
    try:
        info = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise NpzDriveError(f'cannot read {json_path}: {exc}') from exc
    if not isinstance(info, dict) or info.get('format_version') != FORMAT_VERSION \
            or not isinstance(info.get('num_scans'), int) or info['num_scans'] < 0:
        raise NpzDriveError(f'{json_path} is not a format-{FORMAT_VERSION} drive description '
                            f'with an integer num_scans')
    return info


def resolve_npz_dir(path: str | Path) -> Path:
    """The npz directory: `path` itself if it has `drive.json`, else `path/npz`."""
    path = Path(path)
    if not path.is_dir():
        raise NpzDriveError(f'npz drive directory {path} does not exist')
    if (path / DRIVE_JSON).is_file():
        return path
    if (path / 'npz' / DRIVE_JSON).is_file():
        return path / 'npz'
    raise NpzDriveError(f'no {DRIVE_JSON} in {path} or {path / "npz"}: not an npz drive, or '
                        f'the drive was not written to the end')


def load_scan(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of one scan file, checked for presence, shape and dtype."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError as exc:
        raise NpzDriveError(f'scan file {path} is missing') from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NpzDriveError(f'scan file {path} is corrupt: {exc}') from exc
    _check_scan(arrays, str(path))
    return arrays


def iter_npz_drive(path: str | Path) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """
    Yield (stamp_ns, points_sensor (N,3) float32, intensity (N,) float32, T_map_sensor (4,4)).

    `path` is the npz directory or the drive directory holding `npz/`. Scans come in index
    order; a missing or corrupt file raises `NpzDriveError` naming it when it is reached.
    """
    npz_dir = resolve_npz_dir(path)
    info = read_drive_json(npz_dir)
    for index in range(info['num_scans']):
        arrays = load_scan(scan_path(npz_dir, index))
        yield (int(arrays['stamp_ns']), arrays['points'], arrays['intensity'],
               arrays['T_map_sensor'])


def _check_scan(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise NpzDriveError unless every scan field is present with its shape and dtype."""
    missing = sorted(set(SCAN_FIELDS) - set(arrays))
    if missing:
        raise NpzDriveError(f'{where}: missing arrays {missing}; a scan has {list(SCAN_FIELDS)}')
    for name, (shape, dtype) in SCAN_FIELDS.items():
        array = arrays[name]
        fits = array.ndim == len(shape) and all(s in (-1, n) for s, n in zip(shape, array.shape))
        if not fits or array.dtype != dtype:
            raise NpzDriveError(f'{where}: {name} must be {np.dtype(dtype).name} of shape '
                                f'{shape} (-1: any), got {array.dtype.name} {array.shape}')
    if len(arrays['points']) != len(arrays['intensity']):
        raise NpzDriveError(f'{where}: {len(arrays["points"])} points but '
                            f'{len(arrays["intensity"])} intensities')

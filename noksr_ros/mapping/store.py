"""
The segment store: one checksummed `.npz` file per segment, written atomically.

Layout of the directory:
- `seg_<key as 16 hex digits>.npz`: every array of a `Segment` (no pickles), plus `format_version`
  and `checksum`, the sha256 of all other arrays (names, dtypes, shapes and bytes).
- `meta.json`: the settings that give the files their meaning (origin, sizes, curve).
- `pending.json`: keys of stored segments that may still await reconstruction, so a resumed map
  finds that work without reading every file (a superset while a checkpoint is being written).
- `.tmp-*`: files being written. A save writes a temp file in the same directory, flushes and
  fsyncs it, renames it over the final name (`os.replace`, atomic on POSIX) and fsyncs the
  directory; a crash leaves either the old or the new file, plus perhaps a temp file, which is
  deleted the next time the store is opened.

One process writes a store at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import hashlib
import json
import os
from pathlib import Path
import re
from typing import Any

import numpy as np

from noksr_ros.errors import StoreError
from noksr_ros.io.atomic import TEMP_PREFIX, atomic_write, fsync_directory
from noksr_ros.mapping.segment import Segment

STORE_FORMAT_VERSION = 1
_SEGMENT_FILE = re.compile(r'^seg_([0-9a-f]{16})\.npz$')
_PENDING_FILE = 'pending.json'
_META_FILE = 'meta.json'


@dataclass(frozen=True)
class StoreMeta:
    """Settings a store was written with; reopening with different ones is an error."""

    origin_m: tuple[float, float, float]
    segment_size_m: float
    cell_size_m: float
    curve: str
    format_version: int = STORE_FORMAT_VERSION


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """Hex sha256 over the names, dtypes, shapes and bytes of `arrays`, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f'{name}|{a.dtype.str}|{a.shape}|'.encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


class SegmentStore:
    """A directory of segment files (see the module docstring for the layout and guarantees)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """Open or create `directory`; delete temp files left by an interrupted save."""
        self._dir = Path(directory)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            names = os.listdir(self._dir)
        except OSError as exc:
            raise StoreError(f'cannot open segment store {self._dir}: {exc}') from exc
        for name in names:
            if name.startswith(TEMP_PREFIX):
                (self._dir / name).unlink(missing_ok=True)
        self._keys = {int(m.group(1), 16) for m in map(_SEGMENT_FILE.match, names) if m}

    @property
    def directory(self) -> Path:
        """The store's directory."""
        return self._dir

    def path_of(self, key: int) -> Path:
        """File name of segment `key`."""
        if not 0 <= int(key) < 2**63:
            raise ValueError(f'key must be in [0, 2**63), got {key}')
        return self._dir / f'seg_{int(key):016x}.npz'

    def keys(self) -> list[int]:
        """Sorted keys of the stored segments."""
        return sorted(self._keys)

    def contains(self, key: int) -> bool:
        """Whether segment `key` is stored."""
        return int(key) in self._keys

    def __len__(self) -> int:
        """Number of stored segments."""
        return len(self._keys)

    def save(self, segment: Segment) -> Path:
        """Write `segment` atomically (replacing any older version); return its file."""
        arrays = segment.to_arrays()
        arrays['checksum'] = np.array(array_checksum(arrays))
        arrays['format_version'] = np.array(STORE_FORMAT_VERSION, dtype=np.int64)
        path = self.path_of(segment.key)
        try:
            atomic_write(path, lambda f: np.savez(f, **arrays))
        except OSError as exc:
            raise StoreError(f'cannot write segment file {path}: {exc}') from exc
        self._keys.add(int(segment.key))
        return path

    def load(self, key: int) -> Segment:
        """Read segment `key`; StoreError naming the file if it is missing, corrupt or foreign."""
        path = self.path_of(key)
        arrays = _read_npz(path)
        version = arrays.pop('format_version', None)
        if version is None or version.shape != () or int(version) != STORE_FORMAT_VERSION:
            raise StoreError(f'segment file {path}: format version {version} is not '
                             f'{STORE_FORMAT_VERSION}')
        stored = arrays.pop('checksum', None)
        if stored is None or stored.shape != () or str(stored) != array_checksum(arrays):
            raise StoreError(f'segment file {path}: checksum mismatch (file damaged or edited)')
        try:
            segment = Segment.from_arrays(arrays)
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f'segment file {path}: bad contents: {exc}') from exc
        if segment.key != int(key):
            raise StoreError(f'segment file {path} holds key {segment.key}, not {key}')
        return segment

    def delete(self, key: int) -> None:
        """Remove segment `key` if stored."""
        path = self.path_of(key)
        try:
            path.unlink(missing_ok=True)
            fsync_directory(self._dir)
        except OSError as exc:
            raise StoreError(f'cannot delete segment file {path}: {exc}') from exc
        self._keys.discard(int(key))

    def write_pending(self, keys: list[int] | set[int]) -> None:
        """Record (atomically) which stored segments still await reconstruction."""
        text = json.dumps(sorted(int(k) for k in keys)) + '\n'
        path = self._dir / _PENDING_FILE
        try:
            atomic_write(path, lambda f: f.write(text.encode()))
        except OSError as exc:
            raise StoreError(f'cannot write {path}: {exc}') from exc

    def read_pending(self) -> list[int]:
        """Keys recorded by `write_pending` that are stored ([] when none were recorded)."""
        path = self._dir / _PENDING_FILE
        if not path.exists():
            return []
        try:
            keys = json.loads(path.read_text())
            if not isinstance(keys, list) or not all(isinstance(k, int) for k in keys):
                raise ValueError('not a list of integer keys')
        except (OSError, ValueError) as exc:
            raise StoreError(f'pending-work index {path} is unreadable: {exc}') from exc
        return [k for k in keys if k in self._keys]

    def read_meta(self) -> StoreMeta | None:
        """The settings in `meta.json`, or None for a store that has none yet."""
        path = self._dir / _META_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            raw['origin_m'] = tuple(float(v) for v in raw['origin_m'])
            return StoreMeta(**raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise StoreError(f'store settings {path} are unreadable: {exc}') from exc

    def bind(self, meta: StoreMeta) -> StoreMeta:
        """
        Record `meta` in a new store, or check it against the recorded one.

        Raises StoreError naming the differing settings if the store was written with others,
        or if it holds segments but no settings.
        """
        found = self.read_meta()
        if found is None:
            if self._keys:
                raise StoreError(f'segment store {self._dir} has segments but no {_META_FILE}')
            text = json.dumps(asdict(meta), indent=2) + '\n'
            atomic_write(self._dir / _META_FILE, lambda f: f.write(text.encode()))
            return meta
        diffs = {k: (v, getattr(meta, k)) for k, v in asdict(found).items()
                 if _differs(v, getattr(meta, k))}
        if diffs:
            listed = ', '.join(f'{k}: stored {a!r}, requested {b!r}'
                               for k, (a, b) in diffs.items())
            raise StoreError(f'segment store {self._dir} was written with other settings: '
                             f'{listed}')
        return found


def _differs(stored: Any, requested: Any) -> bool:
    if isinstance(stored, (tuple, list)):
        return tuple(float(v) for v in stored) != tuple(float(v) for v in requested)
    return stored != requested


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise StoreError(f'segment file {path} does not exist')
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as exc:  # zipfile and the npy reader raise many types on damaged bytes
        raise StoreError(f'segment file {path} is corrupt or truncated: {exc}') from exc

"""
Hostile bags: a valid drive with random bytes flipped, cut short or its metadata mangled.

Whatever the damage, reading either yields scans that are finite and well formed, or stops with a
BagError; never another exception, never a hang (hypothesis deadline), never a huge allocation.
"""

from pathlib import Path
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from test_bag import write_drive

from noksr_ros.config import NoksrConfig
from noksr_ros.errors import BagError
from noksr_ros.io.bag import BagDriveReader

FUZZ = settings(max_examples=40, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope='module', params=['mcap', 'sqlite3'])
def pristine(request, tmp_path_factory):
    path = tmp_path_factory.mktemp('pristine') / request.param
    write_drive(path, request.param)
    return path


def read_all(path: Path) -> None:
    """Read a bag to the end; every scan it yields must be usable."""
    config = NoksrConfig().with_overrides({'ingest.max_points_per_scan': 1000})
    try:
        reader = BagDriveReader.from_config(path, config)
        for scan in reader:
            assert scan.points_sensor.ndim == 2 and scan.points_sensor.shape[1] == 3
            assert len(scan.points_sensor) <= 1000
            assert np.isfinite(scan.T_map_sensor).all()
    except BagError as exc:
        assert str(exc)  # a message a person can act on


def damaged_copy(pristine: Path, edit) -> Path:
    target = Path(tempfile.mkdtemp(prefix='fuzzbag-')) / pristine.name
    shutil.copytree(pristine, target)
    data_file = next(p for p in target.iterdir() if p.suffix in ('.mcap', '.db3'))
    data_file.write_bytes(edit(data_file.read_bytes()))
    return target


@FUZZ
@given(data=st.data())
def test_flipped_bytes(pristine, data):
    def edit(raw: bytes) -> bytes:
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 16))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        return bytes(buf)

    path = damaged_copy(pristine, edit)
    try:
        read_all(path)
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(fraction=st.floats(0.0, 1.0))
def test_cut_short(pristine, fraction):
    path = damaged_copy(pristine, lambda raw: raw[:int(len(raw) * fraction)])
    try:
        read_all(path)
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(text=st.text(max_size=200))
def test_mangled_metadata(pristine, text):
    path = damaged_copy(pristine, lambda raw: raw)
    (path / 'metadata.yaml').write_text(text)
    try:
        read_all(path)
    finally:
        shutil.rmtree(path.parent)

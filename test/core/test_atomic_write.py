"""Every file the package writes: atomic, never written through a planted link, safe modes."""

import os
import stat

import numpy as np
import pytest

from noksr_ros.io.atomic import PRIVATE, SHARED, atomic_write
from noksr_ros.io.ply import read_ply, write_ply
from noksr_ros.model.backbone import BackboneSpec
from noksr_ros.model.checkpoint import read_checkpoint, save_checkpoint
from noksr_ros.model.decoder import DecoderSpec
from noksr_ros.model.noksr import ModelSpec, NoksrModel
from segment_map_helpers import make_map, random_points, up_normals

VERTICES = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
FACES = np.array([[0, 1, 2]])


@pytest.fixture
def open_umask():
    """The most permissive umask, so only the writer decides the modes."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_modes_do_not_depend_on_the_umask(tmp_path, open_umask):
    assert mode(write_ply(tmp_path / 'mesh.ply', VERTICES, FACES)) == SHARED
    backbone = BackboneSpec(enc_channels=(8, 16, 16, 16), dec_channels=(8, 8, 16),
                            heads=(1, 2, 2, 2), patch_size=16)
    model = NoksrModel(ModelSpec(backbone=backbone, decoder=DecoderSpec(hidden=16)))
    assert mode(save_checkpoint(tmp_path / 'model.pt', model)) == SHARED
    seg_map = make_map(tmp_path)
    pts = random_points(500, seed=3)
    seg_map.integrate(pts, up_normals(len(pts)), 1.0)
    assert seg_map.checkpoint()
    files = list((tmp_path / 'store').iterdir())
    assert files and all(mode(f) == PRIVATE for f in files), {f.name: oct(mode(f)) for f in files}
    assert read_checkpoint(tmp_path / 'model.pt')['format']


def test_a_link_planted_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'mesh.ply').symlink_to(victim)
    write_ply(out / 'mesh.ply', VERTICES, FACES)
    assert victim.read_text() == 'keep me'
    assert not (out / 'mesh.ply').is_symlink()
    assert np.array_equal(read_ply(out / 'mesh.ply')[1], FACES)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / 'data.bin'
    atomic_write(target, lambda handle: handle.write(b'old'))

    def fail(handle):
        handle.write(b'half')
        raise OSError(28, 'No space left on device')

    with pytest.raises(OSError, match='No space left'):
        atomic_write(target, fail)
    assert target.read_bytes() == b'old' and os.listdir(tmp_path) == ['data.bin']

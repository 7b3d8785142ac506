"""Space-filling curves: round trips, numpy/torch agreement, prefix property, locality, errors."""

import numpy as np
import pytest
import torch

from noksr_ros import curves
from noksr_ros.curves import (
    MAX_BITS,
    ORDERS,
    decode,
    encode,
    hilbert_decode,
    hilbert_encode,
    hilbert_from_morton,
    morton_decode,
    morton_encode,
    morton_from_hilbert,
)

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def random_cells(bits: int, n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + bits)
    cells = rng.integers(0, 2**bits, (n, 3), dtype=np.int64)
    cells[0] = 0
    cells[1] = 2**bits - 1  # the extreme corners are included
    return cells


def all_cells(bits: int) -> np.ndarray:
    side = np.arange(2**bits)
    return np.stack(np.meshgrid(side, side, side, indexing='ij'), axis=-1).reshape(-1, 3)


@pytest.mark.parametrize('order', ORDERS)
@pytest.mark.parametrize('bits', range(1, MAX_BITS + 1))
def test_round_trip_at_every_bit_depth(order, bits):
    cells = random_cells(bits)
    codes = encode(cells, order, bits)
    assert codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 2 ** (3 * bits)
    np.testing.assert_array_equal(decode(codes, order, bits), cells)


@pytest.mark.parametrize('order', ORDERS)
def test_codes_are_a_bijection_on_small_grids(order):
    for bits in (1, 2, 3):
        codes = encode(all_cells(bits), order, bits)
        np.testing.assert_array_equal(np.sort(codes), np.arange(8**bits))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('order', ORDERS)
def test_numpy_and_torch_agree(order, device):
    for bits in (1, 7, 16, 21):
        cells = random_cells(bits, seed=3)
        expected = encode(cells, order, bits)
        got = encode(torch.from_numpy(cells).to(device), order, bits)
        assert got.dtype == torch.int64 and got.device.type == device
        np.testing.assert_array_equal(got.cpu().numpy(), expected)
        back = decode(got, order, bits)
        assert isinstance(back, torch.Tensor) and back.device.type == device
        np.testing.assert_array_equal(back.cpu().numpy(), cells)


def test_torch_accepts_int32_cells():
    cells = random_cells(10)
    got = encode(torch.from_numpy(cells.astype(np.int32)), 'hilbert', 10)
    np.testing.assert_array_equal(got.numpy(), encode(cells, 'hilbert', 10))


def test_morton_known_values():
    assert int(morton_encode(np.array(1), np.array(0), np.array(0), 1)) == 0b100
    assert int(morton_encode(np.array(0), np.array(1), np.array(0), 1)) == 0b010
    assert int(morton_encode(np.array(0), np.array(0), np.array(1), 1)) == 0b001
    assert int(morton_encode(np.array(2), np.array(0), np.array(3), 2)) == 0b101_001
    top = np.array(2**MAX_BITS - 1)
    assert int(morton_encode(top, top, top, MAX_BITS)) == 2**63 - 1
    x, y, z = morton_decode(np.array(0b110_011), 2)
    assert (int(x), int(y), int(z)) == (2, 3, 1)


def test_trans_orders_swap_x_and_y():
    cells = random_cells(12)
    swapped = cells[:, [1, 0, 2]]
    np.testing.assert_array_equal(encode(cells, 'z-trans', 12), encode(swapped, 'z', 12))
    np.testing.assert_array_equal(encode(cells, 'hilbert-trans', 12),
                                  encode(swapped, 'hilbert', 12))
    assert not np.array_equal(encode(cells, 'z', 12), encode(swapped, 'z', 12))


@pytest.mark.parametrize('order', ORDERS)
@pytest.mark.parametrize('backend', ['numpy', 'torch'])
def test_parent_code_is_a_right_shift(order, backend):
    bits = 16
    cells = random_cells(bits, seed=5)
    if backend == 'torch':
        cells = torch.from_numpy(cells)
    codes = encode(cells, order, bits)
    for k in (1, 2, 5, 15):
        parent = encode(cells >> k, order, bits - k)
        assert bool((parent == codes >> (3 * k)).all()), f'k={k}'


def test_hilbert_prefix_holds_for_every_depth():
    # The state machine starts in the same state whatever `bits` is, so coarser curves are the
    # prefixes of finer ones all the way down to one level.
    cells = random_cells(MAX_BITS, seed=9)
    codes = encode(cells, 'hilbert', MAX_BITS)
    for k in range(1, MAX_BITS):
        np.testing.assert_array_equal(encode(cells >> k, 'hilbert', MAX_BITS - k),
                                      codes >> (3 * k))


@pytest.mark.parametrize('bits', [1, 2, 3, 4])
def test_consecutive_hilbert_codes_are_face_adjacent(bits):
    cells = all_cells(bits)
    codes = hilbert_encode(cells[:, 0], cells[:, 1], cells[:, 2], bits)
    path = cells[np.argsort(codes)]
    steps = np.abs(np.diff(path, axis=0)).sum(axis=1)
    assert np.all(steps == 1)
    np.testing.assert_array_equal(path[0], [0, 0, 0])
    np.testing.assert_array_equal(path[-1], [2**bits - 1, 0, 0])  # the exit corner


def test_consecutive_hilbert_codes_are_adjacent_at_21_bits():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2**63 - 1, 5000, dtype=np.int64)
    a = np.stack(hilbert_decode(codes, MAX_BITS), axis=1)
    b = np.stack(hilbert_decode(codes + 1, MAX_BITS), axis=1)
    assert np.all(np.abs(a - b).sum(axis=1) == 1)


def test_morton_jumps_but_code_prefixes_are_octree_cells():
    bits, k = 6, 3
    cells = all_cells(bits)
    codes = morton_encode(cells[:, 0], cells[:, 1], cells[:, 2], bits)
    path = cells[np.argsort(codes)]
    steps = np.abs(np.diff(path, axis=0)).sum(axis=1)
    assert steps.max() > 1  # z-order is not continuous...
    # ... but every block of 8**k consecutive codes is one octree cell of side 2**k.
    blocks = (path >> k).reshape(-1, 8**k, 3)
    assert np.all(blocks == blocks[:, :1, :])
    assert len(np.unique(blocks[:, 0, :], axis=0)) == 8 ** (bits - k)


def test_hilbert_tables_have_twelve_rotations():
    assert len(curves._HILBERT_ENCODE) == 12 * 8
    # Every state maps the 8 octants to the 8 digits one to one.
    digits = (curves._HILBERT_ENCODE & 7).reshape(12, 8)
    assert np.all(np.sort(digits, axis=1) == np.arange(8))


@pytest.mark.parametrize('bad, message', [
    (np.array([[-1, 0, 0]]), 'x must be in'),
    (np.array([[0, 16, 0]]), 'y must be in'),
    (np.array([[0, 0, 2**40]]), 'z must be in'),
    (np.array([[0.5, 0, 0]]), 'integer'),
])
def test_invalid_cells_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        encode(bad, 'z', 4)


def test_invalid_arguments_raise():
    cells = np.zeros((3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match='order'):
        encode(cells, 'peano', 4)
    for bits in (0, 22, True, 2.0):
        with pytest.raises(ValueError, match='bits'):
            encode(cells, 'z', bits)
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        encode(np.zeros((3, 2), dtype=np.int64), 'z', 4)
    with pytest.raises(ValueError, match='code must be in'):
        decode(np.array([8**4]), 'hilbert', 4)
    with pytest.raises(ValueError, match='code must be in'):
        decode(np.array([-1]), 'z', 4)
    with pytest.raises(ValueError, match='all be numpy arrays or all torch'):
        morton_encode(np.zeros(2, np.int64), torch.zeros(2, dtype=torch.int64),
                      np.zeros(2, np.int64), 4)


def test_invalid_torch_inputs_raise():
    with pytest.raises(ValueError, match='integer tensor'):
        encode(torch.zeros(4, 3), 'z', 4)
    with pytest.raises(ValueError, match='must be in'):
        encode(torch.tensor([[0, 0, -3]]), 'hilbert', 4)
    with pytest.raises(ValueError, match='must be in'):
        encode(torch.tensor([[0, 0, 16]]), 'hilbert', 4)


@pytest.mark.parametrize('order', ORDERS)
def test_unvalidated_encode_matches(order):
    cells = random_cells(16, seed=8)
    np.testing.assert_array_equal(encode(cells, order, 16, validate=False),
                                  encode(cells, order, 16))


def test_hilbert_morton_conversions_round_trip():
    cells = random_cells(21, seed=4)
    morton = morton_encode(cells[:, 0], cells[:, 1], cells[:, 2], 21)
    hilbert = hilbert_from_morton(morton, 21)
    np.testing.assert_array_equal(hilbert, hilbert_encode(cells[:, 0], cells[:, 1], cells[:, 2],
                                                          21))
    np.testing.assert_array_equal(morton_from_hilbert(hilbert, 21), morton)
    with pytest.raises(ValueError, match='code must be in'):
        hilbert_from_morton(np.array([8**3]), 3)


def test_encode_accepts_nested_lists():
    assert encode([[1, 0, 0], [0, 0, 1]], 'z', 1).tolist() == [4, 1]
    with pytest.raises(ValueError, match='code must be in'):
        morton_from_hilbert(np.array([-1]), 3)

"""Torch serialization API: quantise, encode, parent codes, deterministic stable sort."""

import numpy as np
import pytest
import torch

from noksr_ros.curves import ORDERS, encode
from noksr_ros.model.serialization import (
    encode_cells,
    encode_points,
    parent_code,
    quantize,
    sort_by_code,
)

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def cloud(n: int = 5000, seed: int = 0, span_m: float = 40.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=gen) * span_m - span_m / 2


@pytest.mark.parametrize('device', DEVICES)
def test_quantize_anchors_at_the_minimum(device):
    xyz = cloud().to(device)
    cells, origin = quantize(xyz, 0.05)
    assert cells.dtype == torch.int64 and cells.device.type == device
    torch.testing.assert_close(origin, xyz.min(dim=0).values)
    assert cells.min(dim=0).values.tolist() == [0, 0, 0]
    expected = torch.floor((xyz - origin) / 0.05).long()
    assert torch.equal(cells, expected)


def test_quantize_with_an_explicit_origin():
    xyz = torch.tensor([[1.0, 2.0, 3.0], [1.26, 2.0, 3.99]])
    cells, origin = quantize(xyz, 0.25, origin=torch.tensor([1.0, 1.0, 1.0]))
    assert cells.tolist() == [[0, 4, 8], [1, 4, 11]]
    assert origin.tolist() == [1.0, 1.0, 1.0]


def test_quantize_rejects_points_outside_the_window():
    xyz = torch.tensor([[0.0, 0.0, 0.0], [700.0, 0.0, 0.0]])  # 70,000 cells at 1 cm > 2**16
    with pytest.raises(ValueError, match='bits=16'):
        quantize(xyz, 0.01)
    cells, _ = quantize(xyz, 0.01, bits=17)
    assert int(cells[1, 0]) == 70000
    with pytest.raises(ValueError, match='origin'):
        quantize(xyz, 0.01, origin=torch.tensor([1.0, 0.0, 0.0]), bits=17)  # below the origin


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_quantize_rejects_non_finite_points(bad):
    xyz = cloud(10)
    xyz[3, 1] = bad
    with pytest.raises(ValueError, match='finite'):
        quantize(xyz, 0.05, origin=torch.full((3,), -30.0))


def test_quantize_rejects_bad_arguments():
    with pytest.raises(ValueError, match='torch.Tensor'):
        quantize(np.zeros((4, 3), np.float32), 0.1)
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        quantize(torch.zeros(4, 2), 0.1)
    with pytest.raises(ValueError, match='floating'):
        quantize(torch.zeros(4, 3, dtype=torch.int64), 0.1)
    for grid in (0.0, -1.0, float('nan')):
        with pytest.raises(ValueError, match='grid_size_m'):
            quantize(torch.zeros(4, 3), grid)
    with pytest.raises(ValueError, match='bits'):
        quantize(torch.zeros(4, 3), 0.1, bits=22)
    with pytest.raises(ValueError, match='origin'):
        quantize(torch.zeros(4, 3), 0.1, origin=torch.zeros(2))


def test_quantize_empty_cloud():
    cells, origin = quantize(torch.zeros(0, 3), 0.1)
    assert cells.shape == (0, 3) and origin.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize('device', DEVICES)
def test_encode_points_matches_the_curves(device):
    xyz = cloud(3000, seed=1).to(device)
    codes = encode_points(xyz, 0.02)
    assert codes.shape == (4, 3000) and codes.dtype == torch.int64
    assert codes.device.type == device
    cells, _ = quantize(xyz, 0.02)
    for row, order in enumerate(ORDERS):
        np.testing.assert_array_equal(codes[row].cpu().numpy(),
                                      encode(cells.cpu().numpy(), order, 16))
    hilbert_only = encode_points(xyz, 0.02, orders=('hilbert',))
    assert torch.equal(hilbert_only[0], codes[2])


def test_encode_points_is_deterministic_and_translation_invariant():
    xyz = cloud(4000, seed=2).double()
    first, second = encode_points(xyz, 0.01), encode_points(xyz.clone(), 0.01)
    assert torch.equal(first, second)
    # Shifting by whole cells moves the minimum by the same amount: identical codes.
    shifted = encode_points(xyz + torch.tensor([123.0, -456.0, 7.0], dtype=xyz.dtype), 0.01)
    assert torch.equal(first, shifted)


@pytest.mark.parametrize('order', ORDERS)
def test_parent_code_is_the_code_of_the_coarser_cell(order):
    xyz = cloud(2000, seed=3)
    cells, _ = quantize(xyz, 0.01)
    codes = encode_cells(cells, (order,))[0]
    for levels in (0, 1, 3, 8):
        coarse = encode_cells(cells >> levels, (order,), 16 - levels)[0]
        assert torch.equal(parent_code(codes, levels), coarse)
    with pytest.raises(ValueError, match='levels'):
        parent_code(codes, -1)


def test_encode_cells_needs_an_order():
    with pytest.raises(ValueError, match='orders'):
        encode_cells(torch.zeros(3, 3, dtype=torch.int64), ())


@pytest.mark.parametrize('device', DEVICES)
def test_sort_by_code_is_stable_with_inverse(device):
    codes = torch.tensor([[5, 1, 5, 0, 1, 5], [2, 2, 2, 1, 1, 1]], device=device)
    sorted_codes, order, inverse = sort_by_code(codes)
    assert sorted_codes.tolist() == [[0, 1, 1, 5, 5, 5], [1, 1, 1, 2, 2, 2]]
    assert order.tolist() == [[3, 1, 4, 0, 2, 5], [3, 4, 5, 0, 1, 2]]  # ties keep input order
    assert torch.equal(codes.gather(-1, order), sorted_codes)
    assert torch.equal(sorted_codes.gather(-1, inverse), codes)


def test_sort_by_code_large_and_repeatable():
    codes = encode_points(cloud(20000, seed=4), 0.05)
    a = sort_by_code(codes)
    b = sort_by_code(codes.clone())
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert bool((a[0][:, 1:] >= a[0][:, :-1]).all())
    with pytest.raises(ValueError, match='codes'):
        sort_by_code(torch.tensor(3))


def test_encode_cells_checks_its_input():
    good = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert encode_cells(good, ('z', 'hilbert'), 3).shape == (2, 2)
    with pytest.raises(ValueError, match='subset'):
        encode_cells(good, ('z', 'zz'))
    with pytest.raises(ValueError, match=r'\[0, 2\*\*3\)'):
        encode_cells(good + 8, ('z',), 3)
    with pytest.raises(ValueError, match=r'\[0, 2\*\*3\)'):
        encode_cells(good - 1, ('hilbert',), 3)
    with pytest.raises(ValueError, match='integer'):
        encode_cells(good.float(), ('z',), 3)
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        encode_cells(good[:, :2], ('z',), 3)
    with pytest.raises(ValueError, match='bits'):
        encode_cells(good, ('z',), 0)

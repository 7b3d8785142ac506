"""The NoKSR network: shapes, determinism, the classical prior, neighbours, checkpoints."""


import pytest
import torch

from noksr_ros.errors import CheckpointError
from noksr_ros.model.backbone import BackboneSpec
from noksr_ros.model.checkpoint import SHIPPED, load_model, read_checkpoint, save_checkpoint
from noksr_ros.model.decoder import DecoderSpec, LevelAggregator, classical_sdf, fourier
from noksr_ros.model.levels import build_pyramid
from noksr_ros.model.neighbours import (
    Neighbours,
    coarser_codes,
    knn_neighbours,
    query_codes,
    recall,
    serialization_neighbours,
)
from noksr_ros.model.noksr import ModelSpec, NoksrModel
from noksr_ros.model.sparse import CellIndex, SparseConv, neighbour_map

TINY = ModelSpec(backbone=BackboneSpec(enc_channels=(8, 16, 16, 16), dec_channels=(8, 8, 16),
                                       heads=(1, 2, 2, 2), patch_size=16),
                 decoder=DecoderSpec(hidden=16, head_hidden=16))


def sphere(n, radius=1.0, centre=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    return (centre + radius * d).float(), d.float()


def test_cell_index_lookup_hits_and_explicit_misses():
    cells = torch.tensor([[0, 0, 0], [1, 2, 3], [5, 5, 5]])
    idx = CellIndex(cells)
    rows = idx.lookup(torch.tensor([[1, 2, 3], [5, 5, 5], [9, 9, 9], [-1, 0, 0]]))
    assert rows.tolist() == [1, 2, 3, 3]   # 3 == M: a miss, never a wrapped -1


def test_sparse_conv_equals_dense_conv_on_a_full_grid():
    torch.manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing='ij'), -1).reshape(-1, 3)
    feats = torch.randn(len(grid), 2)
    conv = SparseConv(2, 3, 3)
    out = conv(feats, neighbour_map(CellIndex(grid), 3))
    weight = conv.weight.detach().reshape(3, 3, 3, 2, 3).permute(4, 3, 0, 1, 2)
    dense = torch.nn.functional.conv3d(feats.T.reshape(1, 2, 4, 4, 4), weight,
                                       conv.bias.detach(), padding=1)
    assert torch.allclose(out.T.reshape(1, 3, 4, 4, 4), dense, atol=1e-5)


def test_pyramid_levels_pool_by_parent_cell():
    pts, _ = sphere(3000)
    levels, inv = build_pyramid(pts, 0.05, 4)
    assert [lv.grid_m for lv in levels] == [0.05, 0.1, 0.2, 0.4]
    assert inv.shape == (3000,) and int(levels[0].counts.sum()) == 3000
    for fine, coarse in zip(levels, levels[1:]):
        assert torch.equal(coarse.cells[coarse.parent], torch.div(fine.cells, 2,
                                                                  rounding_mode='floor'))
        assert int(coarse.counts.sum()) == 3000
    with pytest.raises(ValueError, match='non-negative'):
        build_pyramid(pts - 10, 0.05, 2)


def test_serialization_neighbours_are_valid_rows_within_radius_and_recall_is_useful():
    pts, _ = sphere(20000)
    levels, _ = build_pyramid(pts, 0.05, 1)
    q = pts[:2000] + 0.01
    found = serialization_neighbours(levels[0], q, ('z', 'z-trans'), 16, 0.15)
    assert found.index.min() >= 0 and found.index.max() < levels[0].size
    assert torch.all(found.dist[found.mask] <= 0.15)
    assert torch.isinf(found.dist[~found.mask]).all()
    exact = knn_neighbours(levels[0], q, 8, 0.15)
    assert 0.3 < recall(found, exact) <= 1.0
    assert recall(exact, exact) == 1.0


def test_serialization_neighbours_of_several_curves_are_their_union_without_repeats():
    pts, _ = sphere(20000)
    levels, _ = build_pyramid(pts, 0.05, 1)
    q = pts[:500] + 0.01
    both = serialization_neighbours(levels[0], q, ('z', 'z-trans'), 16, 0.15)
    each = [serialization_neighbours(levels[0], q, (c,), 16, 0.15) for c in ('z', 'z-trans')]
    repeats = 0
    for i in range(len(q)):
        rows = both.index[i][both.mask[i]].tolist()
        union = set().union(*(set(n.index[i][n.mask[i]].tolist()) for n in each))
        assert set(rows) == union
        repeats += len(rows) - len(set(rows))
    assert repeats == 0
    # the two curves' windows do overlap: without the repeat test pairs would be counted twice
    overlap = sum(len(set(each[0].index[i][each[0].mask[i]].tolist())
                      & set(each[1].index[i][each[1].mask[i]].tolist())) for i in range(len(q)))
    assert overlap > 0


def test_coarser_level_codes_by_shifting_find_the_same_neighbours():
    pts, _ = sphere(20000)
    levels, _ = build_pyramid(pts, 0.05, 4)
    g = torch.Generator().manual_seed(2)
    q = torch.cat([pts[:3000] + 0.1 * torch.randn(3000, 3, generator=g),
                   torch.tensor([[0.0, 0.0, 0.0], [1e6, 1e6, 1e6]])])
    curves = ('z', 'z-trans', 'hilbert')
    fine = query_codes(q, levels[0].grid_m, ('z', 'z-trans'))
    for i, level in enumerate(levels):
        shifted = coarser_codes(fine, i)
        assert set(shifted) == {'z', 'z-trans'}
        direct = query_codes(q, level.grid_m, ('z', 'z-trans'))
        assert all(torch.equal(shifted[c][:-1], direct[c][:-1]) for c in shifted)
        a = serialization_neighbours(level, q, curves, 8, 0.3 * 2 ** i)
        b = serialization_neighbours(level, q, curves, 8, 0.3 * 2 ** i, shifted)
        assert torch.equal(a.index, b.index) and torch.equal(a.mask, b.mask)
        assert not a.mask[-1].any() and a.mask.any()


def test_neighbours_of_queries_outside_the_level_never_wrap():
    pts, _ = sphere(500)
    levels, _ = build_pyramid(pts, 0.05, 1)
    q = torch.tensor([[0.0, 0.0, 0.0], [1e5, 1e5, 1e5]])
    found = serialization_neighbours(levels[0], q, ('z',), 8, 0.2)
    assert not found.mask.any()


def test_masked_candidates_change_nothing_and_isolated_queries_get_nothing():
    """The decoder works on valid pairs only: extra masked candidates must not matter."""
    torch.manual_seed(1)
    pts, nrm = sphere(3000)
    levels, _ = build_pyramid(pts, 0.05, 1)
    level = levels[0]
    q = torch.cat([pts[:300] + 0.02, torch.tensor([[50.0, 50.0, 50.0]])])
    exact = knn_neighbours(level, q, 6, 0.2)
    junk = torch.randint(0, level.size, exact.index.shape)
    padded = Neighbours(torch.cat([exact.index, junk], 1),
                        torch.cat([exact.mask, torch.zeros_like(exact.mask)], 1),
                        torch.cat([exact.dist, torch.full(exact.dist.shape, float('inf'))], 1))
    pairs, padded_pairs = exact.pairs(level.xyz, q), padded.pairs(level.xyz, q)
    valid = int(exact.mask.sum())
    assert torch.equal(pairs.row, padded_pairs.row) and len(pairs.row) >= valid
    assert torch.isfinite(pairs.dist[:valid]).all() and torch.isinf(pairs.dist[valid:]).all()
    normals = torch.nn.functional.normalize(torch.randn(level.size, 3), dim=1)
    agg = LevelAggregator(5, DecoderSpec())
    per_cell = agg.cell_features(torch.randn(level.size, 5))
    with torch.no_grad():
        a = agg(per_cell, 0.05, pairs)
        b = agg(per_cell, 0.05, padded_pairs)
    assert torch.equal(a, b)
    sdf, udf, support = classical_sdf(normals, pairs, 0.05)
    assert torch.equal(udf[:-1], exact.dist[:-1].min(1).values)
    assert torch.isinf(udf[-1]) and support[-1] == 0 and sdf[-1] == 0
    # The pooled feature of the far query is the residual MLP of zero, not NaN.
    with torch.no_grad():
        res_of_zero = agg.res(torch.zeros(1, DecoderSpec().hidden))[0]
    assert torch.isfinite(a).all() and torch.allclose(a[-1], res_of_zero, atol=1e-6)


def test_untrained_model_is_the_classical_estimate_and_accurate_on_a_sphere():
    pts, nrm = sphere(20000)
    model = NoksrModel(TINY).eval()
    g = torch.Generator().manual_seed(1)
    q = 3 + torch.randn(3000, 3, generator=g) * 0.6
    with torch.no_grad():
        sdf, udf = model(pts, nrm, q)
    true = 1 - (q - 3).norm(dim=1)
    near = true.abs() < 0.1
    assert (sdf - true)[near].abs().mean() < 0.02
    assert (sdf[true > 0.05] > 0).float().mean() > 0.95    # positive inside
    assert (udf - true.abs())[near].abs().mean() < 0.03


def test_inference_is_deterministic_and_frame_independent():
    pts, nrm = sphere(5000)
    model = NoksrModel(TINY).eval()
    q = pts[:500] + 0.02
    with torch.no_grad():
        a = model(pts, nrm, q)
        b = model(pts, nrm, q)
        shift = torch.tensor([1000.0, -500.0, 20.0])
        c = model(pts + shift, nrm, q + shift)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.allclose(a[0], c[0], atol=2e-3)


def test_gradients_reach_every_trained_parameter():
    pts, nrm = sphere(4000)
    model = NoksrModel(TINY)
    for head in (model.decoder.sdf_head, model.decoder.udf_head):
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    sdf, udf = model(pts, nrm, pts[:1000] + 0.03)
    (sdf.square().mean() + udf.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize('fusion', ['sum', 'mean', 'concat', 'attention'])
def test_every_level_fusion_runs(fusion):
    spec = ModelSpec(backbone=TINY.backbone, decoder=DecoderSpec(hidden=16, head_hidden=16,
                                                                 fusion=fusion, head_layers=1))
    pts, nrm = sphere(2000)
    sdf, udf = NoksrModel(spec)(pts, nrm, pts[:100])
    assert sdf.shape == udf.shape == (100,)


def test_bad_inputs_are_clear_errors():
    model = NoksrModel(TINY)
    with pytest.raises(ValueError, match='empty'):
        model.encode(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match='finite'):
        model.encode(torch.tensor([[0.0, 0.0, float('nan')]]), torch.ones(1, 3))
    with pytest.raises(ValueError, match=r'\(N,3\)'):
        model.encode(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match='fusion'):
        DecoderSpec(fusion='max')


def test_fourier_encoding_shape():
    assert fourier(torch.zeros(5, 7, 3), 4).shape == (5, 7, 27)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = NoksrModel(TINY)
    path = save_checkpoint(tmp_path / 'm.pt', model, {'seed': 3})
    loaded, meta = load_model(path)
    assert meta == {'seed': 3} and loaded.spec == TINY
    for (na, a), (nb, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert na == nb and torch.equal(a, b)
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='junk.pt'):
        read_checkpoint(tmp_path / 'junk.pt')
    with pytest.raises(CheckpointError, match='does not exist'):
        read_checkpoint(tmp_path / 'missing.pt')
    torch.save({'format': 'other'}, tmp_path / 'other.pt')
    with pytest.raises(CheckpointError, match='not a noksr_ros checkpoint'):
        read_checkpoint(tmp_path / 'other.pt')
    data = read_checkpoint(path)
    data['state_dict'].pop(next(iter(data['state_dict'])))
    torch.save(data, tmp_path / 'short.pt')
    with pytest.raises(CheckpointError, match='does not match'):
        load_model(tmp_path / 'short.pt')


class _Evil:
    def __reduce__(self):
        return (print, ('code ran',))


def test_a_pickle_with_code_in_it_is_refused(tmp_path, capsys):
    path = tmp_path / 'evil.pt'
    torch.save({'format': 'noksr_ros/checkpoint/1', 'payload': _Evil()}, path)
    with pytest.raises(CheckpointError, match='refused'):
        read_checkpoint(path)
    assert 'code ran' not in capsys.readouterr().out


def test_the_shipped_checkpoint_loads_safely_and_says_how_it_was_trained():
    assert SHIPPED.is_file() and SHIPPED.stat().st_size < 20_000_000
    model, meta = load_model()
    assert meta['command'].startswith('noksr train') and meta['steps'] > 0
    # A flat oriented patch: the trained SDF still changes sign across it.
    g = torch.linspace(-1, 1, 60)
    xy = torch.cartesian_prod(g, g)
    pts = torch.cat([xy, torch.zeros(len(xy), 1)], 1)
    nrm = torch.zeros_like(pts)
    nrm[:, 2] = 1
    with torch.no_grad():
        sdf, _ = model(pts, nrm, torch.tensor([[0.0, 0.0, 0.15], [0.0, 0.0, -0.15]]))
    assert sdf[0] < 0 < sdf[1]


def test_levels_build_their_cell_hash_and_sorted_positions_on_first_use():
    pts, _ = sphere(2000)
    levels, _ = build_pyramid(pts, 0.05, 2)
    level = levels[1]
    assert level._index is None and not level._sorted_xyz
    perm, _ = level.order('z')
    assert torch.equal(level.sorted_xyz('z'), level.xyz[perm])
    assert level.index.lookup(level.cells[:5]).tolist() == list(range(5))
    assert level.index is level.index

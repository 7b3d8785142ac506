"""Sparse marching cubes: the generated case table, analytic SDFs, seams, trimming, edge cases."""

import itertools
import math

import pytest
from scipy.spatial import cKDTree
import torch

from noksr_ros.meshing import (
    IJK_MAX,
    active_corners_near_points,
    case_table,
    cubes_in_box,
    euler_characteristic,
    is_watertight,
    marching_cubes_sparse,
    pack_ijk,
    weld_by_edge_ids,
)
from noksr_ros.meshing.case_table import EDGES, FACES, case_triangles

DEVICES = [
    'cpu',
    pytest.param('cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason='no CUDA device available')),
]
VOXEL = 0.05
CENTRE = (0.0123, -0.0071, 0.0049)  # off the lattice, so no corner has an SDF of exactly 0


# ---------------------------------------------------------------- helpers

def grid(lo: int, hi: int, device='cpu') -> torch.Tensor:
    r = torch.arange(lo, hi + 1, device=device)
    return torch.stack(torch.meshgrid(r, r, r, indexing='ij'), -1).reshape(-1, 3)


def sphere_sdf(ijk, voxel=VOXEL, radius=1.0, centre=CENTRE):
    p = ijk.double() * voxel - torch.tensor(centre, dtype=torch.float64, device=ijk.device)
    return (radius - p.norm(dim=1)).float()  # positive inside


def box_sdf(ijk, voxel=VOXEL, half=(0.6, 0.45, 0.3), centre=CENTRE):
    p = ijk.double() * voxel - torch.tensor(centre, dtype=torch.float64, device=ijk.device)
    q = p.abs() - torch.tensor(half, dtype=torch.float64, device=ijk.device)
    outside = q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)
    return (-outside).float()


def face_normals(vertices, faces):
    tri = vertices.double()[faces]
    return torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)


def rows_as_set(rows):
    return {tuple(r) for r in rows.tolist()}


def canonical_faces(faces, edge_ids):
    """Faces as edge-id triples rotated to start at the smallest id (winding kept)."""
    ids = edge_ids[faces]
    shift = ids.argmin(dim=1, keepdim=True)
    order = (shift + torch.arange(3, device=ids.device)) % 3
    return rows_as_set(torch.gather(ids, 1, order))


# ---------------------------------------------------------------- the generated table

def _crossed(case):
    return {e for e, (a, b, _) in enumerate(EDGES) if ((case >> a) & 1) != ((case >> b) & 1)}


def _boundary_segments(case):
    """Directed triangle edges used once: the loops the case's surface cuts on the cube."""
    directed = [(t[i], t[(i + 1) % 3]) for t in case_triangles(case) for i in range(3)]
    return {d for d in directed if (d[1], d[0]) not in directed}, directed


def _face_edges(face):
    pairs = {frozenset((face[i], face[(i + 1) % 4])) for i in range(4)}
    return {e for e, (a, b, _) in enumerate(EDGES) if frozenset((a, b)) in pairs}


def test_table_uses_exactly_the_crossed_edges_of_every_case():
    table = case_table()
    assert table.triangles.shape[0] == 256 and int(table.counts[0]) == 0
    for case in range(256):
        used = {e for t in case_triangles(case) for e in t}
        assert used == _crossed(case), case
        assert int(table.counts[case]) == len(case_triangles(case))


def test_table_surfaces_are_closed_loops_on_the_cube_faces():
    face_edges = [_face_edges(f) for f in FACES]
    for case in range(256):
        boundary, directed = _boundary_segments(case)
        # Inner fan edges are used twice, in opposite directions; nothing more than twice.
        assert len(set(directed)) == len(directed), case
        starts = sorted(s for s, _ in boundary)
        ends = sorted(e for _, e in boundary)
        assert starts == ends == sorted(_crossed(case)), case  # each vertex: one in, one out
        for a, b in boundary:
            assert any(a in fe and b in fe for fe in face_edges), (case, a, b)


def test_table_fan_diagonals_cross_the_cube_interior():
    # A diagonal between two edges of one face would lie in that face, where the neighbouring
    # cube may draw it too: four faces on one mesh edge.
    face_edges = [_face_edges(f) for f in FACES]
    for case in range(256):
        boundary, directed = _boundary_segments(case)
        inner = {frozenset(d) for d in directed} - {frozenset(b) for b in boundary}
        for a, b in map(tuple, inner):
            assert not any(a in fe and b in fe for fe in face_edges), (case, a, b)


def test_table_has_no_degenerate_triangles():
    table = case_table()
    offsets = table.corner_offsets.double()
    mid = (offsets[table.edge_corners[:, 0]] + offsets[table.edge_corners[:, 1]]) / 2
    for case in range(256):
        for tri in case_triangles(case):
            assert len(set(tri)) == 3
            p = mid[list(tri)]
            assert torch.cross(p[1] - p[0], p[2] - p[0], dim=0).norm() > 1e-6


def test_table_resolves_shared_faces_identically_in_both_cubes():
    boundary = [_boundary_segments(c)[0] for c in range(256)]
    for axis in range(3):
        upper = [e for e, (a, b, ax) in enumerate(EDGES) if ax != axis and (a >> axis) & 1]
        lower = [e for e, (a, b, ax) in enumerate(EDGES) if ax != axis and not (a >> axis) & 1]
        to_lower = dict(zip(upper, lower, strict=True))  # same edge seen from the cube above
        for case in range(256):
            top = [(case >> c) & 1 for c in range(8) if (c >> axis) & 1]
            mine = {(to_lower[a], to_lower[b]) for a, b in boundary[case]
                    if a in to_lower and b in to_lower}
            for far in itertools.product((0, 1), repeat=4):
                bits = iter(top)
                far_bits = iter(far)
                other = sum(((next(bits) if not (c >> axis) & 1 else next(far_bits)) << c)
                            for c in range(8))
                theirs = {(a, b) for a, b in boundary[other] if a in lower and b in lower}
                assert mine == {(b, a) for a, b in theirs}, (axis, case, far)


def test_table_winds_every_triangle_from_inside_to_outside():
    table = case_table()
    offsets = table.corner_offsets.double()
    mid = (offsets[table.edge_corners[:, 0]] + offsets[table.edge_corners[:, 1]]) / 2
    for case in range(256):
        value = torch.tensor([1.0 if (case >> c) & 1 else -1.0 for c in range(8)],
                             dtype=torch.float64, requires_grad=False)
        for tri in case_triangles(case):
            p = mid[list(tri)]
            centre = p.mean(0).requires_grad_(True)
            w = torch.stack([torch.where(offsets[:, a] > 0, centre[a], 1 - centre[a])
                             for a in range(3)]).prod(0)
            (grad,) = torch.autograd.grad((w * value).sum(), centre)
            normal = torch.cross(p[1] - p[0], p[2] - p[0], dim=0)
            assert float(normal @ grad) < 0, (case, tri)  # the SDF decreases along the normal


# ---------------------------------------------------------------- analytic SDFs

@pytest.mark.parametrize('device', DEVICES)
def test_sphere_is_accurate_closed_and_outward(device):
    ijk = grid(-26, 26, device)
    vertices, faces, edge_ids = marching_cubes_sparse(ijk, sphere_sdf(ijk), VOXEL,
                                                      return_edge_ids=True)
    assert vertices.dtype == torch.float32 and faces.dtype == torch.int64
    assert vertices.device.type == faces.device.type == device
    centred = vertices.double() - torch.tensor(CENTRE, dtype=torch.float64, device=device)
    assert float((centred.norm(dim=1) - 1).abs().max()) < 0.01
    normals = face_normals(vertices, faces)
    assert abs(float(normals.norm(dim=1).sum()) / 2 / (4 * math.pi) - 1) < 0.01
    radial = centred[faces].mean(dim=1)
    assert bool(((normals * radial).sum(dim=1) > 0).all())
    assert is_watertight(faces.cpu()) and euler_characteristic(len(vertices), faces.cpu()) == 2
    assert torch.unique(vertices, dim=0).shape[0] == len(vertices)
    assert torch.unique(edge_ids).shape[0] == len(edge_ids)
    assert bool((torch.diff(edge_ids) > 0).all())
    assert torch.unique(faces.reshape(-1)).shape[0] == len(vertices)  # all referenced


def test_tilted_plane_vertices_lie_on_the_plane():
    ijk = grid(-10, 10)
    normal = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    normal = normal / normal.norm()
    sdf = (0.0137 - ijk.double() * VOXEL @ normal).float()  # inside below the plane
    vertices, faces = marching_cubes_sparse(ijk, sdf, VOXEL)
    assert len(faces) > 500
    assert float((vertices.double() @ normal - 0.0137).abs().max()) < 1e-6
    unit = face_normals(vertices, faces)
    unit = unit / unit.norm(dim=1, keepdim=True)
    assert float((unit @ normal).min()) > 0.999


def test_box_vertices_lie_on_the_box_and_close_it():
    ijk = grid(-20, 20)
    vertices, faces = marching_cubes_sparse(ijk, box_sdf(ijk), VOXEL)
    p = vertices.double() - torch.tensor(CENTRE, dtype=torch.float64)
    q = p.abs() - torch.tensor([0.6, 0.45, 0.3], dtype=torch.float64)
    surface_distance = (q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)).abs()
    assert float(surface_distance.max()) < 0.5 * VOXEL
    assert is_watertight(faces) and euler_characteristic(len(vertices), faces) == 2


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_random_field_with_ambiguous_faces_is_closed_and_manifold(seed):
    gen = torch.Generator().manual_seed(seed)
    ijk = grid(0, 11)
    sdf = torch.randn(len(ijk), generator=gen)
    border = ((ijk == 0) | (ijk == 11)).any(dim=1)
    sdf[border] = -1.0  # outside at the border: every component is closed
    vertices, faces = marching_cubes_sparse(ijk, sdf, 1.0)
    # Noise hits the ambiguous faces hundreds of times; every mesh edge still has two faces.
    assert len(faces) > 1000 and is_watertight(faces)
    assert float(face_normals(vertices, faces).norm(dim=1).min()) > 0


def test_sdf_exactly_zero_counts_as_inside_and_stays_closed():
    ijk = grid(-8, 8)
    sdf = 5.0 - ijk.double().norm(dim=1)  # exactly 0 at corners like (5, 0, 0) and (3, 4, 0)
    assert int((sdf == 0).sum()) > 0
    vertices, faces = marching_cubes_sparse(ijk, sdf.float(), 1.0)
    assert is_watertight(faces) and euler_characteristic(len(vertices), faces) == 2
    on_corner = (vertices - vertices.round()).abs().max(dim=1).values == 0
    assert bool(on_corner.any())  # zero corners are vertices, as inside corners of their edges


# ---------------------------------------------------------------- sparsity, seams, trimming

def test_sparse_band_and_point_activation_match_the_dense_grid():
    dense_ijk = grid(-26, 26)
    dense = marching_cubes_sparse(dense_ijk, sphere_sdf(dense_ijk), VOXEL)
    band = dense_ijk[sphere_sdf(dense_ijk).abs() < 2 * VOXEL]
    shuffled = band[torch.randperm(len(band), generator=torch.Generator().manual_seed(0))]
    sparse = marching_cubes_sparse(shuffled, sphere_sdf(shuffled), VOXEL)
    assert len(band) < len(dense_ijk) / 4
    assert torch.equal(sparse[0], dense[0]) and torch.equal(sparse[1], dense[1])
    golden = (1 + 5 ** 0.5) / 2
    k = torch.arange(40000, dtype=torch.float64) + 0.5
    z, phi = 1 - 2 * k / 40000, 2 * math.pi * k / golden
    rho = (1 - z * z).sqrt()
    points = torch.stack([rho * phi.cos(), rho * phi.sin(), z], 1) + torch.tensor(CENTRE)
    active = active_corners_near_points(points.float(), VOXEL, dilation_voxels=1)
    from_points = marching_cubes_sparse(active, sphere_sdf(active), VOXEL)
    assert torch.equal(from_points[0], dense[0]) and torch.equal(from_points[1], dense[1])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('sdf_fn', [sphere_sdf, box_sdf], ids=['sphere', 'box'])
def test_boxes_meshed_separately_weld_into_the_whole_mesh(device, sdf_fn):
    ijk = grid(-25, 25, device)
    sdf = sdf_fn(ijk)
    whole = marching_cubes_sparse(ijk, sdf, VOXEL, return_edge_ids=True)
    cuts = [(-25, 3), (3, 26)]  # uneven split through the surface, 2 x 2 x 2 boxes
    parts = []
    for (x0, x1), (y0, y1), (z0, z1) in itertools.product(cuts, repeat=3):
        lo, hi = (x0, y0, z0), (x1, y1, z1)
        # A box's own corners plus one layer of its neighbours' corners.
        near = ((ijk >= torch.tensor(lo, device=device))
                & (ijk <= torch.tensor(hi, device=device))).all(dim=1)
        parts.append(marching_cubes_sparse(ijk[near], sdf[near], VOXEL,
                                           cube_mask_fn=cubes_in_box(lo, hi),
                                           return_edge_ids=True))
    all_ids = torch.cat([p[2] for p in parts])
    assert len(all_ids) > len(torch.unique(all_ids))  # the boxes really share border vertices
    for part in parts:  # every shared vertex is bit-identical to the whole mesh's vertex
        row = torch.searchsorted(whole[2], part[2])
        assert torch.equal(whole[2][row], part[2]) and torch.equal(whole[0][row], part[0])
    vertices, faces, edge_ids = weld_by_edge_ids(parts)
    assert torch.equal(edge_ids, whole[2]) and torch.equal(vertices, whole[0])
    assert canonical_faces(faces, edge_ids) == canonical_faces(whole[1], whole[2])
    assert len(faces) == len(whole[1]) and is_watertight(faces.cpu())


def test_udf_trimming_removes_faces_far_from_the_data():
    ijk = grid(-26, 26)
    sdf = sphere_sdf(ijk)
    full = marching_cubes_sparse(ijk, sdf, VOXEL)
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(20000, 3, generator=gen, dtype=torch.float64)
    data = data / data.norm(dim=1, keepdim=True)
    data = data[data[:, 2] > 0] + torch.tensor(CENTRE, dtype=torch.float64)  # upper half only
    udf = torch.from_numpy(cKDTree(data.numpy()).query((ijk.double() * VOXEL).numpy())[0])
    kept = {}
    for mode in ('any', 'all'):
        vertices, faces = marching_cubes_sparse(ijk, sdf, VOXEL, udf=udf.float(),
                                                udf_trim_m=0.1, trim_mode=mode)
        z = vertices[:, 2].double() - CENTRE[2]
        assert float(z.min()) > -0.2 and float(z.max()) > 0.95  # lower half gone, top kept
        assert torch.unique(faces.reshape(-1)).shape[0] == len(vertices)
        kept[mode] = len(faces)
    assert len(full[1]) * 0.45 < kept['any'] < kept['all'] < len(full[1]) * 0.6


# ---------------------------------------------------------------- edge cases and errors

def test_empty_and_uncut_inputs_give_typed_empty_meshes():
    cases = [(torch.zeros((0, 3), dtype=torch.long), torch.zeros(0)),
             (grid(0, 3), torch.ones(64)), (grid(0, 3), -torch.ones(64)),
             (torch.tensor([[0, 0, 0], [0, 0, 1]]), torch.tensor([1.0, -1.0]))]  # no full cube
    for ijk, sdf in cases:
        vertices, faces, edge_ids = marching_cubes_sparse(ijk, sdf, 0.1, return_edge_ids=True)
        assert vertices.shape == (0, 3) and vertices.dtype == torch.float32
        assert faces.shape == (0, 3) and faces.dtype == torch.int64
        assert edge_ids.shape == (0,) and edge_ids.dtype == torch.int64


def test_nan_corners_are_missing_and_their_cubes_skipped():
    ijk = grid(-26, 26)
    sdf = sphere_sdf(ijk)
    hole = int(torch.argmin(sdf.abs()))
    sdf_nan = sdf.clone()
    sdf_nan[hole] = float('nan')
    with_nan = marching_cubes_sparse(ijk, sdf_nan, VOXEL)
    keep = torch.arange(len(ijk)) != hole
    without = marching_cubes_sparse(ijk[keep], sdf[keep], VOXEL)
    assert torch.equal(with_nan[0], without[0]) and torch.equal(with_nan[1], without[1])
    assert bool(torch.isfinite(with_nan[0]).all()) and not is_watertight(with_nan[1])
    assert len(with_nan[1]) < len(marching_cubes_sparse(ijk, sdf, VOXEL)[1])


def test_origin_shifts_vertices_and_far_coordinates_keep_precision():
    ijk = grid(-12, 12)
    base = marching_cubes_sparse(ijk, sphere_sdf(ijk, radius=0.5), VOXEL)
    origin = torch.tensor([10.0, -20.0, 3.0], dtype=torch.float64)
    moved = marching_cubes_sparse(ijk, sphere_sdf(ijk, radius=0.5), VOXEL, origin_m=origin)
    assert torch.equal(moved[1], base[1])
    assert torch.allclose(moved[0].double() - origin, base[0].double(), atol=1e-5)
    far = ijk + torch.tensor([IJK_MAX - 12, 0, 0])
    far_mesh = marching_cubes_sparse(far, sphere_sdf(ijk, radius=0.5), VOXEL)
    assert torch.allclose(far_mesh[0].double() - (IJK_MAX - 12) * VOXEL * torch.tensor(
        [1.0, 0, 0], dtype=torch.float64), base[0].double(), atol=0.01)


def test_bad_inputs_are_rejected_with_the_argument_named():
    ijk, sdf = grid(0, 2), torch.ones(27)
    with pytest.raises(ValueError, match='corner_ijk'):
        marching_cubes_sparse(ijk.float(), sdf, 0.1)
    with pytest.raises(ValueError, match='corner_ijk'):
        marching_cubes_sparse(ijk + IJK_MAX, sdf, 0.1)
    with pytest.raises(ValueError, match='twice'):
        marching_cubes_sparse(torch.cat([ijk, ijk[:1]]), torch.ones(28), 0.1)
    with pytest.raises(ValueError, match='sdf'):
        marching_cubes_sparse(ijk, torch.ones(26), 0.1)
    with pytest.raises(ValueError, match='together'):
        marching_cubes_sparse(ijk, sdf, 0.1, udf=sdf)
    with pytest.raises(ValueError, match='trim_mode'):
        marching_cubes_sparse(ijk, sdf, 0.1, udf=sdf, udf_trim_m=0.1, trim_mode='some')
    with pytest.raises(ValueError, match='voxel_size_m'):
        marching_cubes_sparse(ijk, sdf, 0.0)
    with pytest.raises(ValueError, match='cube_mask_fn'):
        marching_cubes_sparse(ijk, sdf, 0.1, cube_mask_fn=lambda c: c[:, 0] * 0)


def test_cube_mask_meshes_only_the_owned_cubes_but_reads_all_corners():
    ijk = grid(-26, 26)
    sdf = sphere_sdf(ijk)
    whole = marching_cubes_sparse(ijk, sdf, VOXEL, return_edge_ids=True)
    lo, hi = (0, -30, -30), (30, 30, 30)  # the x >= 0 half of the sphere
    half = marching_cubes_sparse(ijk, sdf, VOXEL, cube_mask_fn=cubes_in_box(lo, hi),
                                 return_edge_ids=True)
    assert 0.45 * len(whole[1]) < len(half[1]) < 0.55 * len(whole[1])
    assert float(half[0][:, 0].min()) >= 0.0  # no cube with a lower corner at x < 0
    assert canonical_faces(half[1], half[2]) <= canonical_faces(whole[1], whole[2])


def test_active_corners_are_the_dilated_voxel_corners_sorted_and_unique():
    points = torch.tensor([[0.12, -0.05, 0.31], [0.13, -0.04, 0.32]])  # one voxel (1, -1, 3)
    corners = active_corners_near_points(points, 0.1, dilation_voxels=0)
    expected = torch.tensor(list(itertools.product((1, 2), (-1, 0), (3, 4))))
    assert torch.equal(corners, expected)
    dilated = active_corners_near_points(points, 0.1, dilation_voxels=1)
    assert torch.equal(dilated, torch.tensor(list(itertools.product(
        range(0, 4), range(-2, 2), range(2, 6)))))
    keys = pack_ijk(dilated)
    assert bool((torch.diff(keys) > 0).all())
    shifted = active_corners_near_points(points, 0.1, 0, origin_m=torch.tensor([0.1, 0.0, 0.0]))
    assert torch.equal(shifted, expected - torch.tensor([1, 0, 0]))
    assert active_corners_near_points(torch.zeros(0, 3), 0.1).shape == (0, 3)
    with pytest.raises(ValueError, match='dilation_voxels'):
        active_corners_near_points(points, 0.1, -1)

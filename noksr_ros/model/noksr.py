"""
NoksrModel: oriented points -> SDF/UDF at query points, as two documented steps.

`encode(points, normals)` builds the voxel pyramid and runs the backbone once;
`decode(encoded, queries)` evaluates SDF (positive inside, i.e. against the normals) and UDF at any
number of queries in chunks. Both work in a local frame (points minus their minimum minus a
margin),
so absolute coordinates never enter the network and codes are never negative.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from noksr_ros.model.backbone import Backbone, BackboneSpec
from noksr_ros.model.decoder import Decoder, DecoderSpec, classical_sdf
from noksr_ros.model.levels import Level, build_pyramid
from noksr_ros.model.neighbours import (
    MORTON_CURVES,
    Neighbours,
    coarser_codes,
    knn_neighbours,
    query_codes,
    serialization_neighbours,
)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines the network's shape and its neighbour search."""

    grid_m: float = 0.1
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    decoder: DecoderSpec = field(default_factory=DecoderSpec)
    windows: tuple[int, ...] = (12, 8, 6, 6)
    radius_cells: float = 3.0
    search_curves: tuple[str, ...] = ('z', 'z-trans')
    neighbour_mode: str = 'serialization'
    knn_k: int = 8
    prior_sigma_m: float = 0.12
    clamp_m: float = 0.6
    margin_m: float = 2.0
    query_chunk: int = 8192

    def __post_init__(self) -> None:
        if len(self.windows) != self.backbone.num_levels:
            raise ValueError(f'windows needs one entry per level ({self.backbone.num_levels})')
        if self.neighbour_mode not in ('serialization', 'knn'):
            raise ValueError("neighbour_mode must be 'serialization' or 'knn'")

    def to_dict(self) -> dict:
        """Plain-data form stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Inverse of `to_dict` (tuples restored)."""
        def tup(d: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        data = dict(data)
        backbone = BackboneSpec(**tup(data.pop('backbone')))
        decoder = DecoderSpec(**tup(data.pop('decoder')))
        return cls(backbone=backbone, decoder=decoder, **tup(data))


@dataclass
class Encoded:
    """Result of `NoksrModel.encode`: pyramid, per-level features, local-frame origin."""

    origin: torch.Tensor
    levels: list[Level]
    feats: list[torch.Tensor]
    normals: list[torch.Tensor]


def _pooled_normals(levels: list[Level], normals0: torch.Tensor) -> list[torch.Tensor]:
    """Unit mean normal per cell of every level (count-weighted from level 0 up)."""
    out = [normals0]
    for level in levels[1:]:
        child = out[-1] * levels[levels.index(level) - 1].counts[:, None]
        pooled = child.new_zeros(level.size, 3).index_add_(0, level.parent, child)
        out.append(pooled / torch.linalg.vector_norm(pooled, dim=1, keepdim=True).clamp_min(1e-9))
    return out


class NoksrModel(nn.Module):
    """The whole network: backbone + aggregation decoder + SDF/UDF heads."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = Backbone(spec.backbone)
        self.decoder = Decoder(spec.backbone.level_channels(), spec.decoder)

    def encode(self, points: torch.Tensor, normals: torch.Tensor) -> Encoded:
        """`points`, `normals` (N,3) float32 in any frame (N >= 1) -> features for decoding."""
        if points.shape != normals.shape or points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f'points and normals must both be (N,3); got {tuple(points.shape)} '
                             f'and {tuple(normals.shape)}')
        if points.shape[0] == 0:
            raise ValueError('cannot encode an empty point cloud')
        if not bool(torch.isfinite(points).all() & torch.isfinite(normals).all()):
            raise ValueError('points and normals must be finite (drop NaN/Inf rows first)')
        # Align the local frame to the coarsest cell so that two segments seeing the same points
        # build the same cells at every level (their meshes then agree across the shared face).
        top = self.spec.grid_m * 2 ** (self.spec.backbone.num_levels - 1)
        origin = torch.floor((points.min(dim=0).values - self.spec.margin_m) / top) * top
        local = points - origin
        levels, inv = build_pyramid(local, self.spec.grid_m, self.spec.backbone.num_levels)
        m0 = levels[0].size
        nsum = normals.new_zeros(m0, 3).index_add_(0, inv, normals)
        normals0 = nsum / torch.linalg.vector_norm(nsum, dim=1, keepdim=True).clamp_min(1e-9)
        offset = (levels[0].xyz / self.spec.grid_m) - levels[0].cells.to(points.dtype) - 0.5
        feats0 = torch.cat([normals0, offset, torch.log(levels[0].counts)[:, None]], dim=1)
        feats = self.backbone(levels, feats0)
        return Encoded(origin, levels, feats, _pooled_normals(levels, normals0))

    def _neighbours(self, level: Level, i: int, query: torch.Tensor,
                    fine_codes: dict[str, torch.Tensor]) -> Neighbours:
        radius = self.spec.radius_cells * level.grid_m
        if self.spec.neighbour_mode == 'knn':
            return knn_neighbours(level, query, self.spec.knn_k, radius)
        return serialization_neighbours(level, query, self.spec.search_curves,
                                        self.spec.windows[i], radius,
                                        coarser_codes(fine_codes, i))

    def _decode_chunk(self, enc: Encoded, per_cell: list[torch.Tensor], query: torch.Tensor
                      ) -> tuple[torch.Tensor, ...]:
        per_level = []
        prior_sdf = query.new_zeros(query.shape[0])
        prior_udf = query.new_full((query.shape[0],), float('inf'))
        support = query.new_zeros(query.shape[0])
        # Level i's Morton codes are level 0's shifted (levels double their cells): encode once.
        morton = tuple(c for c in self.spec.search_curves if c in MORTON_CURVES)
        fine_codes = query_codes(query, enc.levels[0].grid_m, morton) if morton else {}
        for i, (level, cells, agg) in enumerate(zip(enc.levels, per_cell,
                                                    self.decoder.levels)):
            nb = self._neighbours(level, i, query, fine_codes).pairs(level.xyz, query)
            sdf_i, udf_i, sup_i = classical_sdf(enc.normals[i], nb,
                                                self.spec.prior_sigma_m * 2 ** i)
            # The finest level with support defines the prior; coarser ones fill far queries.
            take = (support < 1e-3) & (sup_i >= 1e-3)
            prior_sdf = torch.where(take, sdf_i, prior_sdf)
            support = torch.where(take, sup_i, support)
            prior_udf = torch.minimum(prior_udf, udf_i)
            per_level.append(agg(cells, level.grid_m, nb))
        fused = self.decoder.fuse(per_level)
        return self.decoder(fused, prior_sdf, prior_udf, support, clamp_m=self.spec.clamp_m)

    def decode(self, enc: Encoded, queries: torch.Tensor, chunk: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        (sdf (Q,), udf (Q,)) in metres at `queries` (Q,3), same frame as encode's points.

        Queries are independent, so `chunk` (default `spec.query_chunk`) trades memory for speed;
        values change only by float rounding (matrix-product blocking, about 1e-8).
        """
        local = queries - enc.origin
        chunk = chunk or self.spec.query_chunk
        per_cell = [agg.cell_features(f) for agg, f in zip(self.decoder.levels, enc.feats)]
        sdfs, udfs = [], []
        for start in range(0, local.shape[0], chunk):
            sdf, udf = self._decode_chunk(enc, per_cell, local[start:start + chunk])
            sdfs.append(sdf)
            udfs.append(udf)
        if not sdfs:
            empty = queries.new_zeros(0)
            return empty, empty
        return torch.cat(sdfs), torch.cat(udfs)

    def forward(self, points: torch.Tensor, normals: torch.Tensor,
                queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode + decode in one call (training)."""
        return self.decode(self.encode(points, normals), queries)

"""
Aggregation A: per-level neighbour features -> SDF and UDF at query points.

Per level: each neighbour contributes [projected feature (8-d), Fourier encoding of
(query - neighbour) / level scale] through a linear layer and GELU (-> `hidden`), weighted by
inverse distance, then a residual MLP; levels are fused (sum, mean, concat or attentive
pooling). Two MLP heads (SDF, UDF) then predict corrections on top of a classical estimate: the
Gaussian-weighted signed point-to-plane distance of the finest level with neighbours (SDF) and
the distance to the nearest cell (UDF). With zero-initialised head outputs an untrained model is
exactly that classical estimate, so training on a 2-core CPU starts from a usable surface and
only learns corrections.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch
from torch import nn

from noksr_ros.model.gather import take_rows
from noksr_ros.model.neighbours import Pairs

FUSIONS = ('sum', 'mean', 'concat', 'attention')


@dataclass(frozen=True)
class DecoderSpec:
    """Sizes of the aggregation MLPs and heads."""

    feature_dim: int = 8
    fourier_freqs: int = 4
    hidden: int = 32
    head_hidden: int = 64
    head_layers: int = 2
    fusion: str = 'sum'

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f'fusion must be one of {FUSIONS}, got {self.fusion!r}')
        if self.head_layers < 1:
            raise ValueError('head_layers must be >= 1')


def fourier(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """(...,3) -> (...,3 + 6*freqs): x, sin and cos of x * pi * 2**i."""
    scales = math.pi * 2.0 ** torch.arange(freqs, device=x.device, dtype=x.dtype)
    xs = (x[..., None] * scales).flatten(-2)
    return torch.cat([x, torch.sin(xs), torch.cos(xs)], dim=-1)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(a, b), nn.GELU()]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


class LevelAggregator(nn.Module):
    """
    Per-neighbour [feature, Fourier(rel)] -> hidden, inverse-distance pooled, then a residual MLP.

    The feature half of the first layer is applied once per level cell and gathered, the residual
    MLP runs after pooling, once per query, and only valid neighbour pairs are computed (masked
    candidates would get weight 0): the per-neighbour work is one small matmul on the Fourier
    encoding of the valid pairs, which keeps the decoder affordable on a CPU.
    """

    def __init__(self, channels: int, spec: DecoderSpec) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, spec.feature_dim)
        self.freqs = spec.fourier_freqs
        self.feat_in = nn.Linear(spec.feature_dim, spec.hidden)
        self.rel_in = nn.Linear(3 + 6 * spec.fourier_freqs, spec.hidden, bias=False)
        self.res = nn.Sequential(nn.Linear(spec.hidden, spec.hidden), nn.GELU(),
                                 nn.Linear(spec.hidden, spec.hidden))

    def cell_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The feature half of the first layer, once per level cell (shared by all queries)."""
        return self.feat_in(self.proj(feats))

    def forward(self, per_cell: torch.Tensor, scale_m: float, pairs: Pairs) -> torch.Tensor:
        """(Q,hidden) pooled feature; zero for queries without a valid neighbour."""
        rel = -pairs.offset / scale_m  # query relative to the neighbour
        # gathered cell feature + rel_in(fourier(rel)) as one addmm (rel_in has no bias)
        h = torch.nn.functional.gelu(torch.addmm(take_rows(per_cell, pairs.row),
                                                 fourier(rel, self.freqs), self.rel_in.weight.t()))
        w = 1.0 / (pairs.dist + 0.1 * scale_m)
        pooled = pairs.sum(h * w[:, None]) / pairs.sum(w).clamp_min(1e-12)[:, None]
        return pooled + self.res(pooled)


def classical_sdf(normals: torch.Tensor, pairs: Pairs, sigma_m: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Signed point-to-plane distance (positive inside, against the normal) and nearest distance.

    Returns (sdf (Q,), udf (Q,), support (Q,) = sum of Gaussian weights). Queries without a valid
    neighbour get sdf 0 and udf = +inf clamped by the caller.
    """
    plane = (pairs.offset * take_rows(normals, pairs.row)).sum(-1)
    w = torch.exp(-(pairs.dist / sigma_m) ** 2)
    support = pairs.sum(w)
    sdf = pairs.sum(plane * w) / support.clamp_min(1e-12)
    udf = pairs.dist.new_full((pairs.count,), float('inf')).scatter_reduce_(
        0, pairs.query, pairs.dist, 'amin')
    return sdf, udf, support


class Decoder(nn.Module):
    """Fuses per-level aggregations and predicts (sdf, udf) corrections."""

    def __init__(self, level_channels: tuple[int, ...], spec: DecoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.levels = nn.ModuleList(LevelAggregator(c, spec) for c in level_channels)
        n = len(level_channels)
        fused = spec.hidden * n if spec.fusion == 'concat' else spec.hidden
        if spec.fusion == 'attention':
            self.score = nn.Linear(spec.hidden, 1)
        dims = [fused + 3] + [spec.head_hidden] * spec.head_layers
        self.sdf_head = _mlp(dims + [1])
        self.udf_head = _mlp(dims + [1])
        for head in (self.sdf_head, self.udf_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def fuse(self, per_level: list[torch.Tensor]) -> torch.Tensor:
        """Combine (Q,hidden) features of each level according to `spec.fusion`."""
        stack = torch.stack(per_level, dim=1)
        if self.spec.fusion == 'sum':
            return stack.sum(1)
        if self.spec.fusion == 'mean':
            return stack.mean(1)
        if self.spec.fusion == 'concat':
            return stack.flatten(1)
        attn = torch.softmax(self.score(stack), dim=1)
        return (attn * stack).sum(1)

    def forward(self, fused: torch.Tensor, prior_sdf: torch.Tensor, prior_udf: torch.Tensor,
                support: torch.Tensor, clamp_m: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (sdf, udf) (Q,) in metres from the fused feature and the classical prior."""
        udf0 = prior_udf.clamp(max=clamp_m)
        extra = torch.stack([prior_sdf / clamp_m, udf0 / clamp_m,
                             torch.log1p(support)], dim=1)
        h = torch.cat([fused, extra], dim=1)
        sdf = prior_sdf + clamp_m * self.sdf_head(h).squeeze(1)
        udf = torch.relu(udf0 + clamp_m * self.udf_head(h).squeeze(1))
        return sdf, udf

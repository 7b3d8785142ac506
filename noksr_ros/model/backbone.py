"""
A PTv3-style serialized point transformer U-Net in plain PyTorch.

Each block: conditional positional encoding (sparse conv k=3), attention inside fixed patches of
consecutive cells along one space-filling curve (block i uses curve i mod len(curves)), and an MLP.
Pooling merges cells sharing a parent cell (= code prefix), max of features; unpooling adds the
skip connection of the finer level. Output: features at every level, finest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from noksr_ros.model.levels import Level
from noksr_ros.model.sparse import SparseConv


@dataclass(frozen=True)
class BackboneSpec:
    """Widths, depths and attention settings; one entry per level for the tuples."""

    in_channels: int = 7
    enc_channels: tuple[int, ...] = (16, 32, 64, 96)
    enc_depths: tuple[int, ...] = (1, 1, 1, 1)
    dec_channels: tuple[int, ...] = (32, 32, 64)
    dec_depths: tuple[int, ...] = (1, 1, 1)
    heads: tuple[int, ...] = (1, 2, 4, 4)
    patch_size: int = 64
    stem_kernel: int = 3
    curves: tuple[str, ...] = ('z', 'z-trans')

    def __post_init__(self) -> None:
        n = len(self.enc_channels)
        if not (len(self.enc_depths) == len(self.heads) == n
                and len(self.dec_channels) == len(self.dec_depths) == n - 1):
            raise ValueError('BackboneSpec: enc_* and heads need one entry per level, dec_* one '
                             f'fewer (got {n} levels)')
        for c, h in zip(self.enc_channels, self.heads):
            if c % h:
                raise ValueError(f'BackboneSpec: {c} channels not divisible by {h} heads')

    @property
    def num_levels(self) -> int:
        """Number of pyramid levels."""
        return len(self.enc_channels)

    def level_channels(self) -> tuple[int, ...]:
        """Channels of the output feature of each level, finest first."""
        return tuple(self.dec_channels) + (self.enc_channels[-1],)


class PatchAttention(nn.Module):
    """Multi-head self-attention within patches of `patch` consecutive cells along a curve."""

    def __init__(self, channels: int, heads: int, patch: int) -> None:
        super().__init__()
        self.heads, self.patch = heads, patch
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """(M,C) features, (M,) curve order -> (M,C) attention output."""
        m, c = x.shape
        p = min(self.patch, max(m, 1))
        n_patch = -(-m // p)
        pad = n_patch * p - m
        xs = x.index_select(0, perm)
        if pad:
            xs = torch.cat([xs, xs.new_zeros(pad, c)], dim=0)
        qkv = self.qkv(xs).reshape(n_patch, p, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if pad:
            valid = torch.arange(n_patch * p, device=x.device).reshape(n_patch, p) < m
            mask = valid[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.permute(0, 2, 1, 3).reshape(n_patch * p, c)[:m]
        out = torch.empty_like(y)
        out[perm] = y
        return self.proj(out)


class Block(nn.Module):
    """CPE + patch attention + MLP, pre-norm residual."""

    def __init__(self, channels: int, heads: int, patch: int, curve: str) -> None:
        super().__init__()
        self.curve = curve
        self.cpe = SparseConv(channels, channels, 3)
        self.cpe_norm = nn.LayerNorm(channels)
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.attn = PatchAttention(channels, heads, patch)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(),
                                 nn.Linear(2 * channels, channels))

    def forward(self, x: torch.Tensor, level: Level) -> torch.Tensor:
        """(M,C) -> (M,C) on the cells of `level`."""
        x = x + self.cpe_norm(self.cpe(x, level.neighbours(3)))
        x = x + self.attn(self.norm1(x), level.order(self.curve)[0])
        return x + self.mlp(self.norm2(x))


def _stage(channels: int, depth: int, heads: int, spec: BackboneSpec, first: int) -> nn.ModuleList:
    curves = spec.curves
    return nn.ModuleList(Block(channels, heads, spec.patch_size, curves[(first + i) % len(curves)])
                         for i in range(depth))


class Backbone(nn.Module):
    """The U-Net. forward(levels, feats0) -> list of per-level features, finest first."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        enc, dec = spec.enc_channels, spec.dec_channels
        self.stem = SparseConv(spec.in_channels, enc[0], spec.stem_kernel)
        self.stem_norm = nn.LayerNorm(enc[0])
        self.down = nn.ModuleList(nn.Sequential(nn.Linear(enc[i - 1], enc[i]),
                                                nn.LayerNorm(enc[i]), nn.GELU())
                                  for i in range(1, spec.num_levels))
        counter, self.enc = 0, nn.ModuleList()
        for i in range(spec.num_levels):
            self.enc.append(_stage(enc[i], spec.enc_depths[i], spec.heads[i], spec, counter))
            counter += spec.enc_depths[i]
        self.up_skip, self.up_coarse, self.up_norm = (nn.ModuleList() for _ in range(3))
        self.dec = nn.ModuleList()
        for i in range(spec.num_levels - 1):
            coarse = enc[-1] if i == spec.num_levels - 2 else dec[i + 1]
            self.up_skip.append(nn.Linear(enc[i], dec[i]))
            self.up_coarse.append(nn.Linear(coarse, dec[i]))
            self.up_norm.append(nn.LayerNorm(dec[i]))
            heads = max(1, min(spec.heads[i], dec[i] // 8))
            while dec[i] % heads:
                heads -= 1
            self.dec.append(_stage(dec[i], spec.dec_depths[i], heads, spec, i))

    def forward(self, levels: list[Level], feats0: torch.Tensor) -> list[torch.Tensor]:
        """Level-0 input features (M0,C_in) -> per-level output features, finest first."""
        x = F.gelu(self.stem_norm(self.stem(feats0, levels[0].neighbours(self.spec.stem_kernel))))
        skips = []
        for i, level in enumerate(levels):
            if i > 0:
                x = self.down[i - 1](x)
                x = x.new_full((level.size, x.shape[1]), float('-inf')).scatter_reduce(
                    0, level.parent[:, None].expand_as(x), x, reduce='amax', include_self=True)
            for block in self.enc[i]:
                x = block(x, level)
            skips.append(x)
        outs = [x]
        for i in range(len(levels) - 2, -1, -1):
            coarse = self.up_coarse[i](x)[levels[i + 1].parent]
            x = F.gelu(self.up_norm[i](self.up_skip[i](skips[i]) + coarse))
            for block in self.dec[i]:
                x = block(x, levels[i])
            outs.append(x)
        return outs[::-1]

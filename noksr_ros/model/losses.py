"""Training losses of NoKSR (noksr.md): clamped SDF L1, on-surface, UDF, Laplacian, eikonal."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossWeights:
    """Weights and clamp distance of the loss terms (the paper's CARLA values by default)."""

    sdf: float = 300.0
    surface: float = 200.0
    udf: float = 150.0
    laplacian: float = 0.0
    eikonal: float = 0.0
    clamp_m: float = 0.6


def sdf_loss(pred: torch.Tensor, target: torch.Tensor, clamp_m: float) -> torch.Tensor:
    """L1 between SDFs clamped to +-clamp_m."""
    return (pred.clamp(-clamp_m, clamp_m) - target.clamp(-clamp_m, clamp_m)).abs().mean()


def udf_loss(pred: torch.Tensor, target: torch.Tensor, clamp_m: float) -> torch.Tensor:
    """L1 between UDFs clamped to clamp_m."""
    return (pred.clamp(max=clamp_m) - target.clamp(max=clamp_m)).abs().mean()


def gradient(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """D values / d points (Q,3), keeping the graph for higher derivatives."""
    return torch.autograd.grad(values.sum(), points, create_graph=True)[0]


def eikonal_loss(sdf: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Mean (|grad sdf| - 1)^2; `points` must require grad and produce `sdf`."""
    return ((gradient(sdf, points).norm(dim=1) - 1.0) ** 2).mean()


def laplacian_loss(sdf: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Mean |laplacian of sdf| (supplementary eq. 8): second derivatives per axis, summed."""
    grad = gradient(sdf, points)
    lap = sum(torch.autograd.grad(grad[:, i].sum(), points, create_graph=True)[0][:, i]
              for i in range(3))
    return lap.abs().mean()

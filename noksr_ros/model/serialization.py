"""
Serialization of point clouds: quantise to cells, encode along space-filling curves, sort.

Torch only (CPU or CUDA; every result lives on the device of the input). Points are quantised on a
grid of `grid_size_m` after subtracting an origin (the minimum by default), so cells are
non-negative; each cell is then encoded with the curves of `noksr_ros.curves`. Sorting is stable,
so equal codes keep their input order and the result is deterministic.
"""

from __future__ import annotations

import math

import torch

from noksr_ros.curves import MAX_BITS, ORDERS, encode, hilbert_from_morton

DEFAULT_BITS = 16


def _check_points(xyz: torch.Tensor) -> None:
    if not isinstance(xyz, torch.Tensor):
        raise ValueError(f'xyz must be a torch.Tensor, got {type(xyz).__name__}')
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f'xyz must have shape (N, 3), got {tuple(xyz.shape)}')
    if not xyz.dtype.is_floating_point:
        raise ValueError(f'xyz must be a floating point tensor, got {xyz.dtype}')


def _check_grid(grid_size_m: float) -> float:
    if not (isinstance(grid_size_m, (int, float)) and math.isfinite(grid_size_m)
            and grid_size_m > 0):
        raise ValueError(f'grid_size_m must be a finite number > 0, got {grid_size_m!r}')
    return float(grid_size_m)


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f'bits must be an integer in [1, {MAX_BITS}], got {bits!r}')


def _origin_tensor(xyz: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
    if origin is None:
        if xyz.shape[0] == 0:
            return xyz.new_zeros(3)
        return xyz.min(dim=0).values
    origin = torch.as_tensor(origin, dtype=xyz.dtype, device=xyz.device)
    if origin.shape != (3,):
        raise ValueError(f'origin must have shape (3,), got {tuple(origin.shape)}')
    return origin


def quantize(xyz: torch.Tensor, grid_size_m: float, origin: torch.Tensor | None = None,
             bits: int = DEFAULT_BITS) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Integer cells of points on a grid anchored at `origin`.

    Args:
        xyz: (N, 3) float points, any frame (metres).
        grid_size_m: cell edge in metres.
        origin: (3,) corner of cell (0, 0, 0) in the frame of `xyz`; None: the minimum of `xyz`.
        bits: cells per axis are limited to 2**bits (16 bits at 1 cm = a 655 m window).

    Returns:
        cells (N, 3) int64 in [0, 2**bits), and the origin used, (3,) in the dtype of `xyz`.

    Raises:
        ValueError: bad shapes or dtypes, non-finite points, or points outside
            [origin, origin + 2**bits * grid_size_m).

    """
    _check_points(xyz)
    grid_size_m = _check_grid(grid_size_m)
    _check_bits(bits)
    origin = _origin_tensor(xyz, origin)
    scaled = (xyz - origin).div_(grid_size_m)
    if xyz.shape[0]:
        lo, hi = torch.aminmax(scaled)  # NaN propagates: one check, one device sync
        if not bool((lo >= 0) & (hi < 2**bits)):
            raise ValueError(
                f'xyz must be finite and lie in [origin, origin + {2**bits} * {grid_size_m} m) '
                f'per axis (bits={bits}); relative to origin it spans '
                f'{float(lo) * grid_size_m} .. {float(hi) * grid_size_m} m')
    return scaled.floor_().to(torch.int64), origin


def encode_cells(cells: torch.Tensor, orders: tuple[str, ...] = ORDERS,
                 bits: int = DEFAULT_BITS) -> torch.Tensor:
    """Codes (len(orders), N) int64 of cells (N, 3) int64 in [0, 2**bits), one row per order."""
    if not orders:
        raise ValueError(f'orders must name at least one of {ORDERS}')
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f'orders must be a subset of {ORDERS}, got {order!r}')
    cells = _checked_cells(cells, bits)
    morton: dict[str, torch.Tensor] = {}  # Hilbert orders reuse the z-order codes
    rows = []
    for order in orders:
        base = 'z-trans' if order.endswith('-trans') else 'z'
        if base not in morton:
            morton[base] = encode(cells, base, bits, validate=False)
        rows.append(morton[base] if order == base
                    else hilbert_from_morton(morton[base], bits, validate=False))
    return torch.stack(rows)


def _checked_cells(cells: torch.Tensor, bits: int) -> torch.Tensor:
    """`cells` as int64 after checking shape, dtype, `bits` and the range (one reduction)."""
    if not isinstance(cells, torch.Tensor) or cells.ndim != 2 or cells.shape[1] != 3:
        raise ValueError('cells must be a torch.Tensor of shape (N, 3)')
    if cells.dtype.is_floating_point or cells.dtype == torch.bool:
        raise ValueError(f'cells must be an integer tensor, got {cells.dtype}')
    _check_bits(bits)
    cells = cells.long()
    if cells.shape[0] and not bool(((cells >> bits) == 0).all()):
        raise ValueError(f'cells must be in [0, 2**{bits}), got values in '
                         f'[{int(cells.min())}, {int(cells.max())}]')
    return cells


def encode_points(xyz: torch.Tensor, grid_size_m: float, orders: tuple[str, ...] = ORDERS,
                  bits: int = DEFAULT_BITS, origin: torch.Tensor | None = None) -> torch.Tensor:
    """
    Serialization codes (len(orders), N) int64 of points (N, 3) float, on their device.

    `quantize` first (origin = the minimum unless given), then one code row per order in
    `orders` (a subset of `noksr_ros.curves.ORDERS`).
    """
    cells, _ = quantize(xyz, grid_size_m, origin, bits)
    return encode_cells(cells, orders, bits)


def parent_code(code: torch.Tensor, levels: int) -> torch.Tensor:
    """Code of the ancestor cell `levels` halvings up: `code >> 3 * levels` (both curves)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise ValueError(f'levels must be an integer >= 0, got {levels!r}')
    return code >> (3 * levels)


def sort_by_code(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Stable sort of codes (..., N) along the last axis.

    Returns:
        sorted codes (..., N), order (..., N) int64 with `sorted = codes.gather(-1, order)`, and
        inverse (..., N) int64 with `codes = sorted.gather(-1, inverse)`.

    """
    if not isinstance(codes, torch.Tensor) or codes.ndim < 1:
        raise ValueError('codes must be a torch.Tensor with at least one dimension')
    sorted_codes, order = torch.sort(codes, dim=-1, stable=True)
    positions = torch.arange(codes.shape[-1], device=codes.device).expand_as(order)
    inverse = torch.empty_like(order).scatter_(-1, order, positions)
    return sorted_codes, order, inverse

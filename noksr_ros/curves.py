"""
Space-filling curves on integer cells, for numpy int64 arrays and torch int64 tensors alike.

A cell is three non-negative integers `x, y, z < 2**bits` (`bits` <= 21, so a code of `3 * bits`
bits fits a signed int64). Both curves are defined top-down: the three most significant code bits
name the octant of the whole cube, the next three the octant inside it, and so on. Hence, on both
curves, the code of the ancestor cell `k` levels up (`(x >> k, y >> k, z >> k)` at `bits - k`) is
`code >> 3 * k`: a code prefix is an octree cell.

- Morton (z-order): the bits of x, y and z interleaved, x most significant (magic-number spreading,
  no loops over levels).
- Hilbert: the same octant digits relabelled level by level by a finite-state machine so that
  consecutive codes are face-adjacent cells. The machine starts in the same state for every
  `bits`, which is what makes the prefix property above hold.

The code is array-generic: it uses only `>> << & | ^` and a table lookup, so numpy and torch inputs
(CPU or CUDA) run through the same lines; torch is never imported unless a tensor is passed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_BITS = 21
ORDERS = ('z', 'z-trans', 'hilbert', 'hilbert-trans')

# Masks of the magic-number bit spreading: after step s, each input bit sits 3 apart.
_SPREAD_STEPS = ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                 (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249))
_LOW21 = (1 << MAX_BITS) - 1
_EVERY_THIRD = 0x1249249249249249


# ---------------------------------------------------------------------------------------------
# Backend helpers: the only places that tell numpy from torch.

def _is_torch(a: Any) -> bool:
    return type(a).__module__.split('.', 1)[0] == 'torch'


def _as_int64(a: Any, name: str) -> Any:
    """Return `a` as an int64 array or tensor; raise ValueError for non-integer dtypes."""
    if _is_torch(a):
        if a.dtype.is_floating_point or a.dtype.is_complex or str(a.dtype) == 'torch.bool':
            raise ValueError(f'{name} must be an integer tensor, got {a.dtype}')
        return a.long()
    arr = np.asarray(a)
    if arr.dtype.kind not in 'iu':
        raise ValueError(f'{name} must be an integer array, got dtype {arr.dtype}')
    if arr.dtype.kind == 'u' and arr.size and int(arr.max()) >= 2**63:
        raise ValueError(f'{name} has values >= 2**63 that do not fit int64')
    return arr.astype(np.int64, copy=False)


def _check_range(a: Any, name: str, nbits: int) -> None:
    """Raise ValueError unless every value is in [0, 2**nbits); one reduction, cheap on CUDA."""
    # An arithmetic shift leaves 0 exactly for values in range; negatives become -1.
    if bool(((a >> nbits) != 0).any()):
        raise ValueError(f'{name} must be in [0, 2**{nbits}) = [0, {2**nbits}), got values in '
                         f'[{int(a.min())}, {int(a.max())}]')


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f'bits must be an integer in [1, {MAX_BITS}], got {bits!r}')
    if not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f'bits must be in [1, {MAX_BITS}], got {bits}')
    return int(bits)


def _check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f'order must be one of {ORDERS}, got {order!r}')
    return order


def _table_like(table: np.ndarray, like: Any) -> Any:
    """The lookup table as an array of the same backend and device as `like`."""
    if not _is_torch(like):
        return table
    key = (id(table), str(like.device))
    cached = _TORCH_TABLES.get(key)
    if cached is None:
        import torch  # only reached when a tensor was passed in

        cached = torch.as_tensor(table, dtype=torch.int64, device=like.device)
        _TORCH_TABLES[key] = cached
    return cached


_TORCH_TABLES: dict[tuple[int, str], Any] = {}


def _stack_columns(columns: list[Any]) -> Any:
    if _is_torch(columns[0]):
        import torch

        return torch.stack(columns, dim=-1)
    return np.stack(columns, axis=-1)


def _columns(xyz: Any, name: str) -> tuple[Any, Any, Any]:
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f'{name} must have shape (N, 3), got {tuple(xyz.shape)}')
    return xyz[:, 0], xyz[:, 1], xyz[:, 2]


# ---------------------------------------------------------------------------------------------
# Morton (z-order).

def _spread(v: Any) -> Any:
    """Move bit i of a 21-bit value to bit 3i."""
    v = v & _LOW21
    for shift, mask in _SPREAD_STEPS:
        v = (v | (v << shift)) & mask
    return v


def _compact(v: Any) -> Any:
    """Inverse of `_spread`: gather bits 0, 3, 6, ... into bits 0, 1, 2, ..."""
    v = v & _EVERY_THIRD
    # Undo the spreading steps last to first; each restores the layout before that step.
    layouts = [_LOW21] + [mask for _, mask in _SPREAD_STEPS[:-1]]
    for (shift, _), layout in zip(reversed(_SPREAD_STEPS), reversed(layouts), strict=True):
        v = (v | (v >> shift)) & layout
    return v


def _interleave(x: Any, y: Any, z: Any) -> Any:
    return (_spread(x) << 2) | (_spread(y) << 1) | _spread(z)


def _deinterleave(code: Any) -> tuple[Any, Any, Any]:
    return _compact(code >> 2), _compact(code >> 1), _compact(code)


def _checked_xyz(x: Any, y: Any, z: Any, bits: int) -> tuple[Any, Any, Any, int]:
    bits = _check_bits(bits)
    out = []
    for name, v in (('x', x), ('y', y), ('z', z)):
        v = _as_int64(v, name)
        _check_range(v, name, bits)
        out.append(v)
    if len({_is_torch(v) for v in out}) != 1:
        raise ValueError('x, y and z must all be numpy arrays or all torch tensors')
    return out[0], out[1], out[2], bits


def _checked_code(code: Any, bits: int) -> tuple[Any, int]:
    bits = _check_bits(bits)
    code = _as_int64(code, 'code')
    _check_range(code, 'code', 3 * bits)
    return code, bits


def morton_encode(x: Any, y: Any, z: Any, bits: int) -> Any:
    """
    Z-order codes of cells `(x, y, z)`: int64, same shape and backend as the inputs.

    `x, y, z` are integer arrays or tensors (same shape) with values in [0, 2**bits).
    """
    x, y, z, bits = _checked_xyz(x, y, z, bits)
    return _interleave(x, y, z)


def morton_decode(code: Any, bits: int) -> tuple[Any, Any, Any]:
    """Cells `(x, y, z)` (int64) of z-order codes in [0, 2**(3 * bits))."""
    code, bits = _checked_code(code, bits)
    return _deinterleave(code)


# ---------------------------------------------------------------------------------------------
# Hilbert: a state machine over octant digits, built once at import from the curve's geometry.

def _hilbert_tables() -> tuple[np.ndarray, np.ndarray]:
    """
    Encoding and decoding tables of the 3D Hilbert state machine.

    Encoding: `_HILBERT_ENCODE[8 * state + octant] = (next_state << 3) | digit`; decoding:
    `_HILBERT_DECODE[8 * state + digit] = (next_state << 3) | octant`. State 0 is the canonical
    orientation; `_hilbert_children` derives the canonical curve's sub-curves.
    """
    children = _hilbert_children()
    states = [_IDENTITY]
    index = {_IDENTITY: 0}
    enc: dict[int, int] = {}
    dec: dict[int, int] = {}
    s = 0
    while s < len(states):
        outer = states[s]
        for digit, (octant, inner) in enumerate(children):
            child = _compose(outer, inner)
            if child not in index:
                index[child] = len(states)
                states.append(child)
            actual = _apply(outer, octant)
            enc[8 * s + actual] = (index[child] << 3) | digit
            dec[8 * s + digit] = (index[child] << 3) | actual
        s += 1
    size = 8 * len(states)
    return (np.array([enc[i] for i in range(size)], dtype=np.int64),
            np.array([dec[i] for i in range(size)], dtype=np.int64))


# A cube symmetry acts on 3-bit corner/octant labels (bit 2 = x, bit 1 = y, bit 0 = z) as
# out[axis] = in[perm[axis]] ^ flip[axis]; it maps sub-cubes and their local frames alike.
_Sym = tuple[tuple[int, int, int], tuple[int, int, int]]
_IDENTITY: _Sym = ((0, 1, 2), (0, 0, 0))


def _bit(v: int, axis: int) -> int:
    return (v >> (2 - axis)) & 1


def _apply(sym: _Sym, v: int) -> int:
    perm, flip = sym
    return sum((_bit(v, perm[a]) ^ flip[a]) << (2 - a) for a in range(3))


def _compose(outer: _Sym, inner: _Sym) -> _Sym:
    """The symmetry `outer(inner(v))`."""
    perm = tuple(inner[0][outer[0][a]] for a in range(3))
    flip = tuple(inner[1][outer[0][a]] ^ outer[1][a] for a in range(3))
    return perm, flip  # type: ignore[return-value]


def _hilbert_children() -> list[tuple[int, _Sym]]:
    """
    Octant and orientation of each of the 8 sub-curves of the canonical curve, in order.

    The canonical curve visits the octants in Gray-code order, enters the cube at corner 000 and
    leaves it at corner 100. Sub-curve i enters its octant at local corner `entry[i]` and leaves
    at `exit[i]` (one axis apart); the exit of sub-curve i and the entry of i + 1 must touch
    across their shared face so that consecutive cells stay face-adjacent at every depth. A small
    depth-first search picks such corners; the orientation of each sub-curve is then the
    rotation that maps (000 -> entry, 100 -> exit).
    """
    octants = [i ^ (i >> 1) for i in range(8)]
    corners = _search_corners(octants, 0, [])
    if corners is None:  # pragma: no cover - the search always succeeds for the Gray order
        raise RuntimeError('no Hilbert sub-curve corners found')
    return [(octants[i], _rotation_for(*corners[i])) for i in range(8)]


def _search_corners(octants: list[int], entry: int,
                    done: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    i = len(done)
    for axis in range(3):
        exit_ = entry ^ (1 << (2 - axis))
        if i == 7:
            if exit_ == 0b100:
                return [*done, (entry, exit_)]
            continue
        step = octants[i] ^ octants[i + 1]
        if exit_ & step != octants[i + 1] & step:  # the exit must face the next octant
            continue
        found = _search_corners(octants, exit_ ^ step, [*done, (entry, exit_)])
        if found is not None:
            return found
    return None


def _rotation_for(entry: int, exit_: int) -> _Sym:
    """The proper (det +1) symmetry mapping corner 000 to `entry` and 100 to `exit_`."""
    flip = (_bit(entry, 0), _bit(entry, 1), _bit(entry, 2))
    moved = 3 - (entry ^ exit_).bit_length()  # the axis along which entry and exit differ
    others = [a for a in range(3) if a != moved]
    for pair in (others, others[::-1]):
        perm = [0, 0, 0]
        perm[moved] = 0
        perm[pair[0]], perm[pair[1]] = 1, 2
        inversions = sum(perm[a] > perm[b] for a in range(3) for b in range(a + 1, 3))
        if (inversions + sum(flip)) % 2 == 0:
            return tuple(perm), flip  # type: ignore[return-value]
    raise AssertionError('unreachable: one of two permutations has each parity')


_HILBERT_ENCODE, _HILBERT_DECODE = _hilbert_tables()


def hilbert_from_morton(morton: Any, bits: int, *, validate: bool = True) -> Any:
    """
    Hilbert codes of the cells whose z-order codes are `morton` (int64, [0, 2**(3 * bits))).

    `validate=False` skips the checks, for codes the caller knows are valid int64.
    """
    if validate:
        morton, bits = _checked_code(morton, bits)
    return _hilbert_loop(morton, bits)


def _hilbert_loop(morton: Any, bits: int) -> Any:
    table = _table_like(_HILBERT_ENCODE, morton)
    entry = morton & 0  # state 0, digit 0
    code = morton & 0
    for level in range(bits - 1, -1, -1):
        entry = table[(entry & -8) | ((morton >> (3 * level)) & 7)]
        code = (code << 3) | (entry & 7)
    return code


def morton_from_hilbert(code: Any, bits: int, *, validate: bool = True) -> Any:
    """Z-order codes of the cells whose Hilbert codes are `code`; inverse of the above."""
    if validate:
        code, bits = _checked_code(code, bits)
    return _morton_loop(code, bits)


def _morton_loop(code: Any, bits: int) -> Any:
    table = _table_like(_HILBERT_DECODE, code)
    entry = code & 0
    morton = code & 0
    for level in range(bits - 1, -1, -1):
        entry = table[(entry & -8) | ((code >> (3 * level)) & 7)]
        morton = (morton << 3) | (entry & 7)
    return morton


def hilbert_encode(x: Any, y: Any, z: Any, bits: int) -> Any:
    """
    Hilbert codes of cells `(x, y, z)`: int64, same shape and backend as the inputs.

    `x, y, z` are integer arrays or tensors (same shape) with values in [0, 2**bits).
    Consecutive codes are face-adjacent cells, and `code >> 3 * k` is the parent's code.
    """
    x, y, z, bits = _checked_xyz(x, y, z, bits)
    return _hilbert_loop(_interleave(x, y, z), bits)


def hilbert_decode(code: Any, bits: int) -> tuple[Any, Any, Any]:
    """Cells `(x, y, z)` (int64) of Hilbert codes in [0, 2**(3 * bits))."""
    code, bits = _checked_code(code, bits)
    return _deinterleave(_morton_loop(code, bits))


# ---------------------------------------------------------------------------------------------
# The four serialization orders of NoKSR / PTv3 on (N, 3) cells.

def encode(xyz_int: Any, order: str, bits: int, *, validate: bool = True) -> Any:
    """
    Codes (N,) int64 of cells `xyz_int` (N, 3) integer in one of `ORDERS`.

    The '-trans' orders are the same curve with x and y exchanged. `validate=False` skips the
    dtype and range checks, for int64 cells the caller already knows are in [0, 2**bits).
    """
    _check_order(order)
    x, y, z = _columns(xyz_int if _is_torch(xyz_int) else np.asarray(xyz_int), 'xyz_int')
    if order.endswith('-trans'):
        x, y = y, x
    if validate:
        x, y, z, bits = _checked_xyz(x, y, z, bits)
    morton = _interleave(x, y, z)
    return _hilbert_loop(morton, bits) if order.startswith('hilbert') else morton


def decode(code: Any, order: str, bits: int) -> Any:
    """Cells (..., 3) int64 of codes in one of `ORDERS`; the inverse of `encode`."""
    _check_order(order)
    if order.startswith('hilbert'):
        x, y, z = hilbert_decode(code, bits)
    else:
        x, y, z = morton_decode(code, bits)
    if order.endswith('-trans'):
        x, y = y, x
    return _stack_columns([x, y, z])

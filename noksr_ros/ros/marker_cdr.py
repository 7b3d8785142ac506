"""
Serialize a `visualization_msgs/msg/MarkerArray` of mesh markers straight to CDR bytes.

A TRIANGLE_LIST marker of 200k triangles holds 600k `geometry_msgs/Point` objects; creating and
serializing them costs seconds in rclpy. Here the message is written as the bytes of its wire
format instead, with the point and colour arrays copied in one block each by numpy. rclpy
publishers accept such bytes (`Publisher.publish(raw: bytes)` calls `publish_raw`), and every
subscriber receives an ordinary MarkerArray. No ROS import is needed to build the bytes.

Wire format: ROS 2 XCDR1 little endian (encapsulation header 00 01 00 00). After the header, each
primitive is aligned to its own size (at most 8) relative to the first byte after the header;
strings are a uint32 length that counts a terminating NUL, then the bytes and the NUL; sequences
are a uint32 element count, then the elements. Padding bytes are written as zeros (rmw may leave
them uninitialised; readers ignore them).

The field order follows `visualization_msgs/msg/Marker` of kilted (5.5.x): header, ns, id, type,
action, pose, scale, color, lifetime, frame_locked, points, colors, texture_resource, texture
(sensor_msgs/CompressedImage), uv_coordinates, text, mesh_resource, mesh_file
(visualization_msgs/MeshFile), mesh_use_embedded_materials. The texture and mesh_file fields are
written empty; with `humble=True` they are left out (Humble's Marker ends text, mesh_resource,
mesh_use_embedded_materials), see `HUMBLE_LAYOUT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import struct

import numpy as np

TRIANGLE_LIST = 11
ADD = 0
DELETE = 2
DELETEALL = 3
ACTIONS = (ADD, DELETE, DELETEALL)
CDR_LE_HEADER = b'\x00\x01\x00\x00'
DEFAULT_BUDGET_BYTES = 16 * 1024 * 1024

_NS_PER_S = 1_000_000_000
_INT32 = (-2**31, 2**31 - 1)
# pose (position 0,0,0; orientation x,y,z,w = 0,0,0,1) and scale (1,1,1): ten float64.
_POSE_SCALE = struct.pack('<10d', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)


@dataclass(frozen=True, eq=False)
class MarkerSpec:
    """
    One marker of a MarkerArray: a TRIANGLE_LIST mesh (ADD), a DELETE or a DELETEALL.

    `points` (3F,3) are the triangle corners in metres in `frame_id` (converted to C-contiguous
    float64), `colors` (3F,4) per-corner RGBA in [0, 1] (converted to float32) or None for the
    uniform `color`. `stamp_ns` is the header stamp in nanoseconds. Pose is the identity, scale
    (1,1,1), lifetime 0 (forever), frame_locked false.
    """

    ns: str
    id: int
    action: int = ADD
    frame_id: str = 'map'
    stamp_ns: int = 0
    points: np.ndarray | None = None
    colors: np.ndarray | None = None
    color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)

    def __post_init__(self) -> None:
        """Validate the fields and bring the arrays into wire layout."""
        if self.action not in ACTIONS:
            raise ValueError(f'action must be one of {ACTIONS} (ADD, DELETE, DELETEALL), '
                             f'got {self.action}')
        if not _INT32[0] <= self.id <= _INT32[1]:
            raise ValueError(f'id must fit in int32, got {self.id}')
        if not 0 <= self.stamp_ns < (_INT32[1] + 1) * _NS_PER_S:
            raise ValueError(f'stamp_ns must be in [0, 2**31 s), got {self.stamp_ns}')
        if len(self.color) != 4:
            raise ValueError(f'color must be (r, g, b, a), got {self.color}')
        points, colors = _wire_arrays(self.points, self.colors)
        if self.action != ADD and len(points):
            raise ValueError('DELETE and DELETEALL markers take no points')
        object.__setattr__(self, 'points', points)
        object.__setattr__(self, 'colors', colors)


def triangle_marker(ns: str, marker_id: int, points: np.ndarray, colors: np.ndarray | None = None,
                    *, frame_id: str = 'map', stamp_ns: int = 0,
                    color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
                    ) -> MarkerSpec:
    """
    TRIANGLE_LIST ADD marker of the triangle soup `points` (3F,3), e.g. from `face_soup`.

    `colors` (3F,4) RGBA per corner, or None to draw every triangle in `color`.
    """
    return MarkerSpec(ns=ns, id=marker_id, action=ADD, frame_id=frame_id, stamp_ns=stamp_ns,
                      points=points, colors=colors, color=color)


def delete_marker(ns: str, marker_id: int, frame_id: str = 'map',
                  stamp_ns: int = 0) -> MarkerSpec:
    """DELETE marker: removes marker (`ns`, `marker_id`) from the display."""
    return MarkerSpec(ns=ns, id=marker_id, action=DELETE, frame_id=frame_id, stamp_ns=stamp_ns)


def delete_all_marker(ns: str = '', frame_id: str = 'map', stamp_ns: int = 0) -> MarkerSpec:
    """
    DELETEALL marker: removes the markers shown so far.

    RViz 2 clears every marker of the display that receives it, whatever `ns` says; put it first
    in an array so that the markers after it are kept.
    """
    return MarkerSpec(ns=ns, id=0, action=DELETEALL, frame_id=frame_id, stamp_ns=stamp_ns)


def marker_array_cdr(markers: Sequence[MarkerSpec], humble: bool = False) -> bytes:
    """Serialized `visualization_msgs/msg/MarkerArray` of `markers`, header included."""
    return _write_array(markers, humble).getvalue(prefix=CDR_LE_HEADER)


def installed_layout_is_humble() -> bool:
    """Whether the installed visualization_msgs Marker lacks the texture fields (Humble)."""
    from visualization_msgs.msg import Marker

    return 'texture' not in Marker.get_fields_and_field_types()


def padding_mask(markers: Sequence[MarkerSpec]) -> np.ndarray:
    """
    Which bytes of `marker_array_cdr(markers)` are alignment padding, as a bool array.

    For tests and debugging: rmw serializers may leave padding uninitialised, so two correct
    serializations of one message agree only outside this mask.
    """
    writer = _write_array(markers)
    mask = np.zeros(len(CDR_LE_HEADER) + writer.offset, dtype=bool)
    for start, stop in writer.padding:
        mask[len(CDR_LE_HEADER) + start:len(CDR_LE_HEADER) + stop] = True
    return mask


def marker_array_size(markers: Sequence[MarkerSpec]) -> int:
    """Length in bytes of `marker_array_cdr(markers)`, computed without building it."""
    writer = _CdrWriter(offset=4, keep_data=False)
    for marker in markers:
        _write_marker(writer, marker)
    return len(CDR_LE_HEADER) + writer.offset


def split_for_size(markers: Sequence[MarkerSpec],
                   budget_bytes: int = DEFAULT_BUDGET_BYTES) -> list[bytes]:
    """
    Serialize `markers` as several MarkerArray messages of at most `budget_bytes` each.

    Markers keep their order and are never cut: consecutive markers are grouped while the array
    stays within the budget. A single marker larger than the budget travels alone in an array
    over the budget, so keep markers bounded at the source (the mesh is published one marker per
    map segment, and the segment size bounds the triangles per marker; about 40 bytes go on the
    wire per triangle corner with colours). An empty `markers` gives no message.
    """
    return [marker_array_cdr(group) for group in group_for_size(markers, budget_bytes)]


def group_for_size(markers: Sequence[MarkerSpec], budget_bytes: int = DEFAULT_BUDGET_BYTES,
                   humble: bool = False) -> list[list[MarkerSpec]]:
    """Consecutive groups of `markers` whose arrays fit `budget_bytes`: see split_for_size."""
    if budget_bytes <= 0:
        raise ValueError(f'budget_bytes must be positive, got {budget_bytes}')
    groups: list[list[MarkerSpec]] = []
    group: list[MarkerSpec] = []
    sizer = _CdrWriter(offset=4, keep_data=False)
    for marker in markers:
        _write_marker(sizer, marker, humble)
        if group and len(CDR_LE_HEADER) + sizer.offset > budget_bytes:
            groups.append(group)
            group = []
            # A new array: the marker starts again right after the 4-byte element count.
            sizer = _CdrWriter(offset=4, keep_data=False)
            _write_marker(sizer, marker, humble)
        group.append(marker)
    if group:
        groups.append(group)
    return groups


class _CdrWriter:
    """
    CDR body under construction: a list of byte chunks and the offset after the last one.

    With `keep_data=False` only the offset advances, which sizes a message without copying data.
    """

    def __init__(self, offset: int = 0, keep_data: bool = True) -> None:
        self.offset = offset
        self._keep = keep_data
        self._chunks: list[bytes | np.ndarray] = []
        self.padding: list[tuple[int, int]] = []  # (start, stop) offsets of the padding runs

    def getvalue(self, prefix: bytes = b'') -> bytes:
        # One join: the only copy of the (large) point and colour arrays.
        return b''.join([prefix, *self._chunks])

    def align(self, size: int) -> None:
        pad = -self.offset % size
        if pad:
            if self._keep:
                self.padding.append((self.offset, self.offset + pad))
            self._put(b'\x00' * pad, pad)

    def pack(self, align: int, fmt: str, *values: object) -> None:
        self.align(align)
        if self._keep:
            self._put(struct.pack(fmt, *values), struct.calcsize(fmt))
        else:
            self.offset += struct.calcsize(fmt)

    def raw(self, align: int, data: bytes) -> None:
        self.align(align)
        self._put(data, len(data))

    def string(self, text: str) -> None:
        encoded = text.encode('utf-8')
        if b'\x00' in encoded:
            raise ValueError(f'strings sent over CDR cannot contain NUL: {text!r}')
        self.pack(4, '<I', len(encoded) + 1)
        self._put(encoded + b'\x00', len(encoded) + 1)

    def array_sequence(self, array: np.ndarray, count: int, align: int) -> None:
        """Element count, then (only when non-empty) padding to `align` and the array bytes."""
        self.pack(4, '<I', count)
        if count:
            self.align(align)
            self._put(array, array.nbytes)

    def _put(self, data: bytes | np.ndarray, nbytes: int) -> None:
        if self._keep:
            self._chunks.append(data)
        self.offset += nbytes


def _write_array(markers: Sequence[MarkerSpec], humble: bool = False) -> _CdrWriter:
    """MarkerArray body: element count, then each marker."""
    writer = _CdrWriter()
    writer.pack(4, '<I', len(markers))
    for marker in markers:
        _write_marker(writer, marker, humble)
    return writer


def _write_marker(writer: _CdrWriter, marker: MarkerSpec, humble: bool = False) -> None:
    """Append one `visualization_msgs/msg/Marker` to `writer`, fields in .msg order."""
    sec, nanosec = divmod(marker.stamp_ns, _NS_PER_S)
    _write_header(writer, sec, nanosec, marker.frame_id)
    writer.string(marker.ns)
    writer.pack(4, '<3i', marker.id, TRIANGLE_LIST, marker.action)
    writer.raw(8, _POSE_SCALE)
    writer.pack(4, '<4f', *marker.color)
    writer.pack(4, '<iI?', 0, 0, False)  # lifetime sec, nanosec; frame_locked
    writer.array_sequence(marker.points, len(marker.points), 8)
    colors = marker.colors if marker.colors is not None else np.zeros((0, 4), np.float32)
    writer.array_sequence(colors, len(colors), 4)
    if humble:
        writer.string('')  # text
        writer.string('')  # mesh_resource
        writer.pack(1, '<?', False)  # mesh_use_embedded_materials
        return
    writer.string('')  # texture_resource
    _write_header(writer, 0, 0, '')  # texture: sensor_msgs/CompressedImage
    writer.string('')  # texture.format
    writer.pack(4, '<I', 0)  # texture.data
    writer.pack(4, '<I', 0)  # uv_coordinates
    writer.string('')  # text
    writer.string('')  # mesh_resource
    writer.string('')  # mesh_file.filename
    writer.pack(4, '<I', 0)  # mesh_file.data
    writer.pack(1, '<?', False)  # mesh_use_embedded_materials


def _write_header(writer: _CdrWriter, sec: int, nanosec: int, frame_id: str) -> None:
    writer.pack(4, '<iI', sec, nanosec)
    writer.string(frame_id)


def _wire_arrays(points: np.ndarray | None,
                 colors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Points as (N,3) '<f8' and colours as (N,4) '<f4', C-contiguous; N a multiple of 3."""
    xyz = np.zeros((0, 3)) if points is None else np.asarray(points)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) % 3:
        raise ValueError(f'points must be (3F,3) triangle corners, got shape {xyz.shape}')
    xyz = np.ascontiguousarray(xyz, dtype='<f8')
    if colors is None:
        return xyz, None
    rgba = np.asarray(colors)
    if rgba.shape != (len(xyz), 4):
        raise ValueError(f'colors must be (N,4) RGBA with N = {len(xyz)} points, '
                         f'got shape {rgba.shape}')
    return xyz, np.ascontiguousarray(rgba, dtype='<f4')

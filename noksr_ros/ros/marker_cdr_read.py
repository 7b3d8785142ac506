"""
Read serialized `visualization_msgs/msg/MarkerArray` bytes back into MarkerSpecs with numpy.

The inverse of `marker_cdr` for consumers of `/noksr/mesh` that subscribe with `raw=True` (the
demo recorder, tests, benchmarks): rclpy turns a 200k-triangle marker into 600k Point objects in
seconds, while this views the point and colour blocks in place. Any marker type is parsed; only
the fields a MarkerSpec has are kept (points, colors, color, ns, id, action, frame, stamp).
"""

from __future__ import annotations

import struct

import numpy as np

from noksr_ros.ros.marker_cdr import CDR_LE_HEADER, MarkerSpec


class _CdrReader:
    """Cursor over a CDR body; offsets are relative to the first byte after the header."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != CDR_LE_HEADER:
            raise ValueError('not a little-endian CDR message (encapsulation header '
                             f'{bytes(data[:4]).hex()})')
        self.view = memoryview(data)[4:]
        self.pos = 0

    def unpack(self, align: int, fmt: str) -> tuple:
        self.pos += -self.pos % align
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.view):
            raise ValueError('truncated MarkerArray message')
        values = struct.unpack_from(fmt, self.view, self.pos)
        self.pos += size
        return values

    def string(self) -> str:
        (length,) = self.unpack(4, '<I')
        if self.pos + length > len(self.view):
            raise ValueError('truncated string in MarkerArray message')
        raw = bytes(self.view[self.pos:self.pos + length])
        self.pos += length
        return raw.rstrip(b'\x00').decode('utf-8')

    def array(self, dtype: str, width: int, align: int) -> np.ndarray:
        (count,) = self.unpack(4, '<I')
        if count:
            self.pos += -self.pos % align
        nbytes = count * width * np.dtype(dtype).itemsize
        if self.pos + nbytes > len(self.view):
            raise ValueError('truncated array in MarkerArray message')
        out = np.frombuffer(self.view, dtype, count * width, self.pos).reshape(count, width)
        self.pos += nbytes
        return out

    def skip_header(self) -> tuple[int, str]:
        sec, nanosec = self.unpack(4, '<iI')
        return sec * 1_000_000_000 + nanosec, self.string()


def read_marker_array_cdr(data: bytes, humble: bool = False) -> list[MarkerSpec]:
    """MarkerSpecs of a serialized MarkerArray (kilted layout, or Humble's with `humble`)."""
    reader = _CdrReader(data)
    (count,) = reader.unpack(4, '<I')
    return [_read_marker(reader, humble) for _ in range(count)]


def _read_marker(reader: _CdrReader, humble: bool) -> MarkerSpec:
    stamp_ns, frame_id = reader.skip_header()
    ns = reader.string()
    marker_id, _type, action = reader.unpack(4, '<3i')
    reader.unpack(8, '<10d')  # pose, scale
    color = reader.unpack(4, '<4f')
    reader.unpack(4, '<iI?')  # lifetime, frame_locked
    points = reader.array('<f8', 3, 8)
    colors = reader.array('<f4', 4, 4)
    if not humble:
        reader.string()  # texture_resource
        reader.skip_header()  # texture.header
        reader.string()  # texture.format
        reader.array('u1', 1, 1)  # texture.data
        reader.array('<f4', 2, 4)  # uv_coordinates
    reader.string()  # text
    reader.string()  # mesh_resource
    if not humble:
        reader.string()  # mesh_file.filename
        reader.array('u1', 1, 1)  # mesh_file.data
    reader.unpack(1, '<?')  # mesh_use_embedded_materials
    return MarkerSpec(ns=ns, id=marker_id, action=action, frame_id=frame_id, stamp_ns=stamp_ns,
                      points=points if len(points) else None,
                      colors=colors if len(colors) else None, color=color)

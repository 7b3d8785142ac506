"""
Stream updates <-> the generated noksr_ros/msg messages, with numpy.

Array fields are assigned as `array.array` built from the numpy bytes: the generated setters take
those without a per-element check, and the C converter copies them with one memcpy. Received
arrays are read back with `np.frombuffer` (no copy).
"""

from __future__ import annotations

import array

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
import numpy as np
from std_msgs.msg import Header

from noksr_ros.msg import MeshMapStatus, MeshMapUpdate, SegmentMesh
from noksr_ros.ros.segment_stream import MapUpdate, StreamSegment, StreamStatus


def _array(typecode: str, values: np.ndarray, dtype: str) -> array.array:
    out = array.array(typecode)
    out.frombytes(np.ascontiguousarray(values, dtype).tobytes())
    return out


def header(frame_id: str, stamp_ns: int) -> Header:
    """A std_msgs/Header from a frame and nanoseconds."""
    stamp_ns = max(int(stamp_ns), 0)
    return Header(frame_id=frame_id, stamp=Time(sec=stamp_ns // 10**9,
                                                nanosec=stamp_ns % 10**9))


def segment_message(seg: StreamSegment, head: Header) -> SegmentMesh:
    """One SegmentMesh; normals are sent only when the segment has them."""
    msg = SegmentMesh(header=head, key=seg.key, revision=seg.revision, size_m=seg.size_m,
                      origin=Point(x=float(seg.origin_m[0]), y=float(seg.origin_m[1]),
                                   z=float(seg.origin_m[2])))
    msg.index = np.asarray(seg.index, np.int32)
    msg.vertices = _array('f', seg.vertices, '<f4')
    msg.triangles = _array('I', seg.faces, '<u4')
    msg.vertex_ids = _array('q', seg.vertex_ids, '<i8')
    if seg.normals is not None:
        msg.normals = _array('f', seg.normals, '<f4')
    return msg


def update_message(update: MapUpdate, frame_id: str) -> MeshMapUpdate:
    """The MeshMapUpdate of one stream update."""
    head = header(frame_id, update.stamp_ns)
    msg = MeshMapUpdate(header=head, sequence=update.sequence, full=update.full,
                        parts_left=update.parts_left)
    msg.map_keys = _array('q', np.asarray(update.map_keys, np.int64), '<i8')
    msg.removed_keys = _array('q', np.asarray(update.removed, np.int64), '<i8')
    msg.segments = [segment_message(s, head) for s in update.segments]
    return msg


def status_message(status: StreamStatus, frame_id: str, stamp_ns: int,
                   pipeline_stats: dict) -> MeshMapStatus:
    """The MeshMapStatus of the published map plus the pipeline's progress counters."""
    msg = MeshMapStatus(header=header(frame_id, stamp_ns), sequence=status.sequence,
                        vertices=status.vertices, triangles=status.triangles,
                        scans_integrated=int(pipeline_stats.get('scans_integrated', 0)),
                        segments_dirty=int(pipeline_stats.get('segments_dirty', 0)),
                        queue_length=int(pipeline_stats.get('queue_length', 0)))
    msg.keys = _array('q', np.asarray(status.keys, np.int64), '<i8')
    msg.revisions = _array('Q', np.asarray(status.revisions, np.uint64), '<u8')
    return msg


def segment_from_message(msg: SegmentMesh) -> StreamSegment:
    """A received SegmentMesh as numpy arrays (views of the message's buffers)."""
    vertices = np.frombuffer(msg.vertices, np.float32).reshape(-1, 3)
    normals = np.frombuffer(msg.normals, np.float32).reshape(-1, 3) if len(msg.normals) else None
    return StreamSegment(int(msg.key), int(msg.revision), tuple(int(i) for i in msg.index),
                         float(msg.size_m),
                         np.array([msg.origin.x, msg.origin.y, msg.origin.z], np.float64),
                         vertices, np.frombuffer(msg.triangles, np.uint32).reshape(-1, 3),
                         np.frombuffer(msg.vertex_ids, np.int64), normals)


def update_from_message(msg: MeshMapUpdate) -> MapUpdate:
    """A received MeshMapUpdate as a stream update, for MeshMapCopy.apply."""
    stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
    return MapUpdate(int(msg.sequence), stamp_ns, bool(msg.full), [int(k) for k in msg.map_keys],
                     [segment_from_message(s) for s in msg.segments],
                     [int(k) for k in msg.removed_keys], int(msg.parts_left))


def status_from_message(msg: MeshMapStatus) -> StreamStatus:
    """A received MeshMapStatus as the stream's status, for MeshMapCopy.matches."""
    return StreamStatus(int(msg.sequence), [int(k) for k in msg.keys],
                        [int(r) for r in msg.revisions], int(msg.vertices), int(msg.triangles))

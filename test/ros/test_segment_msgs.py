"""The generated noksr_ros messages: import, numpy round trip through rclpy's serialisation."""

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message

from noksr_ros.msg import MeshMapStatus, MeshMapUpdate, SegmentMesh
from noksr_ros.ros.segment_msgs import (
    status_from_message,
    status_message,
    update_from_message,
    update_message,
)
from noksr_ros.ros.segment_stream import MapUpdate, StreamSegment, StreamStatus


def segment(key, n_vertices=1000, n_faces=1800, normals=True):
    rng = np.random.default_rng(key)
    return StreamSegment(
        key, 40 + key, (3, -1, 2**20), 12.8, np.array([1e5 + 0.125, -3.5, 7.0]),
        rng.normal(size=(n_vertices, 3)).astype(np.float32),
        rng.integers(0, n_vertices, size=(n_faces, 3)).astype(np.int32),
        rng.integers(0, 2**62, size=n_vertices).astype(np.int64),
        rng.normal(size=(n_vertices, 3)).astype(np.float32) if normals else None)


def test_messages_are_generated_with_the_documented_fields():
    fields = SegmentMesh.get_fields_and_field_types()
    assert fields['vertices'] == 'sequence<float>' and fields['triangles'] == 'sequence<uint32>'
    assert fields['normals'] == 'sequence<float>' and fields['vertex_ids'] == 'sequence<int64>'
    assert fields['key'] == 'int64' and fields['revision'] == 'uint64'
    assert fields['origin'] == 'geometry_msgs/Point' and fields['index'] == 'int32[3]'
    update = MeshMapUpdate.get_fields_and_field_types()
    assert update['segments'] == 'sequence<noksr_ros/SegmentMesh>'
    assert update['sequence'] == 'uint64' and update['full'] == 'boolean'
    assert 'revisions' in MeshMapStatus.get_fields_and_field_types()


def test_update_round_trip_is_exact():
    update = MapUpdate(17, 1_700_000_000_123_456_789, True, [1, 5, 9],
                       [segment(1), segment(5, normals=False),
                        segment(9, 0, 0, normals=False)], [], 2)
    data = serialize_message(update_message(update, 'map'))
    # Arrays dominate: 12 B per vertex and triangle, 8 per id, 12 per normal.
    assert len(data) < 2 * (1000 * 32 + 1800 * 12) + 1000 * 12 + 2000
    back = update_from_message(deserialize_message(data, MeshMapUpdate))
    assert (back.sequence, back.stamp_ns, back.full, back.map_keys, back.parts_left) == (
        17, update.stamp_ns, True, [1, 5, 9], 2)
    for ours, theirs in zip(update.segments, back.segments, strict=True):
        assert (theirs.key, theirs.revision, theirs.index, theirs.size_m) == (
            ours.key, ours.revision, ours.index, ours.size_m)
        assert np.array_equal(theirs.origin_m, ours.origin_m)
        assert np.array_equal(theirs.vertices, ours.vertices)
        assert np.array_equal(theirs.faces, ours.faces)
        assert np.array_equal(theirs.vertex_ids, ours.vertex_ids)
        if ours.normals is None:
            assert theirs.normals is None
        else:
            assert np.array_equal(theirs.normals, ours.normals)


def test_removed_keys_and_status_round_trip():
    update = MapUpdate(3, 5, removed=[2**62, 7])
    back = update_from_message(deserialize_message(serialize_message(
        update_message(update, 'map')), MeshMapUpdate))
    assert back.removed == [2**62, 7] and not back.full and back.segments == []
    status = StreamStatus(9, [1, 2**62], [4, 2**63 + 1], 120, 200)
    msg = deserialize_message(serialize_message(status_message(
        status, 'map', 10**9, {'scans_integrated': 12, 'segments_dirty': 1})), MeshMapStatus)
    assert status_from_message(msg) == status
    assert (msg.scans_integrated, msg.segments_dirty, msg.queue_length) == (12, 1, 0)
    assert msg.header.frame_id == 'map' and msg.header.stamp.sec == 1

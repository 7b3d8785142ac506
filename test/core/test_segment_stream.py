"""The indexed mesh stream without ROS: revisions, sequences, full resends, splitting, the copy."""

import numpy as np
import pytest
from test_live import live_scans, make_pipeline
from test_reconstructor import drive  # noqa: F401 - the shared short drive

from noksr_ros.io.ply import read_ply
from noksr_ros.live.pipeline import MeshChanges
from noksr_ros.ros.segment_stream import MeshMapCopy, SegmentStream, weld_segments
from noksr_ros.segment_mesher import SegmentMesh, SegmentMesher

ORIGIN = np.array([1000.25, -2000.5, 3.125])


def random_mesh(rng, key, shared_ids=200):
    """A small mesh whose vertex ids overlap other segments' (like seam vertices)."""
    n_v = int(rng.integers(3, 40))
    vertices = rng.normal(size=(n_v, 3)).astype(np.float32) + key
    faces = rng.integers(0, n_v, size=(int(rng.integers(0, 30)), 3)).astype(np.int32)
    ids = rng.choice(shared_ids, size=n_v, replace=False).astype(np.int64)
    return SegmentMesh(key, vertices, faces, ids, 0)


class Source:
    """The pipeline's cache semantics: what changed, what was removed, whether it was cleared."""

    def __init__(self):
        self.meshes, self.changed, self.removed, self.cleared = {}, set(), set(), False

    def put(self, mesh):
        self.meshes[mesh.key] = mesh
        self.changed.add(mesh.key)
        self.removed.discard(mesh.key)

    def remove(self, key):
        self.meshes.pop(key, None)
        self.changed.discard(key)
        self.removed.add(key)

    def clear(self):
        self.meshes, self.changed, self.removed, self.cleared = {}, set(), set(), True

    def take(self, snapshot=False):
        out = MeshChanges({k: self.meshes[k] for k in self.changed}, set(self.removed),
                          self.cleared, ORIGIN, 5, dict(self.meshes) if snapshot else None)
        self.changed, self.removed, self.cleared = set(), set(), False
        return out


def held(copy):
    return {k: (s.vertices, s.faces, s.vertex_ids) for k, s in copy.segments.items()}


def assert_copy_equals(copy, source):
    assert copy.consistent
    assert sorted(copy.segments) == sorted(source.meshes)
    for key, seg in copy.segments.items():
        mesh = source.meshes[key]
        assert seg.vertices is mesh.vertices and seg.faces is mesh.faces
        assert np.array_equal(seg.origin_m, ORIGIN)


def test_copy_follows_random_changes_removals_resends_and_clears():
    rng = np.random.default_rng(7)
    source, stream = Source(), SegmentStream(3.2, 'z', max_message_bytes=4000, normals=False)
    copy, late = MeshMapCopy(), MeshMapCopy()  # late joins at step 150, with a full resend
    for step in range(300):
        action = rng.random()
        if action < 0.6:
            source.put(random_mesh(rng, int(rng.integers(0, 40))))
        elif action < 0.8 and source.meshes:
            source.remove(int(rng.choice(list(source.meshes))))
        elif action < 0.82:
            source.clear()
        full = step % 37 == 0 or step == 150
        if step % 3 == 0 or full:
            updates = stream.updates(source.take(snapshot=full), full=full)
            for update in updates:
                copy.apply(update)
                if step >= 150:
                    late.apply(update)
            assert all(u.parts_left == len(updates) - 1 - i for i, u in enumerate(updates))
            assert_copy_equals(copy, source)
            assert copy.matches(stream.status())
            if step >= 150:
                assert_copy_equals(late, source)
    assert copy.gaps == 0 and copy.sequence == stream.sequence > 100
    assert late.fulls >= 1 and late.consistent


def test_revisions_change_only_with_the_mesh_and_are_never_reused():
    rng = np.random.default_rng(1)
    source, stream = Source(), SegmentStream(3.2, 'z', max_message_bytes=10**6, normals=False)
    source.put(random_mesh(rng, 1))
    source.put(random_mesh(rng, 2))
    first = {s.key: s.revision for s in stream.updates(source.take())[0].segments}
    resend = stream.updates(source.take(snapshot=True), full=True)[0]
    assert {s.key: s.revision for s in resend.segments} == first  # unchanged: same revision
    source.put(random_mesh(rng, 2))
    changed = stream.updates(source.take())[0]
    assert [s.key for s in changed.segments] == [2] and changed.segments[0].revision > max(
        first.values())
    source.clear()
    source.put(random_mesh(rng, 1))
    after_clear = stream.updates(source.take())[0]
    assert after_clear.full and after_clear.map_keys == [1]
    assert after_clear.segments[0].revision not in set(first.values())
    assert stream.updates(source.take()) == []  # nothing changed: nothing published


def test_full_resend_needs_a_snapshot():
    stream = SegmentStream(3.2, 'z', max_message_bytes=10**6)
    with pytest.raises(ValueError, match='snapshot'):
        stream.updates(Source().take(), full=True)
    empty = stream.updates(Source().take(snapshot=True), full=True)
    assert len(empty) == 1 and empty[0].full and empty[0].map_keys == []


def test_split_updates_stay_under_the_budget_and_a_lost_part_is_detected():
    rng = np.random.default_rng(3)
    source, stream = Source(), SegmentStream(3.2, 'z', max_message_bytes=3000, normals=True)
    for key in range(30):
        source.put(random_mesh(rng, key))
    updates = stream.updates(source.take(snapshot=True), full=True)
    assert len(updates) > 3 and updates[0].full and not any(u.full for u in updates[1:])
    assert updates[0].map_keys == list(range(30))
    for update in updates:
        assert sum(s.nbytes() for s in update.segments) <= 3000 or len(update.segments) == 1
        assert all(s.normals.shape == s.vertices.shape for s in update.segments)
    copy = MeshMapCopy()
    for update in updates[:2]:
        copy.apply(update)
    assert not copy.consistent  # parts still to come
    for update in updates[3:]:  # one part lost
        copy.apply(update)
    assert not copy.consistent and copy.gaps == 1
    source.put(random_mesh(rng, 3))
    for update in stream.updates(source.take(snapshot=True), full=True):  # ~/publish_map
        copy.apply(update)
    assert_copy_equals(copy, source)


def test_numpy_weld_equals_the_node_weld():
    rng = np.random.default_rng(5)
    meshes = [random_mesh(rng, key, shared_ids=60) for key in range(12)]
    stream, source = SegmentStream(3.2, 'z', max_message_bytes=10**6, normals=False), Source()
    for mesh in meshes:
        source.put(mesh)
    copy = MeshMapCopy()
    for update in stream.updates(source.take()):
        copy.apply(update)
    ours_v, ours_f = weld_segments([copy.segments[k] for k in sorted(copy.segments)])
    ref_v, ref_f = SegmentMesher.welded(meshes)
    assert np.array_equal(ours_v, ref_v) and np.array_equal(ours_f, ref_f)


def test_copy_of_a_live_pipeline_equals_its_saved_mesh(drive, tmp_path):  # noqa: F811
    """Real meshes, published update by update: the consumer's welded map is the saved PLY."""
    scans = drive[1][:1]  # one scan: enough segments and seams, a fraction of the drive's cost
    pipe, poses, clock = make_pipeline(scans, **{'reconstruct.max_segments_per_update': 3})
    stream = SegmentStream(3.2, 'z', max_message_bytes=200_000)
    copy = MeshMapCopy()
    for (_, _, pose), item in zip(scans, live_scans(scans), strict=True):
        poses.add(item.stamp_ns, pose)
        pipe.submit(item)
    poses.add(int((scans[-1][0] + 0.1) * 1e9), scans[-1][2])
    pipe.step()
    clock.now += 2.0  # idle: every dirty segment is forced, a few per step
    steps = 0
    while pipe.rec.pending(force=True):
        clock.now += 0.2
        pipe.step()
        steps += 1
        resend = steps == 3  # a full resend in the middle, as for a new subscriber
        for update in stream.updates(pipe.take_changes(snapshot=resend), full=resend):
            copy.apply(update)
    assert steps > 3 and copy.fulls == 1 and copy.sequence > steps
    assert copy.consistent and copy.matches(stream.status()) and len(copy.segments) > 5
    path, _, n_faces = pipe.save_mesh(tmp_path)
    saved_v, saved_f = read_ply(path)
    vertices, faces = copy.mesh()
    assert len(faces) == n_faces > 1000
    assert np.array_equal(vertices, saved_v) and np.array_equal(faces, saved_f)
    normals = np.concatenate([s.normals for s in copy.segments.values() if len(s.faces)])
    assert np.allclose(np.linalg.norm(normals, axis=1)[np.any(normals != 0, axis=1)], 1, 1e-5)

"""The ROS-free live pipeline: pose buffer, counted drops, queue, worker steps, mesh cache."""

import numpy as np
import pytest
from test_reconstructor import config, drive, model  # noqa: F401 - the shared short drive

from noksr_ros.io.ply import read_ply
from noksr_ros.live.drops import DropCounter
from noksr_ros.live.pipeline import LivePipeline, LiveScan
from noksr_ros.live.pose_buffer import JUMP, OK, UNKNOWN, WAIT, PoseBuffer
from noksr_ros.ros.marker_cdr import ADD, DELETE, DELETEALL
from noksr_ros.ros.mesh_markers import MarkerIds, change_markers


def pose_x(x, yaw=0.0):
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[0, 3] = x
    return out


def test_pose_buffer_interpolates_waits_and_refuses():
    buf = PoseBuffer(max_gap_s=0.5)
    assert buf.lookup(10).status == WAIT  # nothing yet: a pose may still come
    buf.add(2_000_000_000, pose_x(2.0, 0.2))
    buf.add(1_000_000_000, pose_x(1.0))  # out-of-order arrival is fine
    mid = buf.lookup(1_500_000_000)
    assert mid.status == OK
    assert mid.pose[0, 3] == pytest.approx(1.5)
    assert np.arctan2(mid.pose[1, 0], mid.pose[0, 0]) == pytest.approx(0.1)
    assert buf.lookup(2_000_000_001).status == WAIT  # newer than every sample
    assert buf.lookup(999_999_999).status == UNKNOWN  # before the history
    buf.add(5_000_000_000, pose_x(5.0))
    assert buf.lookup(3_500_000_000).status == UNKNOWN  # inside a 3 s gap: never extrapolated
    buf.add(2_000_000_000, pose_x(7.0))  # same stamp replaces
    assert buf.lookup(2_000_000_000).pose[0, 3] == 7.0
    with pytest.raises(ValueError, match='rigid'):
        buf.add(3, np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError):
        buf.add(3, np.full((4, 4), np.nan))


def test_pose_buffer_is_bounded():
    buf = PoseBuffer(max_gap_s=1.0, max_samples=3)
    for i in range(10):
        buf.add(i * 100, pose_x(i))
    assert len(buf) == 3
    assert buf.lookup(650).status == UNKNOWN and buf.lookup(850).status == OK


def test_drop_counter_counts_every_drop_and_logs_once_per_period():
    lines = []
    drops = DropCounter(log=lines.append, log_period_s=3600)
    for _ in range(50):
        drops.drop('queue_full', 'busy')
    drops.drop('no_pose')
    assert drops.counts() == {'queue_full': 50, 'no_pose': 1} and drops.total() == 51
    assert lines == ['dropped (queue_full, 1 so far): busy', 'dropped (no_pose, 1 so far)']


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_pipeline(scans, **over):
    """Pipeline on the shared drive with a manual clock; poses are T_map_sensor directly."""
    poses = PoseBuffer(max_gap_s=1.0, max_speed_mps=70.0, max_turn_dps=360.0)
    clock = Clock()
    values = {'ros.queue_size': 8, 'ros.pose_wait_s': 0.5, 'ros.update_rate_hz': 10.0,
              'ros.idle_flush_s': 1.0}
    values.update(over)
    pipe = LivePipeline(config(**values), model(), __import__('torch').device('cpu'),
                        lambda stamp, frame: poses.lookup(stamp), clock=clock)
    return pipe, poses, clock


def live_scans(scans):
    return [LiveScan(int(stamp * 1e9), pts, 'lidar') for stamp, pts, _ in scans]


def test_scans_wait_for_their_pose_then_integrate_in_stamp_order(drive):  # noqa: F811
    _, scans = drive
    pipe, poses, clock = make_pipeline(scans)
    items = live_scans(scans)
    for item in reversed(items):  # arrive newest first
        assert pipe.submit(item)
    pipe.step()
    assert pipe.scans_integrated == 0 and pipe.queue_length() == 4  # no pose yet: waiting
    for stamp, _, pose in scans:
        poses.add(int(stamp * 1e9), pose)
    poses.add(int((scans[-1][0] + 0.1) * 1e9), scans[-1][2])
    pipe.step()
    assert pipe.scans_integrated == 4 and pipe.queue_length() == 0
    assert pipe.last_stamp_ns == items[-1].stamp_ns
    assert pipe.drops.total() == 0


def test_hopeless_scans_are_dropped_and_counted(drive):  # noqa: F811
    _, scans = drive
    pipe, poses, clock = make_pipeline(scans, **{'ros.queue_size': 3})
    items = live_scans(scans)
    for stamp, _, pose in scans[:2]:
        poses.add(int(stamp * 1e9), pose)
    assert pipe.submit(items[1]) and pipe.submit(items[3]) and pipe.submit(items[2])
    assert not pipe.submit(items[0])  # queue of 3 is full
    pipe.step()  # items[1] integrates; 2 and 3 wait for a pose
    assert pipe.scans_integrated == 1
    clock.now += 0.6  # longer than pose_wait_s
    pipe.step()
    assert pipe.submit(items[0])  # older than the integrated scan
    pipe.step()
    assert pipe.drops.counts() == {'queue_full': 1, 'no_pose': 2, 'out_of_order': 1}
    assert pipe.queue_length() == 0 and pipe.scans_integrated == 1


def test_pose_buffer_reports_jumps():
    buf = PoseBuffer(max_gap_s=1.0, max_speed_mps=70.0, max_turn_dps=360.0)
    buf.add(0, pose_x(0.0))
    buf.add(100_000_000, pose_x(1.0))  # 10 m/s
    buf.add(200_000_000, pose_x(30.0))  # 290 m/s: a teleport
    buf.add(300_000_000, pose_x(31.0, yaw=1.0))  # 573 deg/s: a reset of the heading
    assert buf.lookup(50_000_000).status == OK
    assert buf.lookup(150_000_000).status == JUMP
    assert buf.lookup(200_000_000).status == OK  # the sample itself is a true pose
    assert buf.lookup(250_000_000).status == JUMP


def test_a_scan_inside_a_pose_jump_is_dropped_not_smeared(drive):  # noqa: F811
    _, scans = drive
    pipe, poses, _ = make_pipeline(scans)
    (stamp0, _, pose0), (stamp1, _, pose1) = scans[0], scans[1]
    teleported = pose0.copy()
    teleported[:3, 3] += (100.0, 0.0, 0.0)
    poses.add(int((stamp0 - 0.05) * 1e9), pose0)
    poses.add(int((stamp0 + 0.05) * 1e9), teleported)  # 100 m in 0.1 s
    poses.add(int(stamp1 * 1e9), pose1)  # an exact sample: a true pose
    poses.add(int((stamp1 + 0.05) * 1e9), pose1)
    items = live_scans(scans)
    pipe.submit(items[0])
    pipe.step()
    assert pipe.drops.counts() == {'pose_jump': 1} and pipe.scans_integrated == 0
    assert pipe.rec.map is None  # nothing of it reached the map
    pipe.submit(items[1])  # a scan at a pose sample is integrated
    pipe.step()
    assert pipe.scans_integrated == 1 and pipe.drops.total() == 1


def test_a_failing_pose_source_drops_the_scan(drive):  # noqa: F811
    _, scans = drive

    def broken(stamp, frame):
        raise RuntimeError('tf exploded')

    pipe, _, _ = make_pipeline(scans)
    pipe.resolve_pose = broken
    pipe.submit(live_scans(scans)[0])
    pipe.step()
    assert pipe.drops.counts() == {'no_pose': 1} and pipe.queue_length() == 0


def test_updates_fill_the_cache_which_saves_and_clears(drive, tmp_path):  # noqa: F811
    _, scans = drive
    pipe, poses, clock = make_pipeline(scans)
    for (_, _, pose), item in zip(scans, live_scans(scans), strict=True):
        poses.add(item.stamp_ns, pose)
        pipe.submit(item)
    poses.add(int((scans[-1][0] + 0.1) * 1e9), scans[-1][2])
    pipe.step()
    clock.now += 2.0  # idle: every dirty segment is forced
    while pipe.rec.pending(force=True):
        clock.now += 0.2
        pipe.step()
    assert pipe.stats()['mesh_changes_pending'] == len(pipe.rec.map.keys())
    changes = pipe.take_changes()
    assert len(changes.meshes) == len(pipe.rec.map.keys()) > 10
    assert pipe.stats()['mesh_changes_pending'] == 0
    assert not changes.cleared and changes.stamp_ns == pipe.last_stamp_ns
    assert not pipe.take_changes().meshes  # taken
    assert pipe.stats()['segments_dirty'] == 0
    assert pipe.stats()['segments_meshed'] == len(changes.meshes)

    path, n_vertices, n_faces = pipe.save_mesh(tmp_path / 'out')
    vertices, faces = read_ply(path)
    ref_v, ref_f = pipe.rec.full_mesh()
    assert len(faces) == n_faces == len(ref_f) > 1000
    assert np.allclose(np.sort(vertices, axis=0), np.sort(ref_v, axis=0), atol=1e-4)

    pipe.request_clear()
    pipe.step()
    cleared = pipe.take_changes()
    assert cleared.cleared and not cleared.meshes
    assert not pipe.mesh_snapshot().meshes and pipe.stats()['segments_total'] == 0


def test_worker_thread_integrates_and_stops(drive):  # noqa: F811
    import time

    _, scans = drive
    pipe, poses, _ = make_pipeline(scans)
    pipe._clock = time.monotonic
    for (_, _, pose), item in zip(scans, live_scans(scans), strict=True):
        poses.add(item.stamp_ns, pose)
    poses.add(int((scans[-1][0] + 0.1) * 1e9), scans[-1][2])
    pipe.start()
    try:
        for item in live_scans(scans):
            pipe.submit(item)
        deadline = time.monotonic() + 60
        while pipe.scans_integrated < len(scans) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipe.stop()
    assert pipe.scans_integrated == len(scans)
    assert pipe._thread is None


def test_markers_of_changes(drive):  # noqa: F811
    _, scans = drive
    pipe, poses, clock = make_pipeline(scans)
    for (_, _, pose), item in zip(scans[:2], live_scans(scans[:2]), strict=True):
        poses.add(item.stamp_ns, pose)
        pipe.submit(item)
    poses.add(int((scans[1][0] + 0.1) * 1e9), scans[1][2])
    pipe.step()
    pipe.rec.finish()
    changes = pipe.take_changes()
    changes.meshes = {k: pipe.rec.mesher.mesh(k) for k in pipe.rec.map.keys()}
    changes.origin_m = pipe.rec.origin_m
    ids = MarkerIds()
    cfg = pipe.config.ros
    markers = change_markers(changes, ids, cfg)
    keys = sorted(k for k, m in changes.meshes.items() if len(m.faces))
    assert 0 < len(keys) < len(changes.meshes)  # empty meshes of never-shown segments: no marker
    assert [m.id for m in markers] == [ids(k) for k in keys] == list(range(len(keys)))
    for marker, key in zip(markers, keys, strict=True):
        mesh = changes.meshes[key]
        assert marker.frame_id == 'map' and marker.ns == cfg.marker_ns
        assert marker.action == ADD and len(marker.points) == 3 * len(mesh.faces)
        assert (marker.colors >= 0).all() and (marker.colors <= 1).all()
        assert np.allclose(marker.points[:3], mesh.vertices[mesh.faces[0]] + changes.origin_m,
                           atol=1e-5)
    # A shown segment whose mesh became empty is deleted.
    emptied = dict(changes.meshes)
    emptied[keys[0]] = type(emptied[keys[0]])(keys[0], np.zeros((0, 3), np.float32),
                                              np.zeros((0, 3), np.int32),
                                              np.zeros(0, np.int64), 9)
    changes.meshes = emptied
    assert [m.action for m in change_markers(changes, ids, cfg)].count(DELETE) == 1
    changes.cleared, changes.removed = True, {keys[0], 12345}
    again = change_markers(changes, ids, cfg)
    assert again[0].action == DELETEALL
    # After DELETEALL the ids restart and nothing unknown is deleted.
    assert DELETE not in [m.action for m in again[1:]]
    assert sorted(m.id for m in again[1:]) == list(range(len(keys) - 1))


def test_max_wait_refreshes_segments_that_keep_changing(drive):  # noqa: F811
    """With a long debounce nothing is ready while points keep coming, unless max_wait is set."""
    from noksr_ros.reconstructor import Reconstructor

    _, scans = drive
    ready = {}
    for max_wait in (0.0, 0.5):
        rec = Reconstructor(config(**{'reconstruct.debounce_s': 100.0,
                                      'reconstruct.max_wait_s': max_wait}), model())
        for stamp, points, pose in scans[:2]:  # 0.3 s apart
            rec.integrate(stamp, points, pose)
        before = len(rec.pending())
        for stamp, points, pose in scans[2:]:  # now 0.9 s since the first scan
            rec.integrate(stamp, points, pose)
        ready[max_wait] = (before, rec.pending())
    assert ready[0.0] == (0, [])
    before, after = ready[0.5]
    assert before == 0 and len(after) > 5
    # With a radius only the segments near the vehicle are early; the rest wait for debounce.
    rec.config = rec.config.with_overrides({'reconstruct.max_wait_radius_m': 3.0})
    size = rec.config.mapping.segment_size_m
    near = [k for k in after
            if np.linalg.norm((rec.map.get(k).ijk + 0.5) * size - rec.vehicle_m) <= 3.0]
    assert 0 < len(near) < len(after) and rec.pending() == near
    rec.config = rec.config.with_overrides({'reconstruct.max_wait_radius_m': 0.0})
    rec.update(max_segments=len(after))
    assert not set(after) & set(rec.pending())


def test_max_wait_rebuilds_a_built_segment_only_once_it_has_grown(drive):  # noqa: F811
    """A segment already built waits for debounce unless it grew by max_wait_growth."""
    from noksr_ros.reconstructor import Reconstructor

    _, scans = drive
    rec = Reconstructor(config(**{'reconstruct.debounce_s': 100.0,
                                  'reconstruct.max_wait_s': 0.25}), model())
    for stamp, points, pose in scans[:2]:
        rec.integrate(stamp, points, pose)
    built = set(rec.update(max_segments=1000).reconstructed)
    assert built and not rec.pending()
    sizes = {k: len(rec.map.get(k).points) for k in built}
    for stamp, points, pose in scans[2:]:  # dirty again, for 0.3 s by the last scan (> 0.25)
        rec.integrate(stamp, points, pose)
    ready = {}
    for growth in (0.0, 0.5, 1e6):
        rec.config = rec.config.with_overrides({'reconstruct.max_wait_growth': growth})
        ready[growth] = set(rec.pending())
    had_points = {k for k in built if sizes[k] > 0}
    rebuilt_anyway = ready[0.0] & had_points
    assert rebuilt_anyway, 'the drive should add points to some built segments'
    # Only segments never built, or built before they had points of their own, are early.
    assert ready[1e6] == ready[0.0] - had_points
    grown = {k for k in rebuilt_anyway if len(rec.map.get(k).points) >= 1.5 * sizes[k]}
    assert ready[0.5] & had_points == grown
    assert 0 < len(grown) < len(rebuilt_anyway)  # the threshold separates the two kinds
    assert ready[0.5] <= ready[0.0]


def test_update_stops_between_segments_when_asked(drive):  # noqa: F811
    from noksr_ros.reconstructor import Reconstructor

    _, scans = drive
    rec = Reconstructor(config(), model())
    for stamp, points, pose in scans:
        rec.integrate(stamp, points, pose)
    pending = rec.pending(force=True)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    result = rec.update(max_segments=10, force=True, stop=stop)
    assert result.reconstructed == pending[:2]
    assert len(rec.pending(force=True)) == len(pending) - 2

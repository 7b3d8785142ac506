"""MarkerArray CDR bytes built with numpy, checked against real rclpy (de)serialization and DDS."""

import os
import random
import time

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Vector3
import numpy as np
import pytest

# rclpy comes with scripts/setup.sh (kilted wheels) or a sourced distro; without it these
# tests fail at import, as they should: the ROS layer is part of what CI checks.
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from noksr_ros.ros.marker_cdr import (
    DELETE,
    DELETEALL,
    MarkerSpec,
    delete_all_marker,
    delete_marker,
    group_for_size,
    marker_array_cdr,
    marker_array_size,
    padding_mask,
    split_for_size,
    triangle_marker,
)

pytestmark = pytest.mark.ros

# The kilted field order marker_cdr writes; a different installed Marker must fail loudly.
MARKER_FIELDS = ['header', 'ns', 'id', 'type', 'action', 'pose', 'scale', 'color', 'lifetime',
                 'frame_locked', 'points', 'colors', 'texture_resource', 'texture',
                 'uv_coordinates', 'text', 'mesh_resource', 'mesh_file',
                 'mesh_use_embedded_materials']


def soup(n_triangles, seed=0, with_colors=True):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(3 * n_triangles, 3)) * 50
    colors = rng.random((3 * n_triangles, 4)).astype(np.float32) if with_colors else None
    return points, colors


def slow_marker(spec):
    """The Marker of `spec` built field by field from message objects, the usual rclpy way."""
    sec, nanosec = divmod(spec.stamp_ns, 10**9)
    points = [] if spec.points is None else spec.points
    colors = [] if spec.colors is None else spec.colors
    return Marker(
        header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=spec.frame_id),
        ns=spec.ns, id=spec.id, type=Marker.TRIANGLE_LIST, action=spec.action,
        pose=Pose(), scale=Vector3(x=1.0, y=1.0, z=1.0),
        color=ColorRGBA(**dict(zip('rgba', map(_f32, spec.color)))),
        points=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points],
        colors=[ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))
                for r, g, b, a in colors])


def _f32(value):
    return float(np.float32(value))


def mixed_markers():
    """Markers covering every path: colours, uniform colour, empty, deletes, odd strings."""
    pts, cols = soup(7, seed=1)
    pts_plain, _ = soup(2, seed=2, with_colors=False)
    return [
        delete_all_marker(stamp_ns=5),
        triangle_marker('noksr', 3, pts, cols, frame_id='map', stamp_ns=1_700_000_000_123_456_789),
        triangle_marker('m', -7, pts_plain, frame_id='ab', color=(0.1, 0.2, 0.3, 0.4)),
        triangle_marker('abc', 2**31 - 1, np.zeros((0, 3)), frame_id='odom_é'),
        delete_marker('abcde', 12, frame_id='x', stamp_ns=10**9),
        triangle_marker('', 0, pts[:3], cols[:3], frame_id='abcdefg'),
    ]


def test_installed_marker_has_the_fields_marker_cdr_writes():
    assert list(Marker.get_fields_and_field_types()) == MARKER_FIELDS
    assert Marker.TRIANGLE_LIST == 11 and Marker.DELETE == DELETE == 2
    assert Marker.DELETEALL == DELETEALL == 3


def test_bytes_deserialize_to_the_expected_message():
    markers = mixed_markers()
    raw = marker_array_cdr(markers)
    assert raw[:4] == b'\x00\x01\x00\x00'
    back = deserialize_message(raw, MarkerArray)
    assert len(back.markers) == len(markers)
    for got, spec in zip(back.markers, markers):
        assert got == slow_marker(spec)
    assert back == MarkerArray(markers=[slow_marker(m) for m in markers])


def test_points_and_colors_round_trip_numerically():
    points, colors = soup(1500, seed=3)
    back = deserialize_message(marker_array_cdr([triangle_marker('n', 1, points, colors)]),
                               MarkerArray)
    marker = back.markers[0]
    np.testing.assert_array_equal(np.array([[p.x, p.y, p.z] for p in marker.points]), points)
    np.testing.assert_array_equal(
        np.array([[c.r, c.g, c.b, c.a] for c in marker.colors], dtype=np.float32), colors)


@pytest.mark.parametrize('case', ['mixed', 'empty', 'one_deleteall', 'float32_points'])
def test_bytes_equal_rclpy_serialization_outside_padding(case):
    points, colors = soup(5, seed=4)
    markers = {'mixed': mixed_markers(), 'empty': [], 'one_deleteall': [delete_all_marker()],
               'float32_points': [triangle_marker('f', 1, points.astype(np.float32), colors)]
               }[case]
    ours = np.frombuffer(marker_array_cdr(markers), np.uint8)
    theirs = np.frombuffer(
        serialize_message(MarkerArray(markers=[slow_marker(m) for m in markers])), np.uint8)
    mask = padding_mask(markers)
    assert len(ours) == len(theirs) == len(mask) == marker_array_size(markers)
    assert not ours[mask].any()  # our padding is zeros; rmw may leave garbage there
    np.testing.assert_array_equal(ours[~mask], theirs[~mask])


def test_split_for_size_keeps_order_and_budget():
    markers = [triangle_marker('s', i, *soup(40 * (i % 4 + 1), seed=i)) for i in range(12)]
    sizes = [marker_array_size([m]) for m in markers]
    budget = 3 * max(sizes)
    messages = split_for_size(markers, budget)
    assert 1 < len(messages) < len(markers)
    assert all(len(msg) <= budget for msg in messages)
    ids = [m.id for msg in messages for m in deserialize_message(msg, MarkerArray).markers]
    assert ids == list(range(12))
    groups = group_for_size(markers, budget)
    assert [marker_array_cdr(g) for g in groups] == messages
    assert marker_array_size(markers) == len(marker_array_cdr(markers))


def test_split_for_size_puts_an_oversized_marker_alone():
    big = triangle_marker('s', 1, *soup(100))
    small = [delete_marker('s', 2), delete_marker('s', 3)]
    budget = marker_array_size(small) + 8
    messages = split_for_size([small[0], big, small[1]], budget)
    assert [[m.id for m in deserialize_message(msg, MarkerArray).markers]
            for msg in messages] == [[2], [1], [3]]
    assert len(messages[1]) > budget
    assert split_for_size([], budget) == []
    assert len(split_for_size(small, budget)) == 1
    with pytest.raises(ValueError, match='budget_bytes'):
        split_for_size(small, 0)


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'action': 1}, 'action'),
    ({'id': 2**31}, 'id'),
    ({'stamp_ns': -1}, 'stamp_ns'),
    ({'points': np.zeros((4, 3))}, 'points'),
    ({'points': np.zeros((3, 2))}, 'points'),
    ({'points': np.zeros((3, 3)), 'colors': np.zeros((3, 3))}, 'colors'),
    ({'action': DELETE, 'points': np.zeros((3, 3))}, 'no points'),
    ({'color': (1.0, 0.0, 0.0)}, 'color'),
])
def test_marker_spec_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarkerSpec(**{'ns': 'n', 'id': 0, **kwargs})


def test_nul_in_strings_is_rejected():
    with pytest.raises(ValueError, match='NUL'):
        marker_array_cdr([delete_marker('a\x00b', 1)])


@pytest.fixture
def context():
    """An rclpy context on its own domain (unless ROS_DOMAIN_ID pins one), shut down after."""
    ctx = rclpy.context.Context()
    domain = None if 'ROS_DOMAIN_ID' in os.environ else random.randint(150, 230)
    rclpy.init(context=ctx, domain_id=domain)
    yield ctx
    ctx.try_shutdown()


def test_published_bytes_arrive_as_marker_array(context):
    """Raw bytes from `Publisher.publish` reach a typed and a raw subscriber over DDS."""
    markers = mixed_markers()
    raw = marker_array_cdr(markers)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_node = rclpy.create_node('marker_cdr_pub', context=context)
    sub_node = rclpy.create_node('marker_cdr_sub', context=context)
    typed, raw_received = [], []
    topic = f'/noksr_test/mesh_{os.getpid()}'
    publisher = pub_node.create_publisher(MarkerArray, topic, qos)
    sub_node.create_subscription(MarkerArray, topic, typed.append, qos)
    sub_node.create_subscription(MarkerArray, topic, raw_received.append, qos, raw=True)
    executor = SingleThreadedExecutor(context=context)
    for node in (pub_node, sub_node):
        executor.add_node(node)
    try:
        _spin_until(executor, lambda: publisher.get_subscription_count() == 2)
        publisher.publish(raw)
        _spin_until(executor, lambda: typed and raw_received)
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    assert isinstance(typed[0], MarkerArray)
    assert typed[0] == MarkerArray(markers=[slow_marker(m) for m in markers])
    assert isinstance(raw_received[0], bytes)
    assert deserialize_message(raw_received[0], MarkerArray) == typed[0]


def _spin_until(executor, done, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, 'timed out waiting on the ROS graph'
        executor.spin_once(timeout_sec=0.05)


def _same_marker(a, b):
    assert (a.ns, a.id, a.action, a.frame_id, a.stamp_ns) == (b.ns, b.id, b.action, b.frame_id,
                                                               b.stamp_ns)
    assert np.allclose(a.color, b.color)
    assert np.array_equal(a.points, b.points)
    assert (a.colors is None) == (b.colors is None)
    if a.colors is not None:
        assert np.array_equal(a.colors, b.colors)


@pytest.mark.parametrize('humble', [False, True])
def test_reader_inverts_the_writer(humble):
    from noksr_ros.ros.marker_cdr_read import read_marker_array_cdr

    markers = mixed_markers()
    back = read_marker_array_cdr(marker_array_cdr(markers, humble), humble)
    assert len(back) == len(markers)
    for a, b in zip(markers, back, strict=True):
        _same_marker(a, b)


def test_humble_layout_is_shorter_by_the_texture_and_mesh_file_fields():
    markers = mixed_markers()
    kilted, humble = marker_array_cdr(markers), marker_array_cdr(markers, humble=True)
    assert len(humble) < len(kilted)
    # Same bytes up to the first marker's colours, which both layouts share.
    assert humble[:40] == kilted[:40]


def test_reader_reads_what_rclpy_serializes():
    """Messages built the slow rclpy way read back to the same specs."""
    from noksr_ros.ros.marker_cdr_read import read_marker_array_cdr

    markers = mixed_markers()
    raw = serialize_message(MarkerArray(markers=[slow_marker(m) for m in markers]))
    for a, b in zip(markers, read_marker_array_cdr(raw), strict=True):
        _same_marker(a, b)


def test_reader_rejects_truncated_and_foreign_bytes():
    from noksr_ros.ros.marker_cdr_read import read_marker_array_cdr

    raw = marker_array_cdr(mixed_markers())
    with pytest.raises(ValueError, match='truncated'):
        read_marker_array_cdr(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match='CDR'):
        read_marker_array_cdr(b'\x00\x00\x00\x00' + raw[4:])

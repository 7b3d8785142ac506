"""PointCloud2 decoding and encoding on rosbags-typestore messages (no ROS install needed)."""

from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from noksr_ros.errors import PointCloudError
from noksr_ros.io.pointcloud2 import (
    POINT_FIELD_DTYPES,
    cloud_field_names,
    create_cloud,
    pack_xyzi,
    read_points,
)

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
PointCloud2 = TYPES['sensor_msgs/msg/PointCloud2']
PointField = TYPES['sensor_msgs/msg/PointField']
FLOAT32 = 7


def header(stamp_ns=1_500_000_007, frame_id='lidar'):
    sec, nanosec = divmod(stamp_ns, 10**9)
    return TYPES['std_msgs/msg/Header'](
        stamp=TYPES['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id=frame_id)


def cloud_from_records(records, fields, *, height=1, row_pad=0, bigendian=False, frame='lidar'):
    """Build a message from an (H*W,) numpy structured array whose dtype is the point layout."""
    point_step = records.dtype.itemsize
    width = records.size // height
    rows = records.view(np.uint8).reshape(height, width * point_step)
    pad = np.full((height, row_pad), 0xFF, dtype=np.uint8)  # NaN bytes if ever misread
    data = np.ascontiguousarray(np.concatenate([rows, pad], axis=1)).reshape(-1)
    return PointCloud2(header=header(frame_id=frame), height=height, width=width,
                       fields=[PointField(name=n, offset=o, datatype=d, count=c)
                               for n, o, d, c in fields],
                       is_bigendian=bigendian, point_step=point_step,
                       row_step=width * point_step + row_pad, data=data, is_dense=False)


def xyzi_records(n, rng, *, order='<', point_step=16):
    dtype = np.dtype({'names': ['x', 'y', 'z', 'intensity'], 'formats': [order + 'f4'] * 4,
                      'offsets': [0, 4, 8, 12], 'itemsize': point_step})
    records = np.zeros(n, dtype=dtype)
    for name in dtype.names:
        records[name] = rng.normal(size=n).astype(np.float32)
    return records


XYZI_FIELDS = [('x', 0, FLOAT32, 1), ('y', 4, FLOAT32, 1), ('z', 8, FLOAT32, 1),
               ('intensity', 12, FLOAT32, 1)]


def expected_xyzi(records, names=('x', 'y', 'z', 'intensity')):
    return np.stack([records[n].astype(np.float32) for n in names], axis=1)


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('datatype', sorted(POINT_FIELD_DTYPES))
def test_every_datatype_and_byte_order(datatype, bigendian):
    order = '>' if bigendian else '<'
    code = order + POINT_FIELD_DTYPES[datatype]
    info = np.iinfo(code) if np.dtype(code).kind in 'iu' else np.finfo(code)
    values = np.array([info.min, info.max, 0, 1, 100], dtype=code)
    if np.dtype(code).kind == 'f':
        values = np.array([-1.5, 2.25, 0, 1, 100], dtype=code)
    # 'v' after x, y, z plus 3 bytes of padding inside each point
    dtype = np.dtype({'names': ['x', 'y', 'z', 'v'], 'formats': [order + 'f4'] * 3 + [code],
                      'offsets': [0, 4, 8, 12], 'itemsize': 12 + np.dtype(code).itemsize + 3})
    records = np.zeros(values.size, dtype=dtype)
    records['x'] = np.arange(values.size)
    records['v'] = values
    msg = cloud_from_records(records, XYZI_FIELDS[:3] + [('v', 12, datatype, 1)],
                             bigendian=bigendian)
    result = read_points(msg, ('x', 'v'))
    assert result.points.dtype == np.float32
    np.testing.assert_array_equal(result.points[:, 0], np.arange(values.size, dtype=np.float32))
    np.testing.assert_array_equal(result.points[:, 1], values.astype(np.float32))
    structured = read_points(msg, ('v',), structured=True).points
    assert structured.dtype['v'] == np.dtype(code).newbyteorder('=')
    np.testing.assert_array_equal(structured['v'], values)


def test_organized_cloud_with_point_and_row_padding():
    rng = np.random.default_rng(1)
    records = xyzi_records(3 * 5, rng, point_step=23)  # 7 padding bytes per point
    msg = cloud_from_records(records, XYZI_FIELDS, height=3, row_pad=9)
    assert msg.row_step == 5 * 23 + 9 and len(msg.data) == 3 * msg.row_step
    result = read_points(msg, ('x', 'y', 'z', 'intensity'))
    np.testing.assert_array_equal(result.points, expected_xyzi(records))
    assert result.n_input == 15 and result.n_dropped_nonfinite == 0


def test_big_endian_organized_cloud():
    rng = np.random.default_rng(2)
    records = xyzi_records(4 * 6, rng, order='>', point_step=20)
    msg = cloud_from_records(records, XYZI_FIELDS, height=4, row_pad=3, bigendian=True)
    np.testing.assert_array_equal(read_points(msg).points, expected_xyzi(records, 'xyz'))


def test_field_order_follows_request_not_message():
    rng = np.random.default_rng(3)
    records = xyzi_records(10, rng)
    result = read_points(cloud_from_records(records, XYZI_FIELDS), ('intensity', 'z', 'x'))
    np.testing.assert_array_equal(result.points, expected_xyzi(records, ('intensity', 'z', 'x')))
    assert result.field_names == ('intensity', 'z', 'x')


def test_nonfinite_rows_are_dropped_and_counted():
    rng = np.random.default_rng(4)
    records = xyzi_records(10, rng)
    records['x'][1] = np.nan
    records['y'][4] = np.inf
    records['z'][7] = -np.inf
    records['intensity'][8] = np.nan  # not requested below: must not drop row 8
    result = read_points(cloud_from_records(records, XYZI_FIELDS))
    keep = np.setdiff1d(np.arange(10), [1, 4, 7])
    np.testing.assert_array_equal(result.points, expected_xyzi(records[keep], 'xyz'))
    assert (result.n_input, result.n_dropped_nonfinite) == (10, 3)
    with_i = read_points(cloud_from_records(records, XYZI_FIELDS), ('x', 'y', 'z', 'intensity'))
    assert with_i.n_dropped_nonfinite == 4 and with_i.points.shape == (6, 4)
    structured = read_points(cloud_from_records(records, XYZI_FIELDS), structured=True)
    assert structured.n_dropped_nonfinite == 3 and structured.points.shape == (7,)


def test_float64_beyond_float32_range_is_dropped_as_nonfinite():
    dtype = np.dtype({'names': ['x', 'y', 'z'], 'formats': ['<f8'] * 3, 'offsets': [0, 8, 16],
                      'itemsize': 24})
    records = np.zeros(3, dtype=dtype)
    records['x'] = [1.0, 1e300, 2.0]
    msg = cloud_from_records(records, [('x', 0, 8, 1), ('y', 8, 8, 1), ('z', 16, 8, 1)])
    result = read_points(msg)
    np.testing.assert_array_equal(result.points[:, 0], [1.0, 2.0])
    assert result.n_dropped_nonfinite == 1


def test_stamp_and_frame_are_reported():
    msg = cloud_from_records(xyzi_records(2, np.random.default_rng(5)), XYZI_FIELDS,
                             frame='ego_vehicle/lidar')
    result = read_points(msg)
    assert (result.stamp_ns, result.frame_id) == (1_500_000_007, 'ego_vehicle/lidar')


def test_empty_clouds_give_empty_arrays():
    empty = PointCloud2(header=header(), height=1, width=0, fields=[], is_bigendian=False,
                        point_step=0, row_step=0, data=np.zeros(0, np.uint8), is_dense=True)
    result = read_points(empty)
    assert result.points.shape == (0, 3) and result.points.dtype == np.float32
    assert result.n_input == 0
    organized = cloud_from_records(xyzi_records(0, np.random.default_rng(0)), XYZI_FIELDS)
    assert read_points(organized, ('x', 'intensity')).points.shape == (0, 2)


def test_duck_typed_message_with_bytes_and_list_data():
    records = xyzi_records(5, np.random.default_rng(6))
    fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=c) for n, o, d, c in XYZI_FIELDS]
    stamp = SimpleNamespace(sec=3, nanosec=4)
    for data in (records.tobytes(), list(records.tobytes()), bytearray(records.tobytes())):
        msg = SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id='f'), height=1,
                              width=5, fields=fields, is_bigendian=False, point_step=16,
                              row_step=80, data=data, is_dense=True)
        result = read_points(msg)
        np.testing.assert_array_equal(result.points, expected_xyzi(records, 'xyz'))
        assert result.stamp_ns == 3_000_000_004


def _good_cloud():
    return cloud_from_records(xyzi_records(4, np.random.default_rng(7)), XYZI_FIELDS)


def _with(**changes):
    msg = _good_cloud()
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def _with_field(index, **changes):
    msg = _good_cloud()
    old = msg.fields[index]
    values = {'name': old.name, 'offset': old.offset, 'datatype': old.datatype,
              'count': old.count, **changes}
    msg.fields[index] = PointField(**values)
    return msg


BAD_INPUTS = {
    'missing field': (lambda: read_points(_good_cloud(), ('x', 'y', 'w')),
                      "no field 'w'; available fields: 'x', 'y', 'z', 'intensity'"),
    'field past point_step': (
        lambda: read_points(_with_field(2, offset=14)),
        "field 'z' (offset 14, FLOAT32) ends at byte 18, past point_step 16"),
    'unknown datatype': (lambda: read_points(_with_field(1, datatype=9)),
                         "field 'y' has unknown datatype 9; known: 1=INT8"),
    'datatype zero': (lambda: read_points(_with_field(0, datatype=0)), 'unknown datatype 0'),
    'count > 1': (lambda: read_points(_with_field(0, count=3)),
                  "field 'x' has count 3; only fields with count 1"),
    'count 0': (lambda: read_points(_with_field(0, count=0)), "field 'x' has count 0"),
    'duplicate field': (lambda: read_points(_with_field(3, name='x')),
                        "field 'x' is declared 2 times"),
    'data too short': (lambda: read_points(_with(data=_good_cloud().data[:-1])),
                       'data has 63 bytes but height * row_step = 1 * 64 = 64'),
    'data too long': (lambda: read_points(_with(data=np.zeros(65, np.uint8))),
                      'data has 65 bytes'),
    'point_step 0': (lambda: read_points(_with(point_step=0)), 'point_step is 0'),
    'row_step too small': (lambda: read_points(_with(row_step=60)),
                           'row_step 60 is smaller than width * point_step = 4 * 16 = 64'),
    'negative height': (lambda: read_points(_with(height=-1)), 'height must be >= 0, got -1'),
    'float width': (lambda: read_points(_with(width=2.0)), 'width must be an integer'),
    'over max_points': (lambda: read_points(_good_cloud(), max_points=3),
                        'cloud has 4 points, over the cap max_points=3'),
    'over max_bytes': (lambda: read_points(_good_cloud(), max_bytes=63),
                       'cloud data has 64 bytes, over the cap max_bytes=63'),
    'not a message': (lambda: read_points(object()), "has no attribute 'header'"),
    'bad stamp': (lambda: read_points(_with(header=SimpleNamespace(stamp=None, frame_id='a'))),
                  'header.stamp is not a time'),
    'bad field entry': (lambda: read_points(_with(fields=['x'])), 'fields[0] is not a PointField'),
    'data not bytes': (lambda: read_points(_with(data=['a'] * 64)), 'data is not a byte sequence'),
    'field_names string': (lambda: read_points(_good_cloud(), 'xyz'), 'not the string'),
    'field_names duplicate': (lambda: read_points(_good_cloud(), ('x', 'x')), 'duplicates'),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_raises_pointcloud_error_naming_the_problem(case):
    call, message = BAD_INPUTS[case]
    with pytest.raises(PointCloudError) as info:
        call()
    assert message in str(info.value)


def test_caps_pass_at_the_limit():
    assert read_points(_good_cloud(), max_points=4, max_bytes=64).points.shape == (4, 3)


def test_round_trip_numpy_message_numpy():
    rng = np.random.default_rng(8)
    xyz = rng.normal(size=(1000, 3)).astype(np.float32) * 50
    intensity = rng.random(1000).astype(np.float32)
    msg = create_cloud(header(42, 'ego_vehicle/lidar'), xyz, intensity, msg_type=PointCloud2,
                       field_type=PointField)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 1000, 16, 16000)
    assert cloud_field_names(msg) == ('x', 'y', 'z', 'intensity')
    assert all(f.datatype == FLOAT32 and f.count == 1 for f in msg.fields)
    assert msg.is_dense is True and msg.is_bigendian is False
    result = read_points(msg, ('x', 'y', 'z', 'intensity'))
    np.testing.assert_array_equal(result.points[:, :3], xyz)
    np.testing.assert_array_equal(result.points[:, 3], intensity)
    assert (result.stamp_ns, result.frame_id) == (42, 'ego_vehicle/lidar')


def test_round_trip_through_cdr_serialization():
    store = get_typestore(Stores.ROS2_HUMBLE)
    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    msg = create_cloud(header(), xyz, None, msg_type=PointCloud2, field_type=PointField)
    back = store.deserialize_cdr(store.serialize_cdr(msg, PointCloud2.__msgtype__),
                                 PointCloud2.__msgtype__)
    result = read_points(back, ('x', 'y', 'z', 'intensity'))
    np.testing.assert_array_equal(result.points[:, :3], xyz)
    np.testing.assert_array_equal(result.points[:, 3], np.zeros(10, np.float32))


def test_create_cloud_marks_nonfinite_clouds_not_dense_and_checks_shapes():
    xyz = np.array([[0, 0, 0], [np.nan, 1, 1]], dtype=np.float32)
    msg = create_cloud(header(), xyz, msg_type=PointCloud2, field_type=PointField)
    assert msg.is_dense is False
    with pytest.raises(PointCloudError, match=r'xyz must have shape \(N, 3\)'):
        pack_xyzi(np.zeros((4, 2)))
    with pytest.raises(PointCloudError, match=r'intensity must have shape \(4,\)'):
        pack_xyzi(np.zeros((4, 3)), np.zeros(3))


def test_pack_xyzi_is_little_endian_float32():
    packed = pack_xyzi(np.array([[1.0, 2.0, 3.0]]), np.array([4.0]))
    assert packed.dtype == np.uint8 and packed.size == 16
    np.testing.assert_array_equal(np.frombuffer(packed.tobytes(), '<f4'), [1, 2, 3, 4])


FIELD_NAMES = ('x', 'y', 'z', 'intensity', 'ring')


@st.composite
def random_clouds(draw):
    """PointCloud2 messages near the valid ones: random field tables, sizes, steps, truncations."""
    names = [name for name in FIELD_NAMES if draw(st.integers(0, 7))]  # each missing 1 in 8
    if names and draw(st.integers(0, 9)) == 0:
        names.append(names[0])  # a duplicated field name now and then
    fields = [PointField(name=name, offset=draw(st.integers(0, 24)),
                         datatype=draw(st.one_of(st.integers(1, 8), st.integers(0, 10))),
                         count=draw(st.sampled_from([1, 1, 1, 1, 1, 0, 2]))) for name in names]
    end = max((f.offset + 8 for f in fields), default=0)
    point_step = max(0, end + draw(st.integers(-6, 6)))
    height = draw(st.sampled_from([1, 2, 3, 1, 4, 0]))
    width = draw(st.sampled_from([5, 1, 2, 3, 6, 0]))
    row_step = max(0, width * point_step + draw(st.sampled_from([0, 0, 0, 0, 5, -1, -8])))
    n_bytes = max(0, height * row_step + draw(st.sampled_from([0, 0, 0, 0, 0, 0, -1, 1, -7])))
    data = np.frombuffer(draw(st.binary(min_size=n_bytes, max_size=n_bytes)), np.uint8).copy()
    return PointCloud2(header=header(), height=height, width=width, fields=fields,
                       is_bigendian=draw(st.booleans()), point_step=point_step,
                       row_step=row_step, data=data, is_dense=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=random_clouds(), names=st.lists(st.sampled_from(FIELD_NAMES[:3]), min_size=1,
                                           max_size=3, unique=True), structured=st.booleans())
def test_fuzz_only_pointcloud_error(msg, names, structured):
    try:
        result = read_points(msg, names, structured=structured, max_points=20)
    except PointCloudError as exc:
        assert str(exc)
        return
    n_rows = result.points.shape[0]
    assert n_rows + result.n_dropped_nonfinite == result.n_input == msg.height * msg.width
    if not structured:
        assert result.points.shape == (n_rows, len(names)) and result.points.dtype == np.float32
        assert np.isfinite(result.points).all()

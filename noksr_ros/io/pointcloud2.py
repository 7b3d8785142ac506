"""
PointCloud2 <-> numpy without ROS: works on rclpy, rosbags or any duck-typed message.

A PointCloud2 holds `height` rows of `width` points. Each point is `point_step` bytes described by
`fields` (name, byte offset, datatype code, count); each row is `row_step >= width * point_step`
bytes (the rest is padding) and `data` is exactly `height * row_step` bytes. Reading builds one
numpy structured dtype (itemsize `point_step`) and a strided view of `data`, so nothing is copied
until the requested columns are gathered.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from noksr_ros.errors import PointCloudError

#: PointField datatype code -> numpy type (byte order added per message).
POINT_FIELD_DTYPES: dict[int, str] = {
    1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}
#: PointField datatype code -> ROS name, for error messages.
POINT_FIELD_NAMES: dict[int, str] = {
    1: 'INT8', 2: 'UINT8', 3: 'INT16', 4: 'UINT16', 5: 'INT32', 6: 'UINT32', 7: 'FLOAT32',
    8: 'FLOAT64'}
FLOAT32 = 7
#: The CARLA ROS bridge LiDAR layout: four little-endian float32 per point.
CARLA_FIELDS = ('x', 'y', 'z', 'intensity')
CARLA_POINT_STEP = 16

_MESSAGE_ATTRS = ('header', 'height', 'width', 'fields', 'is_bigendian', 'point_step', 'row_step',
                  'data')


@dataclass(frozen=True)
class CloudReadResult:
    """
    Points decoded from one PointCloud2.

    `points` is (N, K) float32 with one column per requested field (in the order asked for), or,
    with `structured=True`, an (N,) aligned structured array with the fields' own native dtypes.
    Rows with a NaN/Inf value were dropped; `n_input` counts all points of the message
    (height * width) and `n_dropped_nonfinite` the dropped ones. `stamp_ns` and `frame_id` come
    from the message header: the points are in that frame at that time.
    """

    points: np.ndarray
    field_names: tuple[str, ...]
    n_input: int
    n_dropped_nonfinite: int
    stamp_ns: int
    frame_id: str


@dataclass(frozen=True)
class _Layout:
    """Validated geometry of a cloud, in points and bytes."""

    height: int
    width: int
    point_step: int
    row_step: int
    byte_order: str


def stamp_to_ns(stamp: Any) -> int:
    """`builtin_interfaces/Time`-like object (`sec`, `nanosec`) -> integer nanoseconds."""
    try:
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PointCloudError(f'header.stamp is not a time with sec/nanosec: {stamp!r}') from exc


def header_stamp_frame(msg: Any) -> tuple[int, str]:
    """(stamp in ns, frame_id) from the `header` of a stamped message."""
    header = _attr(msg, 'header')
    frame_id = getattr(header, 'frame_id', None)
    if not isinstance(frame_id, str):
        raise PointCloudError(f'header.frame_id is not a string: {frame_id!r}')
    return stamp_to_ns(getattr(header, 'stamp', None)), frame_id


def cloud_field_names(msg: Any) -> tuple[str, ...]:
    """Names of the fields of a PointCloud2-like message, in message order."""
    return tuple(str(getattr(f, 'name', '?')) for f in _attr(msg, 'fields'))


def read_points(msg: Any, field_names: tuple[str, ...] | list[str] = ('x', 'y', 'z'), *,
                structured: bool = False, max_points: int | None = None,
                max_bytes: int | None = None) -> CloudReadResult:
    """
    Decode the named fields of a PointCloud2-like message into numpy, dropping NaN/Inf rows.

    Works on any object with `header height width fields is_bigendian point_step row_step data`
    (rclpy and rosbags messages alike). All PointField datatypes, both byte orders, padding inside
    points and at row ends, organized and unorganized clouds are read. Integer fields are converted
    to float32 exactly up to 2**24; float64 values beyond the float32 range become Inf and their
    rows are dropped.

    Args:
        msg: the message.
        field_names: fields to read, each with count 1 (e.g. `('x', 'y', 'z', 'intensity')`).
        structured: return an (N,) structured array with the fields' own dtypes instead of an
            (N, K) float32 array.
        max_points: refuse clouds with more than this many points (height * width).
        max_bytes: refuse clouds whose `data` is larger than this.

    Returns:
        A CloudReadResult; an empty cloud gives (0, K) points and no error.

    Raises:
        PointCloudError: the message is malformed, lacks a requested field or is over a cap.
    """
    names = _check_requested(field_names)
    stamp_ns, frame_id = header_stamp_frame(msg)
    layout = _layout(msg)
    n_input = layout.height * layout.width
    if n_input == 0:
        return CloudReadResult(_empty(names, structured), names, 0, 0, stamp_ns, frame_id)
    buf = _byte_buffer(_attr(msg, 'data'))
    _check_caps(n_input, buf.size, max_points, max_bytes)
    dtype = _point_dtype(msg, names, layout)
    expected = layout.height * layout.row_step
    if buf.size != expected:
        raise PointCloudError(
            f'data has {buf.size} bytes but height * row_step = {layout.height} * '
            f'{layout.row_step} = {expected}')
    # (H, W) zero-copy view; reshaping it to (N,) would copy whole padded points
    view = np.ndarray((layout.height, layout.width), dtype=dtype, buffer=buf,
                      strides=(layout.row_step, layout.point_step))
    points = _gather_structured(view, names) if structured else _gather_columns(view, names)
    points, n_dropped = _drop_nonfinite(points, structured)
    return CloudReadResult(points, names, n_input, n_dropped, stamp_ns, frame_id)


def _attr(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError as exc:
        raise PointCloudError(
            f'not a PointCloud2-like message: {type(msg).__name__} has no attribute {name!r} '
            f'(needs {", ".join(_MESSAGE_ATTRS)})') from exc


def _check_requested(field_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(field_names, str):
        raise PointCloudError(f'field_names must be a sequence of names, not the string '
                              f'{field_names!r}')
    names = tuple(field_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise PointCloudError(f'field_names must be non-empty names, got {names!r}')
    if len(set(names)) != len(names):
        raise PointCloudError(f'field_names has duplicates: {names!r}')
    return names


def _as_count(value: Any, name: str) -> int:
    """A non-negative integer message field, or PointCloudError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise PointCloudError(f'{name} must be an integer, got {value!r}')
    if value < 0:
        raise PointCloudError(f'{name} must be >= 0, got {value}')
    return int(value)


def _layout(msg: Any) -> _Layout:
    height = _as_count(_attr(msg, 'height'), 'height')
    width = _as_count(_attr(msg, 'width'), 'width')
    point_step = _as_count(_attr(msg, 'point_step'), 'point_step')
    row_step = _as_count(_attr(msg, 'row_step'), 'row_step')
    byte_order = '>' if bool(_attr(msg, 'is_bigendian')) else '<'
    if height * width > 0:
        if point_step == 0:
            raise PointCloudError(f'point_step is 0 for a cloud of {height} x {width} points')
        if row_step < width * point_step:
            raise PointCloudError(
                f'row_step {row_step} is smaller than width * point_step = {width} * '
                f'{point_step} = {width * point_step}')
    return _Layout(height, width, point_step, row_step, byte_order)


def _check_caps(n_points: int, n_bytes: int, max_points: int | None,
                max_bytes: int | None) -> None:
    if max_points is not None and n_points > max_points:
        raise PointCloudError(f'cloud has {n_points} points, over the cap max_points={max_points}')
    if max_bytes is not None and n_bytes > max_bytes:
        raise PointCloudError(
            f'cloud data has {n_bytes} bytes, over the cap max_bytes={max_bytes}')


def _field_table(msg: Any) -> dict[str, list[tuple[int, int, int]]]:
    """Field name -> every (offset, datatype, count) declared under that name."""
    table: dict[str, list[tuple[int, int, int]]] = {}
    for i, field in enumerate(_attr(msg, 'fields')):
        try:
            name, offset, datatype, count = field.name, field.offset, field.datatype, field.count
        except AttributeError as exc:
            raise PointCloudError(f'fields[{i}] is not a PointField (name, offset, datatype, '
                                  f'count): {field!r}') from exc
        entry = (_as_count(offset, f'fields[{i}].offset'),
                 _as_count(datatype, f'fields[{i}].datatype'),
                 _as_count(count, f'fields[{i}].count'))
        table.setdefault(str(name), []).append(entry)
    return table


def _point_dtype(msg: Any, names: tuple[str, ...], layout: _Layout) -> np.dtype:
    """Structured dtype of the requested fields with itemsize point_step."""
    table = _field_table(msg)
    formats, offsets = [], []
    for name in names:
        entries = table.get(name)
        if entries is None:
            raise PointCloudError(f'cloud has no field {name!r}; available fields: '
                                  f'{", ".join(map(repr, table)) or "none"}')
        if len(entries) > 1:
            raise PointCloudError(f'field {name!r} is declared {len(entries)} times')
        offset, datatype, count = entries[0]
        formats.append(_field_format(name, datatype, count, layout.byte_order))
        offsets.append(offset)
        end = offset + np.dtype(formats[-1]).itemsize
        if end > layout.point_step:
            raise PointCloudError(
                f'field {name!r} (offset {offset}, {POINT_FIELD_NAMES[datatype]}) ends at byte '
                f'{end}, past point_step {layout.point_step}')
    return np.dtype({'names': list(names), 'formats': formats, 'offsets': offsets,
                     'itemsize': layout.point_step})


def _field_format(name: str, datatype: int, count: int, byte_order: str) -> str:
    code = POINT_FIELD_DTYPES.get(datatype)
    if code is None:
        raise PointCloudError(f'field {name!r} has unknown datatype {datatype}; known: '
                              + ', '.join(f'{k}={v}' for k, v in POINT_FIELD_NAMES.items()))
    if count != 1:
        raise PointCloudError(f'field {name!r} has count {count}; only fields with count 1 can '
                              'be read as columns')
    return byte_order + code


def _byte_buffer(data: Any) -> np.ndarray:
    """Message data (bytes, array.array('B'), uint8 ndarray, list of ints) -> uint8 array."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass  # not a buffer: a sequence of ints, e.g. a hand-built message
    except ValueError as exc:
        raise PointCloudError(f'data buffer cannot be read: {exc}') from exc
    try:
        buf = np.asarray(data, dtype=np.uint8)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PointCloudError(f'data is not a byte sequence: {exc}') from exc
    if buf.ndim != 1:
        raise PointCloudError(f'data must be one-dimensional, got shape {buf.shape}')
    return buf


def _empty(names: tuple[str, ...], structured: bool) -> np.ndarray:
    if structured:
        return np.empty(0, dtype=[(n, np.float32) for n in names])
    return np.empty((0, len(names)), dtype=np.float32)


def _gather_columns(view: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(H, W) structured view -> (H * W, K) float32 copy."""
    out = np.empty(view.shape + (len(names),), dtype=np.float32)
    with np.errstate(over='ignore'):  # float64 beyond float32 range -> Inf, dropped later
        for i, name in enumerate(names):
            out[..., i] = view[name]
    return out.reshape(-1, len(names))


def _gather_structured(view: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(H, W) strided view -> (H * W,) copy with native byte order and aligned fields."""
    dtype = np.dtype([(n, view.dtype[n].newbyteorder('=')) for n in names], align=True)
    out = np.empty(view.shape, dtype=dtype)
    for name in names:
        out[name] = view[name]
    return out.reshape(-1)


def _finite_rows(points: np.ndarray, structured: bool) -> np.ndarray | None:
    """(N,) bool of the rows without NaN/Inf, or None when all rows are finite."""
    if structured:
        columns = [points[n] for n in points.dtype.names if points.dtype[n].kind == 'f']
    elif np.isfinite(points).all():  # the common case, far faster than a per-row reduction
        return None
    else:
        columns = [points[:, i] for i in range(points.shape[1])]
    finite = np.ones(points.shape[0], dtype=bool)
    for column in columns:
        finite &= np.isfinite(column)
    return None if finite.all() else finite


def _drop_nonfinite(points: np.ndarray, structured: bool) -> tuple[np.ndarray, int]:
    finite = _finite_rows(points, structured)
    if finite is None:
        return points, 0
    # rows as opaque void items: boolean indexing is ~15x faster than on rows or structs
    width = 1 if structured else points.shape[1]
    kept = points.view(np.dtype((np.void, points.dtype.itemsize * width))).reshape(-1)[finite]
    n_kept = kept.shape[0]
    kept = kept.view(points.dtype)
    return (kept if structured else kept.reshape(n_kept, width)), int(finite.size - n_kept)


def pack_xyzi(xyz: np.ndarray, intensity: np.ndarray | None = None) -> np.ndarray:
    """
    (N, 3) points + (N,) intensity -> (N * 16,) uint8 bytes of the CARLA layout.

    Each point is x, y, z, intensity as little-endian float32 (point_step 16); a missing
    intensity is written as 0.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise PointCloudError(f'xyz must have shape (N, 3), got {xyz.shape}')
    records = np.zeros((xyz.shape[0], 4), dtype='<f4')
    records[:, :3] = xyz
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != (xyz.shape[0],):
            raise PointCloudError(f'intensity must have shape ({xyz.shape[0]},) to match xyz, '
                                  f'got {intensity.shape}')
        records[:, 3] = intensity
    return records.reshape(-1).view(np.uint8)


def carla_fields(field_type: Any) -> list[Any]:
    """PointField objects (of `field_type`, rclpy or rosbags) for x, y, z, intensity float32."""
    return [field_type(name=name, offset=4 * i, datatype=FLOAT32, count=1)
            for i, name in enumerate(CARLA_FIELDS)]


def create_cloud(header: Any, xyz: np.ndarray, intensity: np.ndarray | None = None, *,
                 msg_type: Any, field_type: Any) -> Any:
    """
    Build an unorganized PointCloud2 of the CARLA layout from numpy points.

    Args:
        header: the message header (stamp, frame_id of the points), of the message package used.
        xyz: (N, 3) points in `header.frame_id`, metres; cast to float32.
        intensity: (N,) intensities, or None for zeros.
        msg_type: the PointCloud2 class, e.g. rclpy's `sensor_msgs.msg.PointCloud2` or a rosbags
            typestore's `sensor_msgs/msg/PointCloud2`; called with keyword arguments.
        field_type: the matching PointField class.

    Returns:
        A `msg_type` with fields x, y, z, intensity (FLOAT32, point_step 16, little-endian),
        height 1, is_dense True when every value is finite. Its `data` is an `array.array('B')`
        for rosidl-generated (rclpy) classes, which skips their per-byte checks, and a uint8
        ndarray otherwise (rosbags).
    """
    packed = pack_xyzi(xyz, intensity)
    n = packed.size // CARLA_POINT_STEP
    is_dense = bool(np.isfinite(packed.view('<f4')).all())
    return msg_type(header=header, height=1, width=n, fields=carla_fields(field_type),
                    is_bigendian=False, point_step=CARLA_POINT_STEP, row_step=CARLA_POINT_STEP * n,
                    data=_data_for(msg_type, packed), is_dense=is_dense)


def _data_for(msg_type: Any, packed: np.ndarray) -> Any:
    if hasattr(msg_type, 'get_fields_and_field_types'):  # rosidl-generated Python class
        data = array.array('B')
        data.frombytes(memoryview(packed))
        return data
    return packed

"""
The node's ROS interface as data (no ROS import): topics, services, diagnostics keys.

The node takes its service names from here and the README's tables are generated from here and
from the config schema (`noksr docs`), so the documentation cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from noksr_ros.config import FieldSpec, NoksrConfig, field_specs

# Read by the worker at each use (never cached in timers or map structures): safe to change live.
RUNTIME_KEYS = frozenset({
    'reconstruct.debounce_s', 'reconstruct.max_wait_s', 'reconstruct.max_wait_growth',
    'reconstruct.max_wait_radius_m', 'reconstruct.max_segments_per_update',
    'mapping.keep_radius_m', 'mapping.persist_period_s', 'ros.pose_wait_s', 'ros.queue_size',
    'ros.update_rate_hz', 'ros.idle_flush_s',
})


@dataclass(frozen=True)
class Endpoint:
    """A topic or service: its name (or the parameter holding it), type, direction, purpose."""

    name: str
    type: str
    direction: str
    description: str


SAVE_MESH = '~/save_mesh'
CLEAR_MAP = '~/clear_map'
PUBLISH_MAP = '~/publish_map'
DIAGNOSTICS_TOPIC = '/diagnostics'

TOPICS = (
    Endpoint('ros.lidar_topic', 'sensor_msgs/msg/PointCloud2', 'subscribed',
             'LiDAR scans, any field layout with float or integer x, y, z; NaN rows dropped.'),
    Endpoint('ros.odom_topic', 'nav_msgs/msg/Odometry', 'subscribed',
             "Vehicle pose (map -> base) when ros.pose_source is 'odometry'."),
    Endpoint('ros.transform_topic', 'geometry_msgs/msg/TransformStamped', 'subscribed',
             "Vehicle pose (map -> base) when ros.pose_source is 'transform'."),
    Endpoint('/tf, /tf_static', 'tf2_msgs/msg/TFMessage', 'subscribed',
             "Scan poses (map -> scan frame) when ros.pose_source is 'tf'."),
    Endpoint('ros.mesh_topic', 'visualization_msgs/msg/MarkerArray', 'published',
             'One TRIANGLE_LIST marker per changed segment, DELETE / DELETEALL; the whole map '
             'again for each new subscriber. Reliable, volatile.'),
    Endpoint('ros.mesh_segments_topic', 'noksr_ros/msg/MeshMapUpdate', 'published',
             'Indexed mesh stream for machine consumers: changed segments (float32 vertices, '
             'uint32 triangles, normals, global vertex ids, revision) and removed keys, numbered '
             'by sequence; a full resend for each new subscriber, on ~/publish_map and after '
             '~/clear_map. Reliable, volatile. See docs/messages.md.'),
    Endpoint('ros.mesh_status_topic', 'noksr_ros/msg/MeshMapStatus', 'published',
             'Keys and revisions of the published map, its newest sequence, totals and progress '
             'counters, at ros.publish_rate_hz. Reliable, transient local (depth 1).'),
    Endpoint(DIAGNOSTICS_TOPIC, 'diagnostic_msgs/msg/DiagnosticArray', 'published',
             'Queue length, drops by reason, scans integrated, segments total / dirty / in '
             'memory / on disk / meshed, mesh changes not yet published and mesh messages '
             'published (a recorder has everything once it has that many), last update time, '
             'device, out-of-memory recoveries, process RSS and malloc heap in use / free / '
             'mmapped (MB).'),
)

SERVICES = (
    Endpoint(SAVE_MESH, 'std_srvs/srv/Trigger', 'server',
             'Write the current mesh as a PLY (map frame) under ros.output_dir; the message is '
             'its path.'),
    Endpoint(CLEAR_MAP, 'std_srvs/srv/Trigger', 'server',
             'Forget the map (a segment store is moved aside, not deleted); DELETEALL and an '
             'empty full MeshMapUpdate are published.'),
    Endpoint(PUBLISH_MAP, 'std_srvs/srv/Trigger', 'server',
             'Publish every segment mesh again (markers and a full MeshMapUpdate).'),
)


def _resolve(name: str) -> str:
    """A parameter name -> `default` (parameter); a literal name stays as it is."""
    defaults = NoksrConfig().to_flat()
    if name in defaults:
        value = defaults[name]
        return f'`{value}` (`{name}`)' if value else f'set by `{name}`'
    return f'`{name}`'


def _cell(text: object) -> str:
    return str(text).replace('|', '\\|')


def topics_table() -> str:
    """Markdown table of the topics."""
    rows = ['| topic | type | direction | what |', '|---|---|---|---|']
    rows += [f'| {_resolve(t.name)} | `{t.type}` | {t.direction} | {_cell(t.description)} |'
             for t in TOPICS]
    return '\n'.join(rows)


def services_table() -> str:
    """Markdown table of the services."""
    rows = ['| service | type | what |', '|---|---|---|']
    rows += [f'| `{s.name}` | `{s.type}` | {_cell(s.description)} |' for s in SERVICES]
    return '\n'.join(rows)


def parameter_help(spec: FieldSpec) -> str:
    """Help text plus choices, range and run-time changeability (docs, `ros2 param describe`)."""
    extra = []
    if spec.choices:
        extra.append('one of ' + ', '.join(map(str, spec.choices)))
    if spec.lo is not None or spec.hi is not None:
        extra.append(f'range [{spec.lo if spec.lo is not None else "-inf"}, '
                     f'{spec.hi if spec.hi is not None else "inf"}]')
    if spec.name in RUNTIME_KEYS:
        extra.append('changeable while running')
    return spec.help + (f' ({"; ".join(extra)})' if extra else '')


def parameters_table() -> str:
    """Markdown table of every parameter (the core config's dotted keys)."""
    rows = ['| parameter | default | description |', '|---|---|---|']
    for spec in field_specs():
        default = spec.default
        if isinstance(default, tuple):
            default = '[' + ', '.join(f'{v:g}' for v in default) + ']'
        elif default == '':
            default = "''"
        rows.append(f'| `{spec.name}` | `{default}` | {_cell(parameter_help(spec))} |')
    return '\n'.join(rows)


TABLES = {'topics': topics_table, 'services': services_table, 'parameters': parameters_table}


def render_generated(text: str) -> str:
    """`text` with each `<!-- generated:NAME -->` ... `<!-- end generated:NAME -->` refreshed."""
    for name, make in TABLES.items():
        begin, end = f'<!-- generated:{name} -->', f'<!-- end generated:{name} -->'
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = f'{head}{begin}\n{make()}\n{end}{tail}'
    return text

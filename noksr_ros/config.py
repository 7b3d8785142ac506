"""
The one configuration schema of noksr_ros.

Sections are dataclasses whose field names carry their units (`_m`, `_hz`, `_s`, `_deg`). The same
dotted names (`mapping.segment_size_m`) are used in YAML files, `--set key=value` CLI overrides and
ROS parameters. Unknown keys and invalid values raise `ConfigError` naming the key and what is
valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
import typing
from typing import Any

import yaml

from noksr_ros.errors import ConfigError


def _f(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
       choices: tuple[Any, ...] | None = None) -> Any:
    """Declare a config field with help text and validation bounds (inclusive)."""
    meta = {'help': help, 'lo': lo, 'hi': hi, 'choices': choices}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class IngestConfig:
    """Scan filtering before anything else sees the points."""

    min_range_m: float = _f(2.0, 'Drop points closer than this to the sensor.', lo=0.0)
    max_range_m: float = _f(80.0, 'Drop points farther than this from the sensor.', lo=0.1)
    ego_box_m: tuple[float, float, float, float, float, float] = _f(
        (-2.8, -1.2, -2.6, 2.8, 1.2, 0.5),
        'Box around the sensor (xmin ymin zmin xmax ymax zmax, sensor frame) whose points are the '
        'vehicle itself and are dropped.')
    max_points_per_scan: int = _f(2_000_000, 'Scans with more points are dropped (counted).',
                                  lo=1)
    max_scan_bytes: int = _f(256 * 2**20, 'Scans with a larger data buffer are dropped.', lo=1)


@dataclass(frozen=True)
class NormalsConfig:
    """Normals for LiDAR points: kNN-PCA over a segment's scans, oriented toward the sensor."""

    knn: int = _f(24, 'Neighbours used for the PCA normal of each point of a scan (scan_pca).',
                  lo=3, hi=256)
    max_incidence_deg: float = _f(
        85.0, 'With scan_pca: drop points whose normal is more than this from the ray back to '
        'the sensor.', lo=0.0, hi=90.0)
    scan_pca: bool = _f(
        False, 'Estimate kNN-PCA normals of every scan at ingest (dropping grazing hits and '
        'degenerate neighbourhoods). Off: each point keeps the unit ray back to the sensor that '
        'saw it, and the per-segment re-estimation (segment_knn, then required) gives its '
        'normal from all scans at once; nothing is dropped for its angle, so far ground and '
        'grazing walls are reconstructed too.')
    segment_knn: int = _f(
        24, "Neighbours for the normals re-estimated over a segment's accumulated points (and "
        'halo) before each reconstruction: several scans together fix the tilted normals of '
        'sparse scan lines; 0 keeps the per-scan normals (needs scan_pca).', lo=0, hi=256)
    segment_cell_m: float = _f(
        0.1, 'The re-estimated normal is computed once per cube cell of this edge and shared by '
        "the cell's points (the network averages normals per 0.1 m cell anyway; 0: one per "
        'point).', lo=0.0, hi=1.0)


@dataclass(frozen=True)
class MappingConfig:
    """The segment map: serialization-keyed cubes of accumulated points."""

    segment_size_m: float = _f(12.8, 'Edge of a segment cube; a multiple of meshing.voxel_size_m.',
                               lo=0.4)
    cell_size_m: float = _f(0.05, 'Cell of the per-cell point density cap.', lo=0.001)
    max_points_per_cell: int = _f(3, 'Points kept per density cell; later points are dropped.',
                                  lo=1, hi=1000)
    halo_m: float = _f(1.0, 'Points of neighbouring segments within this distance of a segment '
                       'are used when reconstructing it.', lo=0.0)
    keep_radius_m: float = _f(150.0, 'Segments farther than this from the vehicle are moved to '
                              'the store on disk.', lo=1.0)
    store_dir: str = _f('', 'Directory of the segment store; empty: no eviction to disk.')
    persist_period_s: float = _f(10.0, 'With a store, the live node writes changed segments and '
                                 'its pending work to it this often (and at shutdown), so a '
                                 'crash loses at most this much; 0: only at eviction and '
                                 'shutdown.', lo=0.0)
    curve: str = _f('z', 'Space-filling curve of segment keys.', choices=('z', 'hilbert'))


@dataclass(frozen=True)
class ModelConfig:
    """The NoKSR network."""

    checkpoint: str = _f('', 'Checkpoint file; empty: the checkpoint shipped with the package.')
    device: str = _f('cpu', "Torch device: 'cpu', 'cuda', 'cuda:1', or 'auto'.")
    neighbours: str = _f('serialization', 'Neighbour search of the decoder.',
                         choices=('serialization', 'knn'))


@dataclass(frozen=True)
class MeshingConfig:
    """Marching cubes on the sparse SDF grid."""

    voxel_size_m: float = _f(0.1, 'Edge of a meshing voxel.', lo=0.005, hi=2.0)
    udf_trim_m: float = _f(0.4, 'Faces with a vertex farther than this from the data are removed '
                           '(see trim_source).', lo=0.0)
    trim_near_m: float = _f(0.2, "With trim_source 'points': faces this close to the data are "
                            'always kept; between this and udf_trim_m only where the data lie '
                            'around them (see trim_side_ratio). At or above udf_trim_m: a plain '
                            'distance trim.', lo=0.0)
    trim_side_ratio: float = _f(
        0.6, 'A corner beyond trim_near_m counts as past an edge (trimmed) when the centroid of '
        'its 32 nearest input points is at least this fraction of their mean distance away from '
        'it (data off to one side; a gap between scan lines has data around it).', lo=0.0, hi=1.0)
    trim_source: str = _f('points', "Distance used for trimming: 'points' (exact distance to the "
                          "nearest input point, identical on both sides of a segment face) or "
                          "'learned' (the UDF head; fills larger gaps, may differ at seams).",
                          choices=('points', 'learned'))
    dilation_voxels: int = _f(2, 'Corners within this many voxels of a point are evaluated.',
                              lo=0, hi=8)


@dataclass(frozen=True)
class ReconstructConfig:
    """Scheduling of segment reconstructions."""

    debounce_s: float = _f(1.0, 'A dirty segment waits this long after its last new points '
                           'before it is reconstructed (unless forced).', lo=0.0)
    max_wait_s: float = _f(0.0, 'A segment that keeps receiving points is reconstructed anyway '
                           'once it has been dirty this long (scan time), so the map near a '
                           'moving car stays fresh; 0 disables (batch runs).', lo=0.0)
    max_wait_growth: float = _f(1.0, 'A segment dirty for max_wait_s is rebuilt early only if it '
                                'has grown by this fraction of the points it had at its last '
                                'reconstruction (or was never reconstructed); otherwise it waits '
                                'for debounce_s. 0: rebuild at every max_wait_s while it receives '
                                'points of its own.', lo=0.0)
    max_wait_radius_m: float = _f(0.0, 'Only segments whose centre is this close to the vehicle '
                                  'are rebuilt early by max_wait_s; farther ones wait for '
                                  'debounce_s. 0: no limit.', lo=0.0)
    max_segments_per_update: int = _f(4, 'Segments reconstructed by one update() call.', lo=1)


@dataclass(frozen=True)
class RosConfig:
    """Topics, frames and node settings: used by the live node and when reading bags."""

    lidar_topic: str = _f('/carla/ego_vehicle/lidar', 'PointCloud2 topic of the LiDAR.')
    odom_topic: str = _f('/carla/ego_vehicle/odometry', 'nav_msgs/Odometry topic of the vehicle.')
    tf_topic: str = _f('/tf', 'Dynamic transforms (bags).')
    tf_static_topic: str = _f('/tf_static', 'Static transforms: the sensor extrinsic (bags).')
    transform_topic: str = _f('', 'geometry_msgs/TransformStamped topic of T_map_base, used when '
                              "pose_source is 'transform'.")
    map_frame: str = _f('map', 'Fixed frame of the map; the mesh is published in it.')
    base_frame: str = _f('ego_vehicle', 'Vehicle frame (child frame of the odometry).')
    lidar_frame: str = _f('', "LiDAR frame; empty: the PointCloud2's header.frame_id.")
    max_pose_gap_s: float = _f(0.5, 'Scans farther than this from the nearest pose sample are '
                               'dropped rather than extrapolated.', lo=0.0)
    max_pose_speed_mps: float = _f(70.0, 'Two pose samples farther apart than this speed allows '
                                   'are a jump (teleport, odometry reset): scans between them '
                                   'are dropped, never integrated with a smeared pose.', lo=0.0)
    max_pose_turn_dps: float = _f(360.0, 'Same as max_pose_speed_mps for rotation, in degrees '
                                  'per second.', lo=0.0)
    pose_source: str = _f('auto', "Where live scan poses come from: 'tf' (tf2_ros lookup of "
                          "map_frame <- scan frame), 'odometry' (odom_topic + "
                          "base_to_lidar_xyz_rpy), 'transform' (transform_topic + "
                          "base_to_lidar_xyz_rpy), or 'auto' (tf when tf2_ros is importable, "
                          'else odometry).', choices=('auto', 'tf', 'odometry', 'transform'))
    base_to_lidar_xyz_rpy: tuple[float, float, float, float, float, float] = _f(
        (0.0, 0.0, 2.4, 0.0, 0.0, 0.0),
        'LiDAR extrinsic in the vehicle frame for the odometry/transform pose sources: x y z '
        '(m) roll pitch yaw (deg). Default: the CARLA ROS bridge roof mount.')
    pose_wait_s: float = _f(0.5, 'A scan whose pose is not known yet waits this long (wall '
                            'time) for it, then is dropped and counted.', lo=0.0, hi=60.0)
    queue_size: int = _f(10, 'Scans waiting for integration; a scan arriving at a full queue '
                         'is dropped and counted.', lo=1, hi=10000)
    input_qos: str = _f('reliable', "QoS of the LiDAR/pose subscriptions: 'reliable' (like the "
                        "CARLA bridge publishes; large clouds arrive whole) or 'sensor_data' "
                        '(best effort: DDS silently loses many fragmented 1-2 MB clouds).',
                        choices=('sensor_data', 'reliable'))
    input_qos_depth: int = _f(10, 'History depth of the input subscriptions.', lo=1, hi=1000)
    update_rate_hz: float = _f(2.0, 'Rate of reconstruction updates (dirty segments -> meshes).',
                               lo=0.01, hi=100.0)
    publish_rate_hz: float = _f(2.0, 'Rate at which changed segment meshes are published.',
                                lo=0.01, hi=100.0)
    diagnostics_rate_hz: float = _f(1.0, 'Rate of /diagnostics messages.', lo=0.01, hi=100.0)
    idle_flush_s: float = _f(2.0, 'When no scan arrived for this long, every dirty segment is '
                             'reconstructed without waiting for the debounce.', lo=0.0)
    mesh_topic: str = _f('/noksr/mesh', 'visualization_msgs/MarkerArray topic of the mesh.')
    marker_ns: str = _f('noksr', 'Namespace of the mesh markers.')
    color_mode: str = _f('height', "Marker colours: 'height' (turbo colour map over "
                         "color_z_range_m) or 'normal'.", choices=('height', 'normal'))
    color_z_range_m: tuple[float, float] = _f(
        (-2.0, 12.0), 'Map-frame heights mapped to the ends of the colour map.')
    max_message_bytes: int = _f(16 * 2**20, 'Upper bound of one MarkerArray or MeshMapUpdate '
                                'message; larger updates are split into several messages.',
                                lo=1024)
    mesh_segments_topic: str = _f('/noksr/mesh_segments', 'noksr_ros/MeshMapUpdate topic: the '
                                  'indexed mesh stream for machine consumers.')
    mesh_status_topic: str = _f('/noksr/mesh_status', 'noksr_ros/MeshMapStatus topic: keys and '
                                'revisions of the published map, newest sequence.')
    mesh_segment_normals: bool = _f(True, 'Send per-vertex normals in /noksr/mesh_segments '
                                    '(12 more bytes per vertex).')
    output_dir: str = _f('noksr_meshes', 'Directory of the PLY files written by ~/save_mesh.')


@dataclass(frozen=True)
class NoksrConfig:
    """All sections together; dotted names are `<section>.<field>`."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
    normals: NormalsConfig = field(default_factory=NormalsConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    meshing: MeshingConfig = field(default_factory=MeshingConfig)
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    ros: RosConfig = field(default_factory=RosConfig)

    def with_overrides(self, values: dict[str, Any]) -> NoksrConfig:
        """Return a copy with dotted-name values applied and validated."""
        return apply_overrides(self, values)

    def to_flat(self) -> dict[str, Any]:
        """Dotted name -> value for every field."""
        return {name: getattr(getattr(self, sec), key)
                for name, (sec, key) in _field_index().items()}


@dataclass(frozen=True)
class FieldSpec:
    """Description of one dotted config key, for docs, ROS parameters and validation."""

    name: str
    type: Any
    default: Any
    help: str
    lo: float | None
    hi: float | None
    choices: tuple[Any, ...] | None


def _field_index() -> dict[str, tuple[str, str]]:
    out = {}
    for sec in fields(NoksrConfig):
        for f in fields(_section_type(sec.name)):
            out[f'{sec.name}.{f.name}'] = (sec.name, f.name)
    return out


def _section_type(name: str) -> type:
    return typing.get_type_hints(NoksrConfig)[name]


def field_specs() -> list[FieldSpec]:
    """Every dotted key of the schema with its type, default, help text and bounds."""
    specs = []
    for name, (sec, key) in _field_index().items():
        section_type = _section_type(sec)
        f = next(f for f in fields(section_type) if f.name == key)
        hint = typing.get_type_hints(section_type)[key]
        default = getattr(section_type(), key)
        specs.append(FieldSpec(name, hint, default, f.metadata['help'], f.metadata['lo'],
                               f.metadata['hi'], f.metadata['choices']))
    return specs


def _coerce(spec: FieldSpec, value: Any) -> Any:
    """Convert `value` to the field's type or raise ConfigError naming the key."""
    origin = typing.get_origin(spec.type)
    try:
        if origin is tuple:
            n = len(typing.get_args(spec.type))
            if isinstance(value, str):
                value = [v for v in value.replace(',', ' ').split()]
            items = tuple(float(v) for v in value)
            if len(items) != n:
                raise ValueError(f'expected {n} numbers, got {len(items)}')
            return items
        if spec.type is bool:
            if isinstance(value, str):
                if value.lower() in ('1', 'true', 'yes', 'on'):
                    return True
                if value.lower() in ('0', 'false', 'no', 'off'):
                    return False
                raise ValueError('expected true or false')
            if not isinstance(value, bool):
                raise ValueError('expected true or false')
            return value
        if spec.type is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError('expected an integer')
            return int(value)
        if spec.type is float:
            if isinstance(value, bool):
                raise ValueError('expected a number')
            return float(value)
        if spec.type is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError('expected a string')
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{spec.name}: invalid value {value!r} ({exc}); {spec.help}') from exc
    raise ConfigError(f'{spec.name}: unsupported type {spec.type}')


def validate_value(spec: FieldSpec, value: Any) -> Any:
    """Coerce and range-check one value; return the value to store."""
    value = _coerce(spec, value)
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f'{spec.name}: {value!r} is not one of {list(spec.choices)}')
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, float) and v != v:
            raise ConfigError(f'{spec.name}: NaN is not allowed')
        if spec.lo is not None and isinstance(v, (int, float)) and v < spec.lo:
            raise ConfigError(f'{spec.name}: {value!r} is below the minimum {spec.lo}')
        if spec.hi is not None and isinstance(v, (int, float)) and v > spec.hi:
            raise ConfigError(f'{spec.name}: {value!r} is above the maximum {spec.hi}')
    return value


def apply_overrides(config: NoksrConfig, values: dict[str, Any]) -> NoksrConfig:
    """Apply `{dotted name: value}`; unknown names raise ConfigError listing the valid ones."""
    specs = {s.name: s for s in field_specs()}
    per_section: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if name not in specs:
            raise ConfigError(f'unknown config key {name!r}; valid keys: {", ".join(specs)}')
        sec, key = name.split('.', 1)
        per_section.setdefault(sec, {})[key] = validate_value(specs[name], value)
    for sec, changes in per_section.items():
        config = replace(config, **{sec: replace(getattr(config, sec), **changes)})
    _check_consistency(config)
    return config


def _check_consistency(config: NoksrConfig) -> None:
    """Cross-field rules that a single bound cannot express."""
    ratio = config.mapping.segment_size_m / config.meshing.voxel_size_m
    if abs(ratio - round(ratio)) > 1e-6:
        raise ConfigError('mapping.segment_size_m must be a whole multiple of '
                          f'meshing.voxel_size_m (got {config.mapping.segment_size_m} and '
                          f'{config.meshing.voxel_size_m})')
    if config.ingest.min_range_m >= config.ingest.max_range_m:
        raise ConfigError('ingest.min_range_m must be below ingest.max_range_m')
    if 0 < config.normals.segment_knn < 3:
        raise ConfigError('normals.segment_knn must be 0 (off) or at least 3, got '
                          f'{config.normals.segment_knn}')
    if config.normals.segment_knn == 0 and not config.normals.scan_pca:
        raise ConfigError('normals.segment_knn 0 (no per-segment normals) needs '
                          'normals.scan_pca true: otherwise no point would get a normal')


def flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    """Nested mapping -> dotted names; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def read_yaml_values(path: str | Path) -> dict[str, Any]:
    """Dotted name -> value from a YAML file (nested, dotted, or ROS `/**: ros__parameters:`)."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f'cannot read config file {path}: {exc}') from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f'config file {path} is not valid YAML: {exc}') from exc
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f'config file {path}: expected a mapping at the top level')
    if len(tree) == 1:
        (only_key, only_value), = tree.items()
        if isinstance(only_value, dict) and 'ros__parameters' in only_value:
            tree = only_value['ros__parameters'] or {}
    return flatten(tree)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                ignore_prefixes: tuple[str, ...] = ()) -> NoksrConfig:
    """Defaults, then the YAML file, then overrides; keys under `ignore_prefixes` are skipped."""
    values = read_yaml_values(path) if path is not None else {}
    values = {k: v for k, v in values.items() if not k.startswith(ignore_prefixes)}
    values.update(overrides or {})
    return apply_overrides(NoksrConfig(), values)


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """`['mapping.halo_m=2', ...]` -> `{'mapping.halo_m': 2}` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if '=' not in item:
            raise ConfigError(f'override {item!r} must look like key=value')
        key, raw = item.split('=', 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ''
        except yaml.YAMLError as exc:
            raise ConfigError(f'override {item!r}: value is not parseable: {exc}') from exc
    return out

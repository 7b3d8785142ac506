"""The config schema: YAML loading, dotted overrides, validation errors that name the key."""

from pathlib import Path

import pytest

from noksr_ros.config import (
    NoksrConfig,
    field_specs,
    load_config,
    parse_set_options,
    read_yaml_values,
)
from noksr_ros.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_every_field_has_help_and_a_unit_or_is_unitless_by_nature():
    unitless = ('max_points', 'knn', 'curve', 'checkpoint', 'device', 'neighbours', 'store_dir',
                'topic', 'frame', 'max_scan_bytes', 'max_segments_per_update', 'trim_source',
                'pose_source', 'queue_size', 'qos', 'marker_ns', 'color_mode', 'output_dir',
                'max_message_bytes', 'growth', 'ratio')
    mixed_units = ('base_to_lidar_xyz_rpy',)  # metres and degrees, said in the help text
    for spec in field_specs():
        assert spec.help.endswith('.'), spec.name
        key = spec.name.split('.', 1)[1]
        units = ('_m', '_s', '_deg', '_hz', '_voxels', '_mps', '_dps')
        switch = spec.type is bool  # an on/off switch has no unit
        assert (key.endswith(units) or any(u in key for u in unitless) or key in mixed_units
                or switch), key


def test_nested_dotted_and_ros_yaml_give_the_same_config(tmp_path):
    nested = tmp_path / 'nested.yaml'
    nested.write_text('mapping:\n  segment_size_m: 6.4\n  halo_m: 0.5\nmodel: {device: cuda}\n')
    dotted = tmp_path / 'dotted.yaml'
    dotted.write_text('mapping.segment_size_m: 6.4\nmapping.halo_m: 0.5\nmodel.device: cuda\n')
    ros = tmp_path / 'ros.yaml'
    ros.write_text('/**:\n  ros__parameters:\n    mapping.segment_size_m: 6.4\n'
                   '    mapping:\n      halo_m: 0.5\n    model.device: cuda\n'
                   '    ros.lidar_topic: /x\n')
    configs = [load_config(p) for p in (nested, dotted, ros)]
    assert configs[2].ros.lidar_topic == '/x'  # ROS-only keys are part of the schema too
    configs[2] = configs[2].with_overrides({'ros.lidar_topic': '/carla/ego_vehicle/lidar'})
    assert configs[0] == configs[1] == configs[2]
    assert configs[0].mapping.segment_size_m == 6.4 and configs[0].model.device == 'cuda'
    assert configs[0] != NoksrConfig()


def test_overrides_win_over_file_and_are_typed(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('mapping: {halo_m: 0.5}\n')
    cfg = load_config(path, parse_set_options(['mapping.halo_m=2', 'ingest.ego_box_m=1,2,3,4,5,6',
                                               'mapping.max_points_per_cell=7']))
    assert cfg.mapping.halo_m == 2.0 and isinstance(cfg.mapping.halo_m, float)
    assert cfg.ingest.ego_box_m == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert cfg.mapping.max_points_per_cell == 7


@pytest.mark.parametrize('overrides, needle', [
    ({'mapping.segment_size': 1}, 'valid keys'),
    ({'mapping.halo_m': -1}, 'below the minimum'),
    ({'mapping.halo_m': 'far'}, 'mapping.halo_m'),
    ({'mapping.curve': 'peano'}, "['z', 'hilbert']"),
    ({'mapping.max_points_per_cell': 2.5}, 'integer'),
    ({'ingest.ego_box_m': [1, 2]}, 'expected 6 numbers'),
    ({'normals.max_incidence_deg': float('nan')}, 'NaN'),
    ({'mapping.segment_size_m': 1.25}, 'whole multiple'),
    ({'ingest.min_range_m': 90.0}, 'below ingest.max_range_m'),
])
def test_invalid_values_raise_config_error_naming_the_problem(overrides, needle):
    with pytest.raises(ConfigError, match=None) as info:
        NoksrConfig().with_overrides(overrides)
    assert needle in str(info.value)


@pytest.mark.parametrize('text, needle', [
    ('mapping: [1, 2\n', 'not valid YAML'),
    ('- 1\n- 2\n', 'mapping at the top level'),
])
def test_bad_yaml_is_a_clear_error(tmp_path, text, needle):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_yaml_values(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_missing_file_and_bad_override_syntax():
    with pytest.raises(ConfigError, match='cannot read'):
        load_config('/nonexistent/noksr.yaml')
    with pytest.raises(ConfigError, match='key=value'):
        parse_set_options(['mapping.halo_m'])


def test_shipped_config_files_are_valid():
    files = sorted((REPO / 'config').glob('*.yaml'))
    assert files, 'config/ must ship at least one YAML file'
    for path in files:
        load_config(path)


def test_default_yaml_states_the_code_defaults():
    # config/default.yaml says it holds the core defaults: it must not drift from the code
    stated = read_yaml_values(REPO / 'config' / 'default.yaml')
    assert stated
    defaults = NoksrConfig()
    for name, value in stated.items():
        section, key = name.split('.', 1)
        current = getattr(getattr(defaults, section), key)
        assert current == (tuple(value) if isinstance(value, list) else value), name

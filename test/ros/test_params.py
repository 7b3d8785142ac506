"""Node parameters: every config key declared with its description, validated at start-up."""

import os
from pathlib import Path
import random
import subprocess
import sys

import pytest
import rclpy
from rclpy.parameter import Parameter

from noksr_ros.config import field_specs, load_config
from noksr_ros.errors import ConfigError
from noksr_ros.ros.params import RUNTIME_KEYS, accept_runtime_changes, declare_config_parameters

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def context():
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=random.randint(150, 230))
    yield ctx
    ctx.try_shutdown()


def make_node(context, **values):
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    return rclpy.create_node('noksr_params_test', context=context, parameter_overrides=overrides)


def test_every_key_is_declared_with_its_description(context):
    node = make_node(context, **{'mapping.segment_size_m': 12, 'ros.queue_size': 5,
                                 'ros.color_z_range_m': [0.0, 5.0]})
    config = declare_config_parameters(node)
    assert config.mapping.segment_size_m == 12.0  # an int for a float key is fine
    assert config.ros.queue_size == 5 and config.ros.color_z_range_m == (0.0, 5.0)
    for spec in field_specs():
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.description.startswith(spec.help)
        assert descriptor.read_only == (spec.name not in RUNTIME_KEYS)
    node.destroy_node()


@pytest.mark.parametrize('values, match', [
    ({'ros.queue_sise': 3}, 'unknown parameter.*ros.queue_sise'),
    ({'ros.queue_size': 0}, 'ros.queue_size.*below the minimum'),
    ({'ros.input_qos': 'fast'}, 'ros.input_qos.*not one of'),
    ({'mapping.segment_size_m': 12.85}, 'whole multiple'),
])
def test_bad_parameters_are_one_clear_error(context, values, match):
    node = make_node(context, **values)
    with pytest.raises(ConfigError, match=match):
        declare_config_parameters(node)
    node.destroy_node()


def test_node_refuses_to_start_with_a_misspelt_parameter(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), ROS_LOG_DIR=str(tmp_path),
               ROS_DOMAIN_ID=str(random.randint(150, 230)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    run = subprocess.run([sys.executable, '-m', 'noksr_ros.ros.node', '--ros-args', '-p',
                          'ros.lidar_topik:=/x'], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    assert 'unknown parameter(s) ros.lidar_topik' in run.stdout + run.stderr


def test_shipped_parameter_files_load():
    for name in ('carla.yaml', 'default.yaml'):
        config = load_config(ROOT / 'config' / name)
        assert config.ros.lidar_topic == '/carla/ego_vehicle/lidar'
    carla = load_config(ROOT / 'config' / 'carla.yaml')
    assert carla.model.device == 'auto' and carla.ros.pose_source == 'auto'


def test_run_time_changes_are_validated_and_a_refused_one_changes_nothing(context):
    node = make_node(context)
    state = {'config': declare_config_parameters(node), 'applied': 0}

    def apply(config):
        state['config'] = config
        state['applied'] += 1

    accept_runtime_changes(node, lambda: state['config'], apply)
    # A valid change of a run-time key reaches the config.
    ok = node.set_parameters([Parameter('reconstruct.debounce_s', value=2)])[0]
    assert ok.successful and state['config'].reconstruct.debounce_s == 2.0
    assert state['applied'] == 1
    # Out of range: refused with the schema's reason; parameter and config unchanged.
    bad = node.set_parameters([Parameter('ros.update_rate_hz', value=-1.0)])[0]
    assert not bad.successful and 'ros.update_rate_hz' in bad.reason
    assert node.get_parameter('ros.update_rate_hz').value == 2.0
    assert state['config'].ros.update_rate_hz == 2.0 and state['applied'] == 1
    # A key that shapes the map is read-only.
    fixed = node.set_parameters([Parameter('mapping.segment_size_m', value=6.4)])[0]
    assert not fixed.successful and 'read-only' in fixed.reason
    assert node.get_parameter('mapping.segment_size_m').value == 12.8
    # Several at once are all-or-nothing.
    both = node.set_parameters_atomically([Parameter('ros.queue_size', value=3),
                                            Parameter('ros.update_rate_hz', value=0.0)])
    assert not both.successful and state['config'].ros.queue_size == 10
    assert node.get_parameter('ros.queue_size').value == 10
    node.destroy_node()

"""
ROS parameters of the node: every dotted key of the core config, declared with its help text.

Values are declared with dynamic typing and validated by the core schema, so `12` for a float
key is fine and a bad value or an unknown key is one clear `ConfigError` at start-up.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from noksr_ros.config import FieldSpec, NoksrConfig, apply_overrides, field_specs
from noksr_ros.errors import ConfigError

# Parameters every rclpy node may carry that are not ours.
FOREIGN_PARAMETERS = ('use_sim_time', 'start_type_description_service')
FOREIGN_PREFIXES = ('qos_overrides.',)


def describe(spec: FieldSpec) -> str:
    """Help text plus the valid range or choices, for `ros2 param describe`."""
    extra = []
    if spec.choices:
        extra.append('one of ' + ', '.join(map(str, spec.choices)))
    if spec.lo is not None:
        extra.append(f'min {spec.lo}')
    if spec.hi is not None:
        extra.append(f'max {spec.hi}')
    return spec.help + (f' ({"; ".join(extra)})' if extra else '')


def ros_value(value: Any) -> Any:
    """A config default as a ROS parameter value (tuples become float arrays)."""
    return [float(v) for v in value] if isinstance(value, tuple) else value


def declare_config_parameters(node: Node) -> NoksrConfig:
    """Declare every config key on `node` and return the validated config they give."""
    unknown = sorted(set(_override_names(node)) - {s.name for s in field_specs()})
    if unknown:
        valid = ', '.join(s.name for s in field_specs())
        raise ConfigError(f'unknown parameter(s) {", ".join(unknown)}; valid: {valid}')
    values = {}
    for spec in field_specs():
        descriptor = ParameterDescriptor(description=describe(spec), dynamic_typing=True,
                                         read_only=True)
        value = node.declare_parameter(spec.name, ros_value(spec.default), descriptor).value
        values[spec.name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return apply_overrides(NoksrConfig(), values)


def _override_names(node: Node) -> list[str]:
    """
    Names given to the node from parameter files or `-p` arguments.

    rclpy keeps them in `Node._parameter_overrides` (Humble to Kilted); it has no public
    accessor, and without this check a misspelt key in a YAML file would be silently ignored.
    """
    names = getattr(node, '_parameter_overrides', {}) or {}
    return [n for n in names
            if n not in FOREIGN_PARAMETERS and not n.startswith(FOREIGN_PREFIXES)]

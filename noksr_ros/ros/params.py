"""
ROS parameters of the node: every dotted key of the core config, declared with its help text.

Values are declared with dynamic typing and validated by the core schema, so `12` for a float
key is fine and a bad value or an unknown key is one clear `ConfigError` at start-up. The keys in
interface.RUNTIME_KEYS are read afresh at each use, so they may change while the node runs; a
change is validated by the same schema and refused with the reason, changing nothing. The rest
are read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from noksr_ros.config import NoksrConfig, apply_overrides, field_specs
from noksr_ros.errors import ConfigError
from noksr_ros.ros.interface import RUNTIME_KEYS, parameter_help

# Parameters every rclpy node may carry that are not ours.
FOREIGN_PARAMETERS = ('use_sim_time', 'start_type_description_service')
FOREIGN_PREFIXES = ('qos_overrides.',)



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
        descriptor = ParameterDescriptor(description=parameter_help(spec), dynamic_typing=True,
                                         read_only=spec.name not in RUNTIME_KEYS)
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


def runtime_change(config: NoksrConfig, params: list[Parameter]) -> tuple[NoksrConfig | None, str]:
    """`config` with `params` applied, or (None, why) when one of them may not be applied."""
    ours = {s.name for s in field_specs()}
    values = {}
    for param in params:
        if param.name not in ours:
            continue  # use_sim_time and the like are rclpy's business
        if param.name not in RUNTIME_KEYS:
            return None, (f'{param.name} is read-only while the node runs; changeable: '
                          f'{", ".join(sorted(RUNTIME_KEYS))}')
        value = param.value
        values[param.name] = tuple(value) if isinstance(value, (list, tuple)) else value
    try:
        return apply_overrides(config, values), ''
    except ConfigError as exc:
        return None, str(exc)


def accept_runtime_changes(node: Node, current: Callable[[], NoksrConfig],
                           apply: Callable[[NoksrConfig], None]) -> None:
    """Validate every parameter change on `node`; `apply` gets the new config when it is valid."""
    def on_set(params: list[Parameter]) -> SetParametersResult:
        config, reason = runtime_change(current(), params)
        if config is None:
            return SetParametersResult(successful=False, reason=reason)
        apply(config)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)

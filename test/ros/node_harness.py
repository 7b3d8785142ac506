"""
Run the real node in its own process and talk to it from the test process over loopback DDS.

`NodeProcess` starts `python -m noksr_ros.ros.node` with a parameter file; `GraphProbe` is the
test side: a MeshCollector on `/noksr/mesh`, the newest `/diagnostics` values, service calls and
raw publishers for bad traffic.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger

from noksr_ros.ros.live_run import write_node_params as write_params  # noqa: F401 - re-export
from noksr_ros.ros.mesh_collector import MeshCollector
from noksr_ros.ros.node import DIAGNOSTIC_NAME

ROOT = Path(__file__).resolve().parents[2]


def ros_env(domain_id: int, log_dir: Path) -> dict[str, str]:
    """Environment of a child ROS process: our domain, loopback only, this source tree."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               ROS_LOG_DIR=str(log_dir), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED='1')
    return env


class NodeProcess:
    """The `noksr` node as a child process with its output in a log file."""

    def __init__(self, params_file: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, 'w')  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'noksr_ros.ros.node', '--ros-args', '--params-file',
             str(params_file)], env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        """Everything the node printed so far."""
        return self.log_path.read_text()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGINT (like Ctrl-C), wait, return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class GraphProbe:
    """Test-side rclpy node: mesh collector, diagnostics, service calls, publishers."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('noksr_test_probe', context=self.context)
        self.collector = MeshCollector(self.node)
        self.diagnostics: dict[str, str] = {}
        self.diagnostic_levels: list[int] = []
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == DIAGNOSTIC_NAME:
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostic_levels.append(int.from_bytes(status.level, 'little')
                                              if isinstance(status.level, bytes)
                                              else int(status.level))

    def stat(self, key: str, default: int = 0) -> int:
        """An integer diagnostics value (0 when absent)."""
        return int(float(self.diagnostics.get(key, default)))

    def spin_until(self, done, timeout_s: float, what: str, detail=None) -> None:
        """Spin until `done()` is true; fail naming `what` (and `detail()`) on timeout."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                extra = f'; {detail()}' if detail is not None else ''
                raise AssertionError(f'timed out after {timeout_s} s waiting for {what}; '
                                     f'diagnostics: {self.diagnostics}{extra}')
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        """Spin for a while (let messages arrive)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def call_trigger(self, service: str, timeout_s: float = 20.0) -> Trigger.Response:
        """Call a std_srvs/Trigger service and return its response."""
        client = self.node.create_client(Trigger, service)
        self.spin_until(client.service_is_ready, timeout_s, f'service {service}')
        future = client.call_async(Trigger.Request())
        self.spin_until(future.done, timeout_s, f'the answer of {service}')
        self.node.destroy_client(client)
        return future.result()

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

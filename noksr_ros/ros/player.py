"""
Replay a recorded or simulated bag on its topics with its original timing (`noksr play`).

For users without CARLA: the messages are published as the CDR bytes stored in the bag (no
decoding), in log-time order, each at its offset from the first message divided by `rate`.
Topics whose message type is not importable here (e.g. `tf2_msgs` with the pip wheels) are
skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import importlib
from pathlib import Path
import threading
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from noksr_ros.errors import BagError
from noksr_ros.io.bag import open_bag

STATIC_TOPICS = ('/tf_static',)
DISCOVERY_SETTLE_S = 1.0
# After the last message, how long to wait for the subscribers to acknowledge everything.
ACK_WAIT_S = 5.0


def message_class(msgtype: str) -> type | None:
    """The rclpy class of 'pkg/msg/Name', or None when its package is not installed."""
    try:
        package, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ValueError, ImportError, AttributeError):
        return None


@dataclass
class PlayStats:
    """Messages published per topic, topics skipped (type not importable), seconds played."""

    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


class BagPlayer:
    """Publishes the messages of one bag from an existing node."""

    def __init__(self, node: Node, path: str | Path, *, rate: float = 1.0,
                 topics: list[str] | None = None) -> None:
        if not rate > 0:
            raise ValueError(f'rate must be positive, got {rate}')
        self.node, self.path, self.rate = node, Path(path), rate
        self.only = set(topics) if topics else None
        self.stats = PlayStats()
        self.publishers: dict[str, object] = {}

    def _publisher(self, topic: str, msgtype: str) -> object | None:
        if topic in self.publishers:
            return self.publishers[topic]
        cls = message_class(msgtype)
        publisher = None
        if cls is None:
            self.stats.skipped_topics[topic] = msgtype
            self.node.get_logger().warning(f'not playing {topic}: message type {msgtype} is not '
                                           'installed here')
        else:
            durability = (DurabilityPolicy.TRANSIENT_LOCAL if topic in STATIC_TOPICS else
                          DurabilityPolicy.VOLATILE)
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=durability)
            publisher = self.node.create_publisher(cls, topic, qos)
        self.publishers[topic] = publisher
        return publisher

    def prepare(self) -> list[str]:
        """Create the publishers (so subscribers can match before playing); topics to play."""
        with open_bag(self.path) as reader:
            for connection in reader.connections:
                if self.only is None or connection.topic in self.only:
                    self._publisher(connection.topic, connection.msgtype)
        return [t for t, p in self.publishers.items() if p is not None]

    def play(self, stop: threading.Event | None = None,
             on_message: Callable[[str, int], None] | None = None) -> PlayStats:
        """Publish every message at its time; `on_message(topic, log_time_ns)` after each."""
        self.prepare()
        t0 = time.monotonic()
        first_ns = None
        with open_bag(self.path) as reader:
            connections = [c for c in reader.connections
                           if self.publishers.get(c.topic) is not None]
            try:
                for connection, log_ns, raw in reader.messages(connections=connections):
                    if stop is not None and stop.is_set():
                        break
                    first_ns = log_ns if first_ns is None else first_ns
                    delay = t0 + (log_ns - first_ns) * 1e-9 / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self.publishers[connection.topic].publish(bytes(raw))
                    topic = connection.topic
                    self.stats.published[topic] = self.stats.published.get(topic, 0) + 1
                    if on_message is not None:
                        on_message(topic, log_ns)
            except BagError:
                raise
            except Exception as exc:  # rosbags raises many types for a damaged file
                raise BagError(f'bag {self.path} is damaged: {exc}') from exc
        self._wait_acknowledged()
        self.stats.wall_s = time.monotonic() - t0
        return self.stats

    def _wait_acknowledged(self) -> None:
        """
        Let reliable subscribers acknowledge the last messages before the caller shuts down.

        A publisher destroyed right after its last publish loses what is still in flight (CI lost
        the odometry after the last scan, so that scan never got its pose).
        """
        from rclpy.duration import Duration

        deadline = time.monotonic() + ACK_WAIT_S
        for publisher in self.publishers.values():
            if publisher is not None:
                left = max(0.0, deadline - time.monotonic())
                publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))


def run_player(path: str | Path, *, rate: float = 1.0, topics: list[str] | None = None,
               wait_topic: str = '', wait_s: float = 0.0) -> PlayStats:
    """
    Play `path` from a node of its own (its own rclpy context), then shut down.

    With `wait_topic` (one topic or several, comma-separated), playing starts once each has a
    subscriber (at most `wait_s`), so a node started at the same time misses nothing.
    """
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('noksr_player', context=context)
    try:
        player = BagPlayer(node, path, rate=rate, topics=topics)
        player.prepare()
        waited = [player.publishers.get(t) for t in wait_topic.split(',') if t]
        waited = [p for p in waited if p is not None]
        deadline = time.monotonic() + wait_s
        while any(p.get_subscription_count() == 0 for p in waited) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        if waited:
            # The publisher sees the subscription before the subscriber has matched the
            # publisher; samples sent in between are lost to it (seen in CI). Let both sides match.
            time.sleep(DISCOVERY_SETTLE_S)
        return player.play()
    finally:
        node.destroy_node()
        context.try_shutdown()

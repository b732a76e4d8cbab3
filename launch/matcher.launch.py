"""Launch the coarse_loftr_ros matcher node.

Examples:

  Stereo camera (two image topics, paired by time stamp):
    ros2 launch coarse_loftr_ros matcher.launch.py mode:=stereo \\
        image0:=/stereo/left/image_rect image1:=/stereo/right/image_rect

  Mono camera (each frame against the previous one), on a Jetson:
    ros2 launch coarse_loftr_ros matcher.launch.py mode:=sequence profile:=jetson \\
        image:=/camera/image_raw

  Compressed images, in a namespace, with your own model:
    ros2 launch coarse_loftr_ros matcher.launch.py mode:=sequence image_transport:=compressed \\
        image:=/camera/image_raw namespace:=front model:=/models/student.onnx

  Replaying a bag (simulated time from the bag's clock):
    ros2 bag play my_recording --clock
    ros2 launch coarse_loftr_ros matcher.launch.py use_sim_time:=true mode:=stereo \\
        image0:=/cam0/image_raw image1:=/cam1/image_raw

Matches are published on <namespace>/<node_name>/matches, the overlay on
<namespace>/<node_name>/overlay (watch it with rqt_image_view or Foxglove).
Arguments left empty keep the value from the parameters file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "coarse_loftr_ros"

ARGUMENTS = [
    ("profile", "desktop", "parameters profile in config/: desktop (ONNX Runtime, CPU) or jetson (TensorRT)"),
    ("params_file", "", "a parameters YAML file to use instead of the profile"),
    ("mode", "", "stereo or sequence (empty: from the parameters file)"),
    ("model", "", "model file: .onnx, .engine or .pt/.ckpt (empty: from the parameters file)"),
    ("backend", "", "auto, onnxruntime, tensorrt or torch (empty: from the parameters file)"),
    ("image_transport", "", "raw or compressed (empty: from the parameters file)"),
    ("namespace", "", "namespace of the node"),
    ("node_name", "matcher", "name of the node"),
    ("image0", "image0", "stereo mode: topic of camera 0 (sensor_msgs/Image)"),
    ("image1", "image1", "stereo mode: topic of camera 1 (sensor_msgs/Image)"),
    ("image", "image", "sequence mode: topic of the camera (sensor_msgs/Image)"),
    ("camera_info0", "camera_info0", "stereo mode, use_camera_info: sensor_msgs/CameraInfo of camera 0"),
    ("camera_info1", "camera_info1", "stereo mode, use_camera_info: sensor_msgs/CameraInfo of camera 1"),
    ("camera_info", "camera_info", "sequence mode, use_camera_info: sensor_msgs/CameraInfo of the camera"),
    ("use_sim_time", "false", "true when replaying a bag with --clock"),
    ("log_level", "info", "debug, info, warn, error or fatal"),
    ("fastdds_profile", "", "Fast DDS XML profile of the node: empty = the environment's, else config/fastdds_shm_large.xml "
     "(8 MiB shared memory: raw frames over 512 KiB arrive whole); none = leave the environment as it is"),
]

# Fast DDS 3 (Kilted on) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2 (Humble, Jazzy) FASTRTPS_DEFAULT_PROFILES_FILE.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")

# Launch arguments that override a node parameter when they are not empty.
PARAMETER_ARGUMENTS = ("mode", "model", "backend", "image_transport")


def _node(context):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    params_file = value("params_file") or os.path.join(
        get_package_share_directory(PACKAGE), "config", f"{value('profile')}.yaml"
    )
    overrides = {name: value(name) for name in PARAMETER_ARGUMENTS if value(name)}
    overrides["use_sim_time"] = value("use_sim_time").lower() in ("true", "1", "yes")
    remappings = []
    for topic in ("image0", "image1", "image"):
        remappings += [(topic, value(topic)), (f"{topic}/compressed", f"{value(topic)}/compressed")]
    remappings += [(topic, value(topic)) for topic in ("camera_info0", "camera_info1", "camera_info")]
    profile, environment = value("fastdds_profile"), {}
    if profile != "none" and (profile or not any(os.environ.get(name) for name in PROFILE_VARIABLES)):
        variable = PROFILE_VARIABLES[os.environ.get("ROS_DISTRO") in ("humble", "jazzy")]
        environment[variable] = profile or os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds_shm_large.xml")
    return [
        Node(
            package=PACKAGE,
            executable="matcher_node",
            name=value("node_name"),
            namespace=value("namespace"),
            parameters=[params_file, overrides],
            remappings=remappings,
            arguments=["--ros-args", "--log-level", value("log_level")],
            additional_env=environment,
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_node)])

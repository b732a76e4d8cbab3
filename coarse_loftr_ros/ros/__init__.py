"""The ROS layer: the matcher node, its parameters and diagnostics, image message conversion,
pairing, and the MatchArray / CameraInfo helpers.

The only layer that imports rclpy (in ``node.py``, guarded, so the rest imports without ROS).
Imports from ``matching``, ``backends`` and the shared top-level modules only.
"""

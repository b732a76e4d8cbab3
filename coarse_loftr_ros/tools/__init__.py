"""Offline tools: ``replay`` (rosbag2, video or image folder through the node's code path,
without ROS), ``report`` (its HTML/CSV report), ``bench`` (timing against ORB and SIFT) and
``frames`` (a recording written out as numbered frames).

The top layer below the command line: may import ``ros``, ``matching``, ``backends`` and the
shared top-level modules.
"""

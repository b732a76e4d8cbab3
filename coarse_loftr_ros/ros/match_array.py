"""``coarse_loftr_ros/msg/MatchArray`` field values from a ``MatchResult``, ROS-free.

Public API:

- ``match_array_fields(result, header0, header1, latency_ms=0.0, arrays="array",
  camera_info0=None, camera_info1=None) -> dict``: the message fields by name, ready for
  ``MatchArray(**fields)``; the two ``sensor_msgs/CameraInfo`` objects are passed through (the
  caller makes a default, all-zero one where there is no calibration: rclpy refuses ``None``). With ``arrays="array"``
  (rclpy) the float32 / int32 arrays are ``array.array('f')`` / ``array.array('i')``
  (rclpy on Humble rejects numpy arrays for these fields); with ``arrays="numpy"``
  (``rosbags``) they are numpy arrays.
- ``result_from_match_array(msg) -> MatchResult``: the reverse, for consumers and tests.
- ``match_array_definition() -> str``: the text of ``msg/MatchArray.msg``.
- ``match_array_typestore(distro="humble")``: a ``rosbags`` typestore of that ROS 2
  distribution (which has ``sensor_msgs/msg/CameraInfo``) with ``coarse_loftr_ros/msg/MatchArray``
  registered from the .msg file, for real CDR (de)serialisation and rosbag2 files without ROS.
- ``rosbags_header(typestore, stamp_ns, frame_id)``, ``rosbags_camera_info(typestore, header=None,
  camera=None)`` (a ``PinholeCamera``; ``None``: the default, all-zero CameraInfo) and
  ``rosbags_match_array(typestore, result, header0, header1, latency_ms=0.0, camera_info0=None,
  camera_info1=None)`` (``None``: a default CameraInfo): build rosbags message objects.

Headers are passed through as given: ``header`` is image 1's header (its stamp and
frame), ``header0`` / ``header1`` those of the two source images. Coordinates keep the
``MatchResult`` convention (original image pixels, x right, y down, pixel centres at
integer coordinates) and are flattened to [x0, y0, x1, y1, ...].
"""

from __future__ import annotations

import array
import os
import site
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CoarseLoftrError
from ..matching.result import MatchResult

MATCH_ARRAY_TYPENAME = "coarse_loftr_ros/msg/MatchArray"
_PACKAGE = "coarse_loftr_ros"


def _check_result(result: MatchResult) -> int:
    n = len(result)
    shapes = {
        "keypoints0": (result.keypoints0.shape, (n, 2)),
        "keypoints1": (result.keypoints1.shape, (n, 2)),
        "cells0": (result.cells0.shape, (n,)),
        "cells1": (result.cells1.shape, (n,)),
    }
    for name, (shape, expected) in shapes.items():
        if tuple(shape) != expected:
            raise ValueError(f"MatchResult.{name} has shape {tuple(shape)}, expected {expected} for {n} matches")
    return n


def match_array_fields(
    result: MatchResult,
    header0: Any,
    header1: Any,
    latency_ms: float = 0.0,
    arrays: Literal["array", "numpy"] = "array",
    camera_info0: Any = None,
    camera_info1: Any = None,
) -> dict[str, Any]:
    """The MatchArray fields for ``result`` between images with headers ``header0``, ``header1``.

    ``latency_ms``: time from receiving the pair to publishing, in milliseconds.
    ``arrays``: ``"array"`` for rclpy (``array.array``), ``"numpy"`` for rosbags.
    ``camera_info0``/``camera_info1``: the ``sensor_msgs/CameraInfo`` of each image's camera,
    passed through as given.
    """
    if arrays not in ("array", "numpy"):
        raise ValueError(f"arrays must be 'array' or 'numpy', got {arrays!r}")
    _check_result(result)
    keypoints0 = np.ascontiguousarray(result.keypoints0, dtype=np.float32).reshape(-1)
    keypoints1 = np.ascontiguousarray(result.keypoints1, dtype=np.float32).reshape(-1)
    confidence = np.ascontiguousarray(result.confidence, dtype=np.float32).reshape(-1)
    cells0 = np.ascontiguousarray(result.cells0, dtype=np.int32).reshape(-1)
    cells1 = np.ascontiguousarray(result.cells1, dtype=np.int32).reshape(-1)
    if arrays == "array":
        # array('i') is 4 bytes on every platform ROS 2 supports; rclpy uses it for int32[].
        keypoints0, keypoints1, confidence = (array.array("f", a.tobytes()) for a in (keypoints0, keypoints1, confidence))
        cells0, cells1 = (array.array("i", a.tobytes()) for a in (cells0, cells1))
    return {
        "header": header1,
        "header0": header0,
        "header1": header1,
        "image0_width": int(result.image0_size[0]),
        "image0_height": int(result.image0_size[1]),
        "image1_width": int(result.image1_size[0]),
        "image1_height": int(result.image1_size[1]),
        "grid_width": int(result.grid_size[0]),
        "grid_height": int(result.grid_size[1]),
        "keypoints0": keypoints0,
        "keypoints1": keypoints1,
        "confidence": confidence,
        "cells0": cells0,
        "cells1": cells1,
        "model": str(result.model),
        "backend": str(result.backend),
        "latency_ms": float(latency_ms),
        "camera_info0": camera_info0,
        "camera_info1": camera_info1,
    }


def result_from_match_array(msg: Any) -> MatchResult:
    """A ``MatchResult`` from a MatchArray message (rclpy or rosbags) or its field dict."""
    get = msg.__getitem__ if isinstance(msg, dict) else lambda name: getattr(msg, name)
    keypoints0 = np.asarray(get("keypoints0"), dtype=np.float32).reshape(-1, 2)
    keypoints1 = np.asarray(get("keypoints1"), dtype=np.float32).reshape(-1, 2)
    confidence = np.asarray(get("confidence"), dtype=np.float32).reshape(-1)
    result = MatchResult(
        keypoints0=keypoints0,
        keypoints1=keypoints1,
        confidence=confidence,
        cells0=np.asarray(get("cells0"), dtype=np.int32).reshape(-1),
        cells1=np.asarray(get("cells1"), dtype=np.int32).reshape(-1),
        image0_size=(int(get("image0_width")), int(get("image0_height"))),
        image1_size=(int(get("image1_width")), int(get("image1_height"))),
        grid_size=(int(get("grid_width")), int(get("grid_height"))),
        backend=str(get("backend")),
        model=str(get("model")),
    )
    _check_result(result)
    return result


def _definition_candidates() -> list[Path]:
    """Where msg/MatchArray.msg may be: source tree, pip prefix, ament install prefixes."""
    candidates = [Path(__file__).resolve().parents[1] / "msg" / "MatchArray.msg"]
    prefixes = [sys.prefix, site.getuserbase()] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates += [Path(prefix) / "share" / _PACKAGE / "msg" / "MatchArray.msg" for prefix in prefixes]
    return candidates


def match_array_definition() -> str:
    """The text of ``msg/MatchArray.msg`` (source checkout, pip install or ROS install)."""
    candidates = _definition_candidates()
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise CoarseLoftrError(
        "cannot find msg/MatchArray.msg (looked in " + ", ".join(str(p) for p in candidates) + "); "
        "reinstall coarse_loftr_ros or run from a source checkout"
    )


def match_array_typestore(distro: str = "humble") -> Any:
    """A rosbags typestore for ROS 2 ``distro`` with ``coarse_loftr_ros/msg/MatchArray`` added."""
    try:
        from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    except ImportError as error:
        raise CoarseLoftrError("MatchArray without ROS needs the rosbags library: pip install rosbags") from error
    store_name = f"ROS2_{distro.upper()}"
    if not hasattr(Stores, store_name):
        known = ", ".join(s.name[5:].lower() for s in Stores if s.name.startswith("ROS2_"))
        raise CoarseLoftrError(f"unknown ROS 2 distribution {distro!r}; rosbags knows: {known}")
    typestore = get_typestore(getattr(Stores, store_name))
    typestore.register(get_types_from_msg(match_array_definition(), MATCH_ARRAY_TYPENAME))
    return typestore


def rosbags_header(typestore: Any, stamp_ns: int, frame_id: str) -> Any:
    """A rosbags ``std_msgs/msg/Header`` with the stamp given in nanoseconds."""
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def rosbags_camera_info(typestore: Any, header: Any = None, camera: Any = None) -> Any:
    """A rosbags ``sensor_msgs/msg/CameraInfo``: of ``camera`` (a ``camera_info.PinholeCamera``),
    or the default one (all zero, no distortion model) when ``camera`` is ``None``."""
    from .camera_info import camera_info_fields

    types = typestore.types
    CameraInfo, RegionOfInterest = types["sensor_msgs/msg/CameraInfo"], types["sensor_msgs/msg/RegionOfInterest"]
    header = rosbags_header(typestore, 0, "") if header is None else header
    fields: dict[str, Any] = {"height": 0, "width": 0, "distortion_model": "", "d": [], "k": [0.0] * 9, "r": [0.0] * 9,
                              "p": [0.0] * 12}
    if camera is not None:
        fields = camera_info_fields(camera)
    arrays = {name: np.asarray(fields[name], dtype=np.float64) for name in ("d", "k", "r", "p")}
    return CameraInfo(header=header, height=fields["height"], width=fields["width"],
                      distortion_model=fields["distortion_model"], **arrays, binning_x=0, binning_y=0,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def rosbags_match_array(typestore: Any, result: MatchResult, header0: Any, header1: Any, latency_ms: float = 0.0,
                        camera_info0: Any = None, camera_info1: Any = None) -> Any:
    """A rosbags ``coarse_loftr_ros/msg/MatchArray`` object for ``result``; a ``None`` camera_info
    becomes the default (all-zero) CameraInfo."""
    MatchArray = typestore.types[MATCH_ARRAY_TYPENAME]
    camera_info0 = rosbags_camera_info(typestore) if camera_info0 is None else camera_info0
    camera_info1 = rosbags_camera_info(typestore) if camera_info1 is None else camera_info1
    return MatchArray(**match_array_fields(result, header0, header1, latency_ms, arrays="numpy",
                                           camera_info0=camera_info0, camera_info1=camera_info1))

"""Pinhole cameras as ``sensor_msgs/CameraInfo`` fields, and the checks the node makes, ROS-free.

Public API:

- ``PinholeCamera(width, height, fx, fy, cx, cy, distortion=(), distortion_model="plumb_bob")``:
  one calibrated camera; pixels of the full image, OpenCV convention (x right, y down, the
  centre of the top-left pixel at (0, 0)).
- ``load_cameras(path) -> dict[str, PinholeCamera]``: a ``cameras.json`` file. Either one
  camera (``{"fx": .., "fy": .., "cx": .., "cy": .., "width": .., "height": .., "distortion": null}``,
  the format of ``../shared/data/kitti_seq_dev/cameras.json``; returned under the key
  ``"camera"``) or one camera per name (``{"left": {...}, "right": {...}}``).
  ``distortion``: ``null`` or ``[]`` (none, e.g. rectified images), 5 values ``k1 k2 p1 p2 k3``
  (``plumb_bob``) or 8 (``rational_polynomial``). Other keys (``rate_hz``, ``model``:
  ``"pinhole"`` only) are allowed.
- ``camera_info_fields(camera) -> dict``: ``height``, ``width``, ``distortion_model``, ``d``,
  ``k``, ``r`` (identity) and ``p`` (``[K | 0]``) for ``CameraInfo(**fields)`` (rclpy) or
  the rosbags type.
- ``intrinsics(info) -> (K, D) | None``: the 3x3 camera matrix and the distortion vector of a
  ``CameraInfo`` message (rclpy or rosbags), ``None`` for a default one (all-zero K).
- ``size_matches(info, width, height) -> bool``: whether a CameraInfo is for images of this size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CoarseLoftrError

_DISTORTION_MODELS = {0: "plumb_bob", 5: "plumb_bob", 8: "rational_polynomial"}
_REQUIRED = ("fx", "fy", "cx", "cy", "width", "height")


class CameraFileError(CoarseLoftrError, ValueError):
    """A cameras.json that cannot be read or holds an invalid camera."""


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera: size in pixels, focal lengths and principal point in pixels, distortion."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()
    distortion_model: str = "plumb_bob"

    @property
    def matrix(self) -> np.ndarray:
        """K, 3x3 float64."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def _camera(entry: Any, where: str) -> PinholeCamera:
    if not isinstance(entry, dict):
        raise CameraFileError(f"{where}: a camera must be an object with {', '.join(_REQUIRED)}")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise CameraFileError(f"{where}: missing {', '.join(missing)}; a camera needs {', '.join(_REQUIRED)}")
    model = entry.get("model", "pinhole")
    if model != "pinhole":
        raise CameraFileError(f"{where}: camera model {model!r} is not supported; use \"pinhole\"")
    try:
        width, height = int(entry["width"]), int(entry["height"])
        fx, fy, cx, cy = (float(entry[key]) for key in ("fx", "fy", "cx", "cy"))
        distortion = tuple(float(v) for v in (entry.get("distortion") or ()))
    except (TypeError, ValueError) as error:
        raise CameraFileError(f"{where}: numbers expected ({error})") from error
    if width <= 0 or height <= 0 or not (fx > 0 and fy > 0) or not all(map(math.isfinite, (fx, fy, cx, cy, *distortion))):
        raise CameraFileError(f"{where}: width, height, fx and fy must be > 0 and every value finite")
    if len(distortion) not in _DISTORTION_MODELS:
        raise CameraFileError(
            f"{where}: distortion has {len(distortion)} values; give null, 5 (k1 k2 p1 p2 k3) or 8 (rational_polynomial)"
        )
    return PinholeCamera(width, height, fx, fy, cx, cy, distortion, _DISTORTION_MODELS[len(distortion)])


def load_cameras(path: str | Path) -> dict[str, PinholeCamera]:
    """The cameras of a cameras.json: ``{"camera": cam}`` for a single camera, else by name."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CameraFileError(f"cannot read cameras file {path}: {str(error).splitlines()[0]}") from error
    if isinstance(document, dict) and "fx" in document:
        return {"camera": _camera(document, str(path))}
    if not isinstance(document, dict) or not document:
        raise CameraFileError(f"{path}: expected one camera (fx, fy, cx, cy, width, height) or {{\"left\": {{...}}, \"right\": {{...}}}}")
    return {str(name): _camera(entry, f"{path} [{name}]") for name, entry in document.items()}


def camera_info_fields(camera: PinholeCamera) -> dict[str, Any]:
    """``sensor_msgs/CameraInfo`` fields (no header) of ``camera``; d, k, r, p as lists of floats."""
    k = camera.matrix
    p = np.hstack([k, np.zeros((3, 1))])
    return {
        "height": int(camera.height),
        "width": int(camera.width),
        "distortion_model": camera.distortion_model,
        "d": [float(v) for v in (camera.distortion or (0.0,) * 5)],
        "k": [float(v) for v in k.reshape(-1)],
        "r": [float(v) for v in np.eye(3).reshape(-1)],
        "p": [float(v) for v in p.reshape(-1)],
    }


def intrinsics(info: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(K 3x3, D) of a ``CameraInfo`` message, or ``None`` when K is all zero (no calibration)."""
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not np.any(k):
        return None
    return k, np.asarray(info.d, dtype=np.float64).reshape(-1)


def size_matches(info: Any, width: int, height: int) -> bool:
    """Whether ``info`` describes images of ``width`` x ``height`` pixels."""
    return int(info.width) == int(width) and int(info.height) == int(height)

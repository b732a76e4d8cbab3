"""Rotation and scale search: when an upright pair matches weakly, match image 1 turned by a few
angles, then scaled by two factors at the best angle, and keep the view that matches best.

The model's CNN is not rotation invariant: past about 25 degrees of in-plane rotation between
the images its matches fall apart (a hand-held camera, a robot arm, a drone banking). Turning
image 1 by the right angle before matching brings such a pair back into the range the model
knows; scaling it by ``SEARCH_SCALES`` does the same for zoom between the views (the model's
coarse cells tolerate about 1.4x). The search runs only when the upright match is weak
(``match_score`` below ``WEAK_MATCH_SCORE``), so consecutive video frames pay nothing; a pair
that triggers it costs ``1 + len(SEARCH_ANGLES) + len(SEARCH_SCALES)`` model runs.

Angles are degrees, counter-clockwise on the screen (OpenCV's ``getRotationMatrix2D``), about the
image centre; the warped image keeps the original size (corners cut off when turned or enlarged,
black borders when shrunk).
"""

from __future__ import annotations

import cv2
import numpy as np

SEARCH_ANGLES: tuple[float, ...] = (-30.0, 30.0, -60.0, 60.0)
"""Angles tried after the upright one; with the model's own tolerance they cover +-75 deg."""

SEARCH_SCALES: tuple[float, ...] = (0.6, 1.6)
"""Scale factors tried at the best angle after the angles (image 1 shrunk or enlarged about its centre)."""

WEAK_MATCH_SCORE = 0.2
"""Below this ``match_score`` an upright pair is searched (chosen on the development set)."""


def match_score(confidence: np.ndarray, cells: int) -> float:
    """How well a pair matched: the summed confidence of its matches per coarse cell of the
    smaller image (0: nothing matched; at most 1)."""
    return float(np.sum(confidence, dtype=np.float64)) / max(cells, 1)


def rotate_image(image: np.ndarray, angle: float, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Turn an HxW image by ``angle`` degrees and scale it by ``scale`` about its centre,
    keeping its size.

    Returns the warped image and the 2x3 affine that maps its pixels back to the original's.
    """
    height, width = image.shape[:2]
    forward = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, scale)
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(image, forward, (width, height), flags=interpolation, borderMode=cv2.BORDER_CONSTANT)
    return warped, cv2.invertAffineTransform(forward)


def map_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine or a 3x3 homography to float (N, 2) points [x, y]; float32 (N, 2)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    mapped = points @ transform[:2, :2].T + transform[:2, 2]
    if transform.shape == (3, 3):
        mapped /= (points @ transform[2, :2] + transform[2, 2])[:, None]
    return mapped.astype(np.float32)

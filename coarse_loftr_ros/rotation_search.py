"""In-plane rotation search: when an upright pair matches weakly, match image 1 turned by a few
angles too and keep the angle that matches best.

The model's CNN is not rotation invariant: past about 25 degrees of in-plane rotation between
the images its matches fall apart (a hand-held camera, a robot arm, a drone banking). Turning
image 1 by the right angle before matching brings such a pair back into the range the model
knows. The search runs only when the upright match is weak (``is_weak``), so consecutive video
frames pay nothing; a pair that triggers it costs up to ``1 + len(SEARCH_ANGLES)`` model runs.

Angles are degrees, counter-clockwise on the screen (OpenCV's ``getRotationMatrix2D``), about the
image centre; the turned image keeps the original size (its corners are cut off).
"""

from __future__ import annotations

import cv2
import numpy as np

SEARCH_ANGLES: tuple[float, ...] = (-30.0, 30.0, -60.0, 60.0)
"""Angles tried after the upright one; with the model's own tolerance they cover +-75 deg."""

WEAK_MATCH_SCORE = 0.2
"""Below this ``match_score`` an upright pair is searched (chosen on the development set)."""


def match_score(confidence: np.ndarray, cells: int) -> float:
    """How well a pair matched: the summed confidence of its matches per coarse cell of the
    smaller image (0: nothing matched; at most 1)."""
    return float(np.sum(confidence, dtype=np.float64)) / max(cells, 1)


def rotate_image(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn an HxW image by ``angle`` degrees about its centre, keeping its size.

    Returns the turned image and the 2x3 affine that maps its pixels back to the original's.
    """
    height, width = image.shape[:2]
    forward = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0)
    turned = cv2.warpAffine(image, forward, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return turned, cv2.invertAffineTransform(forward)


def map_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to float (N, 2) points [x, y]; float32 (N, 2)."""
    return (np.asarray(points, np.float64) @ affine[:, :2].T + affine[:, 2]).astype(np.float32)

"""Re-match in the rectified view: when a pair's matches agree on a homography that is far from a
plain translation, warp image 1 onto image 0 by it and run the model again.

The model matches best when the two images look alike up to a small warp (the easy development
pairs: AUC@5 81 for the model alone); perspective, zoom and rotation between the views cost it
most of its matches (medium pairs: 44). A first match, even a weak one, usually has enough correct matches for
RANSAC to find the homography between the views (the plane that dominates the scene). Warping
image 1 by it onto image 0 undoes most of the distortion, and the second run matches the pair
almost as if it were a pair of video frames. The keypoints are mapped back into the given
image 1 through the same homography, so they stay exact wherever the warp is not: a scene that
is not planar only gets a less perfect view. The second run is kept only when it matches
better (``rotation_search.match_score``), so a wrong homography cannot make a pair worse.

The step runs when a pair, after the rotation search, still matches below
``REWARP_MATCH_SCORE`` (or was matched in a view the search found, whose steps are coarse), and
its homography distorts image 0's frame by more than
``REWARP_DISTORTION`` of its half-diagonal beyond a shift (``distortion``). It costs one more
model run on such pairs; most consecutive video frames match above the score and pay nothing.

Homographies here map image-0 pixels to pixels of image 1, float64 3x3, OpenCV convention (x right,
y down, pixel centres at integers): model-input pixels in ``fit_homography`` and ``distortion``
(as the model saw the pair), original pixels in ``warp_onto``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .rotation_search import map_points

REWARP_MATCH_SCORE = 0.3
"""Re-match only pairs whose ``match_score`` is below this. Well-matched pairs (most consecutive
video frames score 0.3-0.4) gain less than the run costs: rewarping every pair of the Freiburg
video raised its fundamental-matrix inliers by 10 % at 1.6x the time (docs/model.md)."""

REWARP_DISTORTION = 0.05
"""Re-match only when image 0's corners move by more than this share of its half-diagonal beyond
the shift of its centre (about 3 degrees of rotation or 5 % of zoom): a view that is already a
shift of image 0 has nothing to undo."""

REWARP_MIN_INLIERS = 15
"""A homography needs at least this many RANSAC inliers to be trusted."""

REWARP_RANSAC_CELLS = 0.5
"""RANSAC threshold of the fit, in coarse cells of the model input (the first run's error is a
few pixels; the fit only has to bring the views close)."""


def fit_homography(keypoints0: np.ndarray, keypoints1: np.ndarray, threshold: float) -> np.ndarray | None:
    """The homography (image 0 -> image 1) the matches agree on, or None.

    ``keypoints0`` and ``keypoints1`` are float (N, 2) pixels of the two images as the model saw
    them (model-input pixels), ``threshold`` the RANSAC distance in those pixels.

    None when there are fewer than ``REWARP_MIN_INLIERS`` inliers within ``threshold`` pixels,
    or the fit flips or collapses the image (a degenerate fit from wrong matches).
    """
    if len(keypoints0) < REWARP_MIN_INLIERS:
        return None
    # At most 1000 iterations: matches of which few agree (a car's pairs 10-20 frames apart,
    # about 10 %) run them all, 2000 cost such a pair a quarter of its time; the development
    # numbers stayed within RANSAC's own noise at 1000 (castle AUC@10 81.8), not quite at 500 (81.0).
    homography, inliers = cv2.findHomography(
        np.asarray(keypoints0, np.float32), np.asarray(keypoints1, np.float32), cv2.RANSAC, threshold, maxIters=1000, confidence=0.999
    )
    if homography is None or inliers is None or int(inliers.sum()) < REWARP_MIN_INLIERS:
        return None
    homography = homography / homography[2, 2]
    det = float(np.linalg.det(homography[:2, :2]))
    if not 1.0 / 16 < det < 16.0:  # zoom beyond 4x either way, or a mirror: not a view change we can undo
        return None
    return homography


def distortion(homography: np.ndarray, size: tuple[int, int]) -> float:
    """How far ``homography`` is from a shift on an image of ``size`` (width, height): the
    largest move of a corner beyond the move of the centre, over the half-diagonal (0: a shift)."""
    width, height = size
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    centre = np.array([[(width - 1) / 2.0, (height - 1) / 2.0]])
    moved = map_points(homography, np.vstack([corners, centre])).astype(np.float64)
    shift = moved[4] - centre[0]
    residual = moved[:4] - corners - shift
    return float(np.linalg.norm(residual, axis=1).max() / (0.5 * np.hypot(width, height)))


def warp_onto(image1: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Image 1 seen from image 0: pixel x of the result is pixel ``homography @ x`` of image 1;
    ``size`` (width, height) is image 0's, uncovered pixels are black."""
    return cv2.warpPerspective(image1, homography, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)

"""The debug picture: both images side by side, a readable subset of the matches, coloured
by whether they agree with one camera geometry.

``draw_matches`` is the one overlay of ``coarse-loftr match``, ``replay`` and the node:

- all matches are checked against one fundamental matrix (OpenCV's USAC, fixed seed,
  ``ransac_px`` pixels): green lines agree with it (geometrically consistent), red ones
  do not (most likely wrong matches);
- only the ``max_lines`` most confident matches are drawn (default 200), so the lines
  stay readable; the counts are for all matches;
- a banner says how many matches there are, how many are consistent, how many are drawn,
  the backend and the time, and what the colours mean.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..preprocess import to_8bit
from .result import MatchResult

DEFAULT_MAX_LINES = 200
"""Lines drawn by default: the most confident matches (the node's ``overlay_max_lines``)."""
DEFAULT_RANSAC_PX = 3.0
"""Largest distance (pixels of the original images) of a consistent match from its epipolar line."""
MIN_MATCHES_FOR_GEOMETRY = 8
"""Fewer matches than this cannot be checked (the 8-point minimum of a fundamental matrix)."""

CONSISTENT_BGR = (80, 200, 60)  # green
INCONSISTENT_BGR = (60, 60, 230)  # red
UNCHECKED_BGR = (0, 200, 255)  # amber: too few matches to check


def _to_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = to_8bit(image)  # by the data's bit depth, as the model sees it
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def geometric_consistency(result: MatchResult, ransac_px: float = DEFAULT_RANSAC_PX, seed: int = 0) -> np.ndarray | None:
    """Bool (N,): the matches that agree with one fundamental matrix; None if N < 8 or none fits.

    OpenCV's USAC (MAGSAC++) with a fixed random seed, so the same matches give the same
    answer; ``ransac_px`` is the inlier distance in original-image pixels.
    """
    if len(result) < MIN_MATCHES_FOR_GEOMETRY:
        return None
    points0 = np.ascontiguousarray(result.keypoints0, np.float64)
    points1 = np.ascontiguousarray(result.keypoints1, np.float64)
    cv2.setRNGSeed(seed)
    try:
        matrix, mask = cv2.findFundamentalMat(points0, points1, cv2.USAC_MAGSAC, ransac_px, 0.999, 10000)
    except cv2.error:  # degenerate configurations (all points on a line, ...)
        return None
    if matrix is None or mask is None:
        return None
    return mask.reshape(-1).astype(bool)


def _put_lines(canvas: np.ndarray, lines: list[str]) -> None:
    """White text lines on a dark banner at the top left."""
    scale = float(np.clip(canvas.shape[1] / 1800, 0.4, 1.2))
    thickness = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness) for line in lines]
    line_height = max(h + b for (_, h), b in sizes) + 6
    width = max(w for (w, _), _ in sizes) + 12
    banner = canvas[: line_height * len(lines) + 6, : width]
    banner[:] = (banner * 0.35).astype(np.uint8)  # darken: readable over any image, image still visible
    for row, ((_, height), _) in enumerate(sizes):
        y = 6 + row * line_height + height
        cv2.putText(canvas, lines[row], (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def draw_matches(
    image0: np.ndarray,
    image1: np.ndarray,
    result: MatchResult,
    caption: str | None = None,
    max_lines: int | None = DEFAULT_MAX_LINES,
    ransac_px: float = DEFAULT_RANSAC_PX,
) -> np.ndarray:
    """Side-by-side BGR uint8 picture (height max(h0, h1), width w0 + w1) of a ``MatchResult``.

    Args:
        image0, image1: the matched images (uint8/uint16, gray, BGR or BGRA).
        result: their matches, sorted by descending confidence (as ``Matcher`` returns them).
        caption: a first banner line above the counts (default: counts, backend and time in one line).
        max_lines: draw the ``max_lines`` most confident matches; 0 or None: all (as ``max_matches``).
        ransac_px: inlier distance of the consistency check in original-image pixels.
    """
    left, right = _to_bgr(image0), _to_bgr(image1)
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] :] = right

    consistent = geometric_consistency(result, ransac_px)
    count = len(result) if not max_lines else min(len(result), int(max_lines))
    thickness = 1 if canvas.shape[1] < 2400 else 2
    radius = 2 if canvas.shape[1] < 2400 else 4
    offset = np.array([left.shape[1], 0], np.float32)
    # Draw the weakest first so that the most confident stay on top.
    for index in range(count - 1, -1, -1):
        if consistent is None:
            colour = UNCHECKED_BGR
        else:
            colour = CONSISTENT_BGR if consistent[index] else INCONSISTENT_BGR
        p0 = tuple(int(round(v)) for v in result.keypoints0[index])
        p1 = tuple(int(round(v)) for v in result.keypoints1[index] + offset)
        cv2.line(canvas, p0, p1, colour, thickness, cv2.LINE_AA)
        cv2.circle(canvas, p0, radius, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, p1, radius, colour, -1, cv2.LINE_AA)

    _put_lines(canvas, overlay_text(result, consistent, count, ransac_px, caption))
    return canvas


def overlay_text(
    result: MatchResult, consistent: np.ndarray | None, shown: int, ransac_px: float = DEFAULT_RANSAC_PX, caption: str | None = None
) -> list[str]:
    """The banner lines: counts (all matches), backend and time, what is drawn and what the colours mean."""
    total_ms = result.timing_ms.get("total")
    if consistent is None:
        counts = f"{len(result)} matches (too few to check the geometry)"
        legend = f"showing {shown} | amber: not checked"
    else:
        counts = f"{len(result)} matches, {int(consistent.sum())} consistent ({100.0 * consistent.mean():.0f}%)"
        legend = f"showing the {shown} most confident | green: consistent, red: not (fundamental matrix, {ransac_px:g} px)"
    if caption is not None:
        return [caption, counts, legend]
    first = " | ".join(part for part in (counts, result.backend, f"{total_ms:.1f} ms" if total_ms is not None else "") if part)
    return [first, legend]

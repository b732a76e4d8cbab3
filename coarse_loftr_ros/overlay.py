"""The debug picture: both images side by side, match lines coloured by confidence."""

from __future__ import annotations

import cv2
import numpy as np

from .result import MatchResult


def _to_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def draw_matches(
    image0: np.ndarray,
    image1: np.ndarray,
    result: MatchResult,
    caption: str | None = None,
    max_lines: int = 1000,
) -> np.ndarray:
    """Side-by-side BGR uint8 picture of a ``MatchResult``.

    Lines go from image 0 (left) to image 1 (right), coloured by confidence relative to
    the best match (turbo colour map: blue low, red high); the most confident
    ``max_lines`` are drawn. The caption defaults to "N matches | backend | total ms".
    """
    left, right = _to_bgr(image0), _to_bgr(image1)
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] :] = right
    count = min(len(result), max_lines)
    if count:
        best = float(result.confidence[0]) or 1.0
        levels = np.clip(result.confidence[:count] / best * 255.0, 0, 255).astype(np.uint8)
        colours = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)
        offset = np.array([left.shape[1], 0], np.float32)
        # Draw the weakest first so the strongest stay on top.
        for index in range(count - 1, -1, -1):
            p0 = tuple(int(round(v)) for v in result.keypoints0[index])
            p1 = tuple(int(round(v)) for v in result.keypoints1[index] + offset)
            colour = tuple(int(c) for c in colours[index])
            cv2.line(canvas, p0, p1, colour, 1, cv2.LINE_AA)
            cv2.circle(canvas, p0, 2, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, p1, 2, colour, -1, cv2.LINE_AA)
    if caption is None:
        caption = f"{len(result)} matches | {result.backend} | {result.timing_ms.get('total', 0.0):.1f} ms"
    scale = max(0.4, canvas.shape[1] / 1600)
    (text_w, text_h), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, 0), (text_w + 12, text_h + baseline + 12), (0, 0, 0), -1)
    cv2.putText(canvas, caption, (6, text_h + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas

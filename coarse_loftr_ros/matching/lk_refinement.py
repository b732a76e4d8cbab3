"""Sub-pixel polish of matches with pyramidal Lucas-Kanade (OpenCV), checked forward-backward.

The model places a match on its coarse grid (16 model pixels per cell) and refines it inside
the cell; on the original image that still leaves errors of a few pixels. This step tracks each
match's image-0 point into image 1 with ``cv2.calcOpticalFlowPyrLK``, starting from the
model's position, and tracks the result back into image 0. A match is kept, at the tracked
position, when both tracks converge, the track back lands within ``max_error`` pixels of where
it started and the track moved the point by at most one coarse cell. Matches that fail (their
patches disagree, or are too flat to track) are dropped when at least ``min_polished`` matches
passed, and kept at the model's position otherwise, so a pair the tracker cannot follow (strong
rotation or scale change) keeps its matches.

Coordinates are original-image pixels, OpenCV convention (x right, y down, pixel centres at
integers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .rotation_search import map_points


@dataclass(frozen=True)
class LKRefinement:
    """Settings of the polish (defaults chosen on the development set with the rewarp on: the model card).

    Attributes:
        window: side of the square patch tracked, in original pixels.
        levels: pyramid levels above the original (0 = the original only) for an image the
            model sees at full size; one more for each halving of a larger image.
        max_error: largest forward-backward distance of a polished match, in pixels.
        max_shift: largest move from the model's position, in model-input pixels (16: one
            coarse cell of the shipped model).
        min_polished: drop the matches that failed when at least this many passed
            (0: always drop them).
        iterations: Lucas-Kanade iterations per level.
        align: track in image 1 warped onto image 0 by the similarity transform the matches
            agree on (RANSAC), so that rotation and scale between the images do not defeat
            the tracker's translation-only window.
        normalize: track on image 1 with its brightness and contrast matched to image 0's at the
            matched points (a gain and an offset: ``match_brightness``), so that a change of
            exposure or contrast does not break the tracker's constant-brightness model.
        equalize: track on histogram-equalised images instead (off: a whole-image histogram
            depends on what each view shows, and on a zoomed or cropped view it changes the
            brightness of the same surface: the README's example pair lost 95 % of its matches).
    """

    window: int = 9
    levels: int = 2
    max_error: float = 1.0
    max_shift: float = 16.0
    min_polished: int = 20
    iterations: int = 6
    align: bool = True
    normalize: bool = True
    equalize: bool = False

    def __call__(
        self, image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray, keypoints1: np.ndarray, scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Polish matches between two uint8 grayscale images.

        Args:
            image0, image1: uint8 HxW images the keypoints are in.
            keypoints0, keypoints1: float32 (N, 2) matched points [x, y] in pixels.
            scale: model-input pixels per image pixel (the smaller of the two images').

        Returns:
            ``(keypoints1, keep)``: float32 (N, 2) polished points in image 1 and a bool (N,)
            mask of the matches to keep.
        """
        count = len(keypoints0)
        if count == 0:
            return keypoints1.astype(np.float32), np.zeros(0, bool)
        points0 = np.ascontiguousarray(keypoints0, np.float32).reshape(-1, 1, 2)
        start1 = np.ascontiguousarray(keypoints1, np.float32).reshape(-1, 1, 2)
        if self.equalize:
            image0, image1 = cv2.equalizeHist(image0), cv2.equalizeHist(image1)
        elif self.normalize:
            image1 = match_brightness(image0, image1, keypoints0, keypoints1)
        max_shift_px = self.max_shift / max(scale, 1e-6)
        to_image1 = None
        if self.align and count >= 8:
            image1, start1, to_image1 = _align(image0, image1, keypoints0, start1, max_shift_px)
        levels = self.levels + max(0, math.floor(math.log2(1.0 / scale))) if scale > 0 else self.levels
        tracked1, forward = self._track(image0, image1, points0, start1, levels)
        tracked1 = tracked1.reshape(-1, 2)
        near = np.linalg.norm(tracked1 - start1.reshape(-1, 2), axis=1) <= max_shift_px
        # Tracked back only where the forward track can still pass (each point is tracked on
        # its own, so the others' results are the same).
        polished = forward & near
        if polished.any():
            back0, backward = self._track(image1, image0, tracked1[polished].reshape(-1, 1, 2), points0[polished], levels)
            consistent = np.linalg.norm(back0.reshape(-1, 2) - points0[polished].reshape(-1, 2), axis=1) <= self.max_error
            polished[polished] = backward & consistent
        refined = np.where(polished[:, None], tracked1, start1.reshape(-1, 2)).astype(np.float32)
        if to_image1 is not None:
            refined = map_points(to_image1, refined)
        keep = polished if polished.sum() >= self.min_polished else np.ones(count, bool)
        return refined, keep

    def _track(self, source: np.ndarray, target: np.ndarray, points: np.ndarray, start: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, self.iterations, 0.01)
        tracked, status, _ = cv2.calcOpticalFlowPyrLK(
            source,
            target,
            points,
            start.copy(),
            winSize=(self.window, self.window),
            maxLevel=levels,
            criteria=criteria,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        return tracked, status.reshape(-1).astype(bool)


def match_brightness(image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray, keypoints1: np.ndarray) -> np.ndarray:
    """Image 1 (uint8) with the gain and offset that give its 7x7-mean intensities at
    ``keypoints1`` the mean and spread of image 0's at ``keypoints0`` (float (N, 2) pixels)."""

    values0, values1 = box_means(image0, keypoints0), box_means(image1, keypoints1)
    gain = (float(values0.std()) + 1e-3) / (float(values1.std()) + 1e-3)
    offset = float(values0.mean()) - gain * float(values1.mean())
    return cv2.convertScaleAbs(image1, alpha=gain, beta=offset)


def box_means(image: np.ndarray, points: np.ndarray, size: int = 7) -> np.ndarray:
    """float32 (N,): the mean of the ``size`` x ``size`` patch of a uint8 image about each point
    (float (N, 2) pixels, rounded and clipped to the image), rounded to an integer: what
    ``cv2.blur(image, (size, size))`` holds there (the same reflected border), computed at the
    points only instead of over the whole image."""
    height, width = image.shape[:2]
    at = np.clip(np.rint(points).astype(np.int64), 0, [width - 1, height - 1])
    offsets = np.arange(size) - size // 2
    xs = _reflect101(at[:, 0, None] + offsets, width)
    ys = _reflect101(at[:, 1, None] + offsets, height)
    # One flat gather: a fifth faster than indexing rows and columns by broadcast arrays.
    flat = (ys[:, :, None] * width + xs[:, None, :]).reshape(len(at), -1)
    sums = np.ascontiguousarray(image).ravel().take(flat).sum(axis=1, dtype=np.int64)
    return np.floor(sums / size**2 + 0.5).astype(np.float32)  # odd size: no sum / size**2 is a half, no tie


def _reflect101(index: np.ndarray, length: int) -> np.ndarray:
    """Indices beyond [0, length - 1] reflected about the edge pixel (OpenCV's BORDER_REFLECT_101)."""
    index = np.abs(index)
    return np.where(index > length - 1, 2 * (length - 1) - index, index)


def _align(
    image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray, points1: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Image 1 warped onto image 0 by the matches' similarity transform, the points moved with
    it, and the 2x3 affine back to image 1 (None, and the inputs unchanged, without a transform)."""
    onto0, inliers = cv2.estimateAffinePartial2D(
        points1.reshape(-1, 2), np.asarray(keypoints0, np.float32).reshape(-1, 2), method=cv2.RANSAC, ransacReprojThreshold=threshold
    )
    if onto0 is None or inliers is None or int(inliers.sum()) < 8:
        return image1, points1, None
    height, width = image0.shape[:2]
    warped = cv2.warpAffine(image1, onto0, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    moved = map_points(onto0, points1.reshape(-1, 2)).reshape(-1, 1, 2)
    return warped, moved, cv2.invertAffineTransform(onto0)

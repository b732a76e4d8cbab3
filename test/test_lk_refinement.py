"""The Lucas-Kanade polish on a real frame moved by known transforms: matches placed a few
pixels off (as the model's coarse grid leaves them) come back to the true position, wrong
partners are dropped, and a pair the tracker cannot follow keeps the model's positions."""

import cv2
import numpy as np
import pytest

from coarse_loftr_ros.matching.lk_refinement import LKRefinement


@pytest.fixture(scope="module")
def frame(freiburg_frames) -> np.ndarray:
    return cv2.cvtColor(freiburg_frames[4], cv2.COLOR_BGR2GRAY)


def grid_points(image: np.ndarray, margin: int = 40, step: int = 24) -> np.ndarray:
    height, width = image.shape
    xs, ys = np.meshgrid(np.arange(margin, width - margin, step), np.arange(margin, height - margin, step))
    return np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)


def moved(frame: np.ndarray, affine: np.ndarray, points: np.ndarray, noise_px: float = 4.0, seed: int = 0):
    """``frame`` warped by ``affine``, the true positions of ``points`` in it and those positions
    with uniform noise of +-``noise_px`` (the model's error inside a coarse cell)."""
    height, width = frame.shape
    warped = cv2.warpAffine(frame, affine, (width, height), flags=cv2.INTER_LINEAR)
    truth = (points @ affine[:, :2].T + affine[:, 2]).astype(np.float32)
    noisy = truth + np.random.default_rng(seed).uniform(-noise_px, noise_px, truth.shape).astype(np.float32)
    return warped, truth, noisy


def test_a_subpixel_shift_is_recovered_from_a_few_pixels_off(frame):
    points = grid_points(frame)
    shifted, truth, noisy = moved(frame, np.float32([[1, 0, 3.4], [0, 1, -2.7]]), points)
    refined, keep = LKRefinement()(frame, shifted, points, noisy)
    assert refined.shape == noisy.shape and refined.dtype == np.float32 and keep.dtype == bool
    error = np.linalg.norm(refined - truth, axis=1)
    assert keep.mean() > 0.75  # measured 0.88: the rest lie on flat patches
    assert np.median(error[keep]) < 0.4  # measured 0.18 px (from 3.2 px before)
    assert np.median(np.linalg.norm(noisy - truth, axis=1)) > 2.0


def test_a_change_of_exposure_does_not_break_the_polish(frame):
    """Gamma 1.8 and 70 % contrast between the images (auto exposure): with image 1's brightness
    and contrast matched to image 0's at the matches (the default) or on equalised images, half or
    more of the matches are polished within 0.5 px; on raw intensities almost none."""
    points = grid_points(frame)
    shifted, truth, noisy = moved(frame, np.float32([[1, 0, 3.4], [0, 1, -2.7]]), points)
    darker = np.clip((shifted / 255.0) ** 1.8 * 255 * 0.7 + 10, 0, 255).astype(np.uint8)

    def within_half_pixel(refinement: LKRefinement) -> float:
        refined, keep = refinement(frame, darker, points, noisy)
        return float((np.linalg.norm(refined - truth, axis=1)[keep] < 0.5).mean())

    assert within_half_pixel(LKRefinement()) > 0.45  # measured 0.53 (gain and offset cannot undo the gamma)
    assert within_half_pixel(LKRefinement(equalize=True)) > 0.45
    assert within_half_pixel(LKRefinement(normalize=False)) < 0.2  # measured 0.01


def test_a_linear_change_of_exposure_is_undone_by_the_gain(frame):
    """60 % contrast and a 40-level offset (a linear exposure change): the gain and offset fitted
    at the matches undo it, and most matches are polished within 0.5 px."""
    points = grid_points(frame)
    shifted, truth, noisy = moved(frame, np.float32([[1, 0, 3.4], [0, 1, -2.7]]), points)
    darker = np.clip(shifted * 0.6 + 40, 0, 255).astype(np.uint8)
    refined, keep = LKRefinement()(frame, darker, points, noisy)
    assert float((np.linalg.norm(refined - truth, axis=1)[keep] < 0.5).mean()) > 0.6


def test_rotation_and_scale_are_aligned_away_before_tracking(frame):
    """30 deg and scale 0.8: the translation-only tracker fails unless image 1 is first warped
    onto image 0 by the similarity the matches agree on."""
    height, width = frame.shape
    points = grid_points(frame)
    turned, truth, noisy = moved(frame, cv2.getRotationMatrix2D((width / 2, height / 2), 30, 0.8), points)
    inside = np.all((truth > 20) & (truth < np.array([width, height]) - 20), axis=1)
    points, truth, noisy = points[inside], truth[inside], noisy[inside]

    def within_half_pixel(refinement: LKRefinement) -> float:
        refined, _ = refinement(frame, turned, points, noisy)
        return float((np.linalg.norm(refined - truth, axis=1) < 0.5).mean())

    assert within_half_pixel(LKRefinement()) > 0.5  # measured 0.63
    assert within_half_pixel(LKRefinement(align=False)) < 0.1  # measured 0.01


def test_wrong_partners_are_dropped_and_right_ones_kept(frame):
    points = grid_points(frame)
    shifted, truth, noisy = moved(frame, np.float32([[1, 0, 3.4], [0, 1, -2.7]]), points)
    wrong = np.zeros(len(points), bool)
    wrong[::4] = True
    partners = noisy.copy()
    partners[wrong] += 60.0  # another place, several cells away
    _, keep = LKRefinement()(frame, shifted, points, partners)
    assert not keep[wrong].any()
    assert keep[~wrong].mean() > 0.65  # measured 0.74 (window 9: flat patches of the grid fail to track)


def test_a_pair_it_cannot_follow_keeps_the_model_positions(frame):
    """Image 1 is noise: fewer than ``min_polished`` matches pass, so all stay as they were."""
    points = grid_points(frame)
    noise = np.random.default_rng(1).integers(0, 256, frame.shape, dtype=np.uint8)
    starts = points + 2.0
    refined, keep = LKRefinement()(frame, noise, points, starts)
    assert keep.all()
    unmoved = np.all(refined == starts, axis=1)
    assert unmoved.mean() > 0.9  # only the few (< 20) that "passed" on noise moved


def test_no_matches_gives_empty_arrays(frame):
    empty = np.zeros((0, 2), np.float32)
    refined, keep = LKRefinement()(frame, frame, empty, empty)
    assert refined.shape == (0, 2) and keep.shape == (0,)


def test_box_means_are_the_blurred_image_at_the_points():
    """``box_means`` samples what ``cv2.blur`` holds at the points, borders and rounding included."""
    import skimage.data

    from coarse_loftr_ros.matching.lk_refinement import box_means

    rng = np.random.default_rng(0)
    for image in (skimage.data.camera(), rng.integers(0, 256, (37, 53), dtype=np.uint8)):
        height, width = image.shape
        points = rng.uniform([-4, -4], [width + 3, height + 3], (4000, 2))
        at = np.clip(np.rint(points).astype(int), 0, [width - 1, height - 1])
        for size in (3, 7):
            expected = cv2.blur(image, (size, size))[at[:, 1], at[:, 0]]
            np.testing.assert_array_equal(box_means(image, points, size), expected.astype(np.float32))

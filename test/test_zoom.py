"""The zoom views on a real drive (KITTI frames with ground-truth poses): on pairs 10-20 frames
apart, where the rewarp gains nothing, matching image 1 shrunk about its centre as well finds
about twice the matches that agree with the true epipolar geometry; consecutive frames are
matched exactly as without it; the merged result keeps the result's order and cap."""

import numpy as np
import pytest

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.imageio import read_image
from shared_data import SHARED, require

KITTI = SHARED / "data" / "kitti_seq_dev"
FAR_PAIRS = ((15, 35), (30, 50), (20, 30), (40, 50))  # 20 and 10 frames apart, the car moving forward


@pytest.fixture(scope="module")
def drive():
    """(frames, poses camera-to-world, K) of the development drive."""
    from coarse_loftr_train import sequence_evaluation

    data = sequence_evaluation.read_sequence(require(KITTI))
    return [read_image(path) for path in data.images], data.poses, data.K


def epipolar_inliers(result, pose0: np.ndarray, pose1: np.ndarray, K: np.ndarray, tolerance_px: float = 1.0) -> int:
    """Matches within ``tolerance_px`` (Sampson distance) of the true epipolar geometry."""
    relative = np.linalg.inv(pose1) @ pose0  # camera 0 -> camera 1
    rotation, translation = relative[:3, :3], relative[:3, 3]
    cross = np.array([[0, -translation[2], translation[1]], [translation[2], 0, -translation[0]], [-translation[1], translation[0], 0]])
    inverse = np.linalg.inv(K)
    fundamental = inverse.T @ cross @ rotation @ inverse
    x0 = np.c_[result.keypoints0, np.ones(len(result))]
    x1 = np.c_[result.keypoints1, np.ones(len(result))]
    line1, line0 = x0 @ fundamental.T, x1 @ fundamental
    numerator = np.sum(x1 * line1, axis=1) ** 2
    distance = np.sqrt(numerator / (line1[:, 0] ** 2 + line1[:, 1] ** 2 + line0[:, 0] ** 2 + line0[:, 1] ** 2))
    return int((distance < tolerance_px).sum())


def test_far_pairs_of_a_forward_moving_car_gain_correct_matches_from_the_zoom_views(drive):
    """Measured: 10-19 -> 19-20 correct matches 20 frames apart, 26-28 -> 50-59 at 10 frames
    (within 1 px); all four pairs together 75 -> 148."""
    frames, poses, K = drive
    with_zoom, without = Matcher(), Matcher(zoom=False)
    gained, base = 0, 0
    for a, b in FAR_PAIRS:
        zoomed, plain = with_zoom.match(frames[a], frames[b]), without.match(frames[a], frames[b])
        assert zoomed.model_runs == 3 and plain.model_runs == 2  # upright, rewarp, and one zoom view in the default budget
        assert zoomed.timing_ms["zoom"] > 0 and plain.timing_ms["zoom"] == 0
        gained += epipolar_inliers(zoomed, poses[a], poses[b], K)
        base += epipolar_inliers(plain, poses[a], poses[b], K)
    assert gained >= 1.4 * base


def test_consecutive_frames_are_matched_as_without_the_zoom_views(drive):
    frames = drive[0]
    for k in (0, 25):
        zoomed, plain = Matcher().match(frames[k], frames[k + 1]), Matcher(zoom=False).match(frames[k], frames[k + 1])
        assert zoomed.model_runs == plain.model_runs == 1
        np.testing.assert_array_equal(zoomed.keypoints1, plain.keypoints1)


def test_the_merged_matches_keep_the_order_the_cap_and_image_1(drive):
    frames = drive[0]
    result = Matcher().match(frames[20], frames[30])
    assert len(result) > 100 and np.all(np.diff(result.confidence) <= 0)
    height, width = frames[30].shape[:2]
    assert np.all((result.keypoints1 >= 0) & (result.keypoints1 <= [width - 1, height - 1]))
    assert len(result.cells0) == len(result.cells1) == len(result)
    assert len(Matcher(max_matches=60).match(frames[20], frames[30])) == 60


def test_a_larger_budget_tries_both_zoom_views_and_nothing_after_them(drive):
    frames = drive[0]
    assert Matcher(max_model_runs=8).match(frames[15], frames[35]).model_runs == 4  # upright, rewarp, 0.7, 0.85

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
    """(frames, the sequence with its poses and K) of the development drive."""
    from coarse_loftr_train import sequence_evaluation

    data = sequence_evaluation.read_sequence(require(KITTI))
    return [read_image(path) for path in data.images], data


def epipolar_inliers(result, data, k0: int, k1: int, tolerance_px: float = 1.0) -> int:
    """Matches within ``tolerance_px`` (Sampson distance) of the true epipolar geometry of frames k0 -> k1."""
    from coarse_loftr_train.labels import fundamental_from_cameras, sampson_distance

    relative = data.relative_pose(k0, k1)  # camera k0 -> camera k1
    camera0 = {"K": data.K, "R_world_to_camera": np.eye(3), "t": np.zeros(3)}
    camera1 = {"K": data.K, "R_world_to_camera": relative[:3, :3], "t": relative[:3, 3]}
    distance = sampson_distance(fundamental_from_cameras(camera0, camera1), result.keypoints0, result.keypoints1)
    return int((distance < tolerance_px).sum())


def test_far_pairs_of_a_forward_moving_car_gain_correct_matches_from_the_zoom_views(drive):
    """Measured: 10-19 -> 19-20 correct matches 20 frames apart, 26-28 -> 50-59 at 10 frames
    (within 1 px); all four pairs together 75 -> 148."""
    frames, data = drive
    with_zoom, without = Matcher(), Matcher(zoom=False)
    gained, base = 0, 0
    for a, b in FAR_PAIRS:
        zoomed, plain = with_zoom.match(frames[a], frames[b]), without.match(frames[a], frames[b])
        assert zoomed.model_runs == 3 and plain.model_runs == 2  # upright, rewarp, and one zoom view in the default budget
        assert zoomed.timing_ms["zoom"] > 0 and plain.timing_ms["zoom"] == 0
        gained += epipolar_inliers(zoomed, data, a, b)
        base += epipolar_inliers(plain, data, a, b)
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

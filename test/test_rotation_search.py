"""The rotation search on a real frame turned by known angles: it finds the pair's rotation,
returns points in the given image 1, costs nothing on upright video, and runs the same way
in pair and sequence mode."""

import cv2
import numpy as np
import pytest

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.matching.rotation_search import SEARCH_SCALES, predict_rotation, map_points, match_score, rotate_image


class CountingBackend:
    """Counts model runs (and per-image feature extractions) of the real backend it wraps
    (nothing else changes)."""

    def __init__(self, matcher: Matcher) -> None:
        self.runs = 0
        self.extractions = 0
        for name in ("run", "match_features", "features"):
            original = getattr(matcher.backend, name, None)
            if original is None:
                continue

            def counted(*args, original=original, name=name):
                if name == "features":
                    self.extractions += 1
                else:
                    self.runs += 1
                return original(*args)

            setattr(matcher.backend, name, counted)


@pytest.fixture(scope="module")
def frame(freiburg_frames) -> np.ndarray:
    return freiburg_frames[4]


def correct(result, to_image1: np.ndarray, tolerance_px: float = 3.0) -> int:
    """Matches within ``tolerance_px`` of where ``to_image1`` (2x3) takes their image-0 point."""
    error = np.linalg.norm(map_points(to_image1, result.keypoints0) - result.keypoints1, axis=1)
    return int((error <= tolerance_px).sum())


def test_turning_and_mapping_back_are_inverse(frame):
    turned, back = rotate_image(frame, 40.0)
    assert turned.shape == frame.shape
    forward = cv2.invertAffineTransform(back)
    points = np.float32([[320, 240], [100, 200], [500, 300]])
    np.testing.assert_allclose(map_points(back, map_points(forward, points)), points, atol=1e-3)
    np.testing.assert_allclose(map_points(forward, np.float32([[319.5, 239.5]])), [[319.5, 239.5]], atol=1e-3)  # the centre stays


@pytest.mark.parametrize("angle", [45.0, -50.0])
def test_a_turned_pair_is_matched_after_turning_it_back(frame, angle):
    turned, back = rotate_image(frame, angle)
    to_image1 = cv2.invertAffineTransform(back)
    searched = Matcher(rewarp=False).match(frame, turned)  # the search alone (the rewarp rescues some upright pairs too)
    upright = Matcher(rotation_search=False, rewarp=False).match(frame, turned)
    assert abs(searched.rotation_deg + angle) <= 20.0 and upright.rotation_deg == 0.0 and upright.scale == 1.0
    # Measured 245 / 258 correct matches with the search against 92 / 54 upright.
    assert correct(searched, to_image1) >= max(2 * correct(upright, to_image1), 150)
    assert correct(searched, to_image1) >= 0.8 * len(searched)
    width, height = searched.image1_size
    assert np.all(searched.keypoints1 >= 0) and np.all(searched.keypoints1 <= [width - 1, height - 1])


def test_cells1_of_a_turned_pair_are_the_cells_of_the_given_image(frame):
    """The model saw image 1 turned; cells1 still index the given image 1's grid (the cell that
    holds keypoints1), so a sequence can chain them with the next pair's cells0."""
    turned, _ = rotate_image(frame, 45.0)
    result = Matcher().match(frame, turned)
    assert result.rotation_deg != 0.0
    columns, _ = result.grid_size
    cells = np.rint(result.keypoints1[:, 1] / 16).astype(int) * columns + np.rint(result.keypoints1[:, 0] / 16).astype(int)
    assert np.mean(cells == result.cells1) > 0.95  # 640x480: model pixels are image pixels (up to 1/2 px at cell edges)


def test_upright_video_pays_no_search(freiburg_frames):
    matcher = Matcher()
    counter = CountingBackend(matcher)
    pairs = list(zip(freiburg_frames[:-1], freiburg_frames[1:]))
    results = [matcher.match(a, b) for a, b in pairs]
    rewarped = sum(r.rewarped for r in results)  # test_rewarp bounds these
    assert counter.runs == len(pairs) + rewarped
    assert all(r.rotation_deg == 0.0 for r in results)


def test_a_turned_pair_costs_two_runs_when_the_predicted_angle_holds(frame):
    """Upright (weak), then image 1 turned by the predicted angle (strong): the search stops there,
    under any budget."""
    matcher = Matcher(rewarp=False, max_model_runs=8)
    counter = CountingBackend(matcher)
    result = matcher.match(frame, rotate_image(frame, 45.0)[0])
    assert counter.runs == result.model_runs == 2 and abs(result.rotation_deg + 45.0) <= 10.0


@pytest.mark.parametrize("budget", [1, 2, 3, 5])
def test_no_pair_costs_more_than_its_budget(frame, budget):
    """A pair no view matches well (image 1 turned 45 deg, shrunk to 0.4 and mirrored) would take
    every view of the search and a rewarp of each: it stops at the budget."""
    hard = cv2.flip(rotate_image(frame, 45.0, 0.4)[0], 1)
    matcher = Matcher(max_model_runs=budget)
    counter = CountingBackend(matcher)
    result = matcher.match(frame, hard)
    assert counter.runs == result.model_runs <= budget
    if budget == 1:
        assert result.rotation_deg == 0.0 and result.scale == 1.0 and not result.rewarped


def test_a_time_budget_ends_the_runs_a_pair_has_no_time_for(frame):
    """The same hard pair as above with a budget of 5 runs: with 1 microsecond the first run
    happens and no other (each takes milliseconds); with 1000 s the budget never binds and the
    pair runs as without one."""
    hard = cv2.flip(rotate_image(frame, 45.0, 0.4)[0], 1)
    unlimited = Matcher(max_model_runs=5).match(frame, hard)
    assert unlimited.model_runs >= 3  # the pair needs more than one run
    hurried = Matcher(max_model_runs=5, time_budget_ms=1e-3)
    counter = CountingBackend(hurried)
    result = hurried.match(frame, hard)
    assert counter.runs == result.model_runs == 1
    assert result.rotation_deg == 0.0 and result.scale == 1.0 and not result.rewarped and len(result) > 0
    patient = Matcher(max_model_runs=5, time_budget_ms=1e6).match(frame, hard)
    assert patient.model_runs == unlimited.model_runs
    assert (patient.rotation_deg, patient.scale, patient.rewarped) == (unlimited.rotation_deg, unlimited.scale, unlimited.rewarped)


def test_a_time_budget_binds_in_sequence_mode_and_can_be_changed(frame):
    """match_next counts the new frame's features in the pair's time; the budget is a setting."""
    turned = rotate_image(frame, 45.0)[0]
    sequence = Matcher(time_budget_ms=1e-3)
    sequence.match_next(frame)
    assert sequence.match_next(turned).model_runs == 1
    sequence.time_budget_ms = 0  # 0: no limit
    assert sequence.time_budget_ms is None
    sequence.reset()
    sequence.match_next(frame)
    assert sequence.match_next(turned).model_runs >= 2
    with pytest.raises(ValueError, match="time_budget_ms must be a finite number"):
        sequence.time_budget_ms = -5
    assert sequence.time_budget_ms is None


def test_predicted_rotation_undoes_a_turn(frame):
    """``predict_rotation`` gives the angle that turns image 1 back (``rotate_image`` convention)."""
    for angle in (-135.0, -60.0, -20.0, 35.0, 90.0, 170.0):
        predicted = predict_rotation(frame, rotate_image(frame, angle)[0])
        assert abs((predicted + angle + 180.0) % 360.0 - 180.0) <= 10.0, (angle, predicted)
    assert abs(predict_rotation(frame, frame)) <= 5.0


def test_sequence_mode_searches_like_pair_mode(freiburg_frames, frame):
    """match_next on [upright, turned, upright]: the turned frame is found by the search and the
    next pair starts from the frame as given (its features were kept unturned)."""
    turned, back = rotate_image(frame, 45.0)
    to_turned = cv2.invertAffineTransform(back)
    sequence = Matcher()
    sequence.match_next(frame)
    first = sequence.match_next(turned)
    assert first.rotation_deg == Matcher().match(frame, turned).rotation_deg != 0.0
    assert correct(first, to_turned) >= 150
    second = sequence.match_next(frame)  # turned -> upright: the search turns it the other way
    assert second.rotation_deg != 0.0
    assert correct(second, back) >= 150


def test_match_score_is_confidence_per_cell():
    assert match_score(np.array([0.5, 0.25], np.float32), 3) == pytest.approx(0.25)
    assert match_score(np.zeros(0, np.float32), 1200) == 0.0


def test_a_zoomed_out_view_is_matched_after_scaling_it_back(frame):
    """Image 1 is the frame shrunk to 0.45 about its centre: the scale stage enlarges it again."""
    shrunk, back = rotate_image(frame, 0.0, 0.45)
    to_image1 = cv2.invertAffineTransform(back)
    searched = Matcher(rewarp=False).match(frame, shrunk)
    upright = Matcher(rotation_search=False, rewarp=False).match(frame, shrunk)
    assert searched.scale in SEARCH_SCALES and upright.scale == 1.0
    # Measured 151 correct matches (of 157) with the search against 13 upright (the shipped
    # graphs' fine stage; with the Lucas-Kanade polish instead, 199 of 213 against 26).
    assert correct(searched, to_image1) >= max(3 * correct(upright, to_image1), 120)
    assert correct(searched, to_image1) >= 0.85 * len(searched)


def test_sequence_mode_starts_from_the_previous_pairs_view(frame):
    """A camera that keeps turning (40 deg a frame): the second pair is matched first in the view
    the first pair was matched in (the motion prior), and needs no search."""
    frames = [frame, rotate_image(frame, 40.0)[0], rotate_image(frame, 80.0)[0]]
    sequence, without = Matcher(), Matcher(motion_prior=False)
    results = [[m.match_next(f) for f in frames][1:] for m in (sequence, without)]
    (first, second), (_, second_without) = results
    assert first.model_runs >= 2 and abs(first.rotation_deg + 40.0) <= 20.0
    assert second.model_runs == 1 and second.rewarped  # the prior's warp, nothing else
    assert second_without.model_runs >= 2
    to_second = cv2.invertAffineTransform(rotate_image(frames[1], 40.0)[1])  # frames[1] -> frames[2]
    assert correct(second, to_second) >= 150
    sequence.reset()  # a new sequence has no prior
    sequence.match_next(frames[1])
    assert sequence.match_next(frames[2]).model_runs >= 2


def test_the_budget_is_validated_in_one_line():
    from coarse_loftr_ros.errors import OptionError

    for bad in (0, -1, 2.5, "3", True, None):
        with pytest.raises(OptionError, match="max_model_runs must be a whole number >= 1") as error:
            Matcher(max_model_runs=bad)
        assert "\n" not in str(error.value)

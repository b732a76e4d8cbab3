"""Matcher on real images: geometry against ground truth, layouts, sequence mode, options."""

import cv2
import numpy as np
import pytest

from coarse_loftr_ros import Matcher, MatchResult
from coarse_loftr_ros.backends import DEFAULT_MODEL
from coarse_loftr_ros.errors import ModelError
from matching import MODEL_ONLY, assert_same_matches


@pytest.fixture(scope="module")
def matcher(exported_model):
    return Matcher(exported_model, **MODEL_ONLY)


def test_motorcycle_matches_agree_with_ground_truth_disparity(matcher, motorcycle):
    """Rectified stereo: a correct match lies on the same row with x1 = x0 - disparity(x0, y0).

    The coarse grid is 16 model pixels = 18.5 original pixels here, so a coarse match is
    off by up to half a cell (9.3 px) per axis even when it is the right cell.
    """
    left, right, disparity = motorcycle
    result = matcher.match(left, right)
    assert len(result) > 300
    x0, y0 = result.keypoints0.T
    x1, y1 = result.keypoints1.T
    d = disparity[np.round(y0).astype(int), np.round(x0).astype(int)]
    known = np.isfinite(d)
    error = np.maximum(np.abs(x1 - (x0 - d)), np.abs(y1 - y0))[known]
    assert known.sum() > 200
    assert (error < 16).mean() >= 0.85  # measured 0.93 with the released weights
    assert (error[:100] < 12).mean() >= 0.90  # the most confident: measured 0.97


def test_result_is_sorted_inside_images_and_complete(matcher, motorcycle):
    left, right, _ = motorcycle
    result = matcher.match(left, right)
    assert isinstance(result, MatchResult)
    n = len(result)
    assert result.keypoints0.shape == result.keypoints1.shape == (n, 2)
    assert result.keypoints0.dtype == result.keypoints1.dtype == result.confidence.dtype == np.float32
    assert np.all(np.diff(result.confidence) <= 0) and np.all(result.confidence > 0)
    for points, (w, h) in ((result.keypoints0, left.shape[1::-1]), (result.keypoints1, right.shape[1::-1])):
        assert np.all(points >= -0.5) and np.all(points[:, 0] <= w - 0.5) and np.all(points[:, 1] <= h - 0.5)
    assert result.image0_size == (741, 500) and result.grid_size == (40, 30)  # "auto": 741x500 fills 90 % of 640x480
    assert len(set(result.cells0.tolist())) == n  # mutual nearest neighbours: one match per cell
    assert set(result.timing_ms) == {"preprocess", "inference", "postprocess", "total", "model", "prior", "search", "rewarp", "zoom", "polish"}
    assert result.timing_ms["model"] <= result.timing_ms["inference"] and result.timing_ms["polish"] <= result.timing_ms["postprocess"]


def test_known_scale_maps_back_exactly(matcher, freiburg_frames):
    """image1 is image0 at half size: letterboxing brings it back to (nearly) the same model
    input, so matched cells coincide and the mapped keypoints follow the known scale; only
    the sub-cell refinement differs a little between the two inputs."""
    image0 = freiburg_frames[4]
    image1 = cv2.resize(image0, (320, 240), interpolation=cv2.INTER_AREA)
    result = matcher.match(image0, image1)
    same_cell = result.cells0 == result.cells1
    assert same_cell.mean() > 0.9
    expected = (result.keypoints0[same_cell] + 0.5) * 0.5 - 0.5
    error = np.linalg.norm(result.keypoints1[same_cell] - expected, axis=1)
    assert np.median(error) < 1.0 and error.max() < 8.0  # pixels of image1 (8 px per cell)


def test_input_layouts_give_the_same_matches(matcher, freiburg_frames):
    bgr0, bgr1 = freiburg_frames[0], freiburg_frames[2]
    reference = matcher.match(bgr0, bgr1)
    gray0, gray1 = (cv2.cvtColor(i, cv2.COLOR_BGR2GRAY) for i in (bgr0, bgr1))
    for a, b in [
        (gray0, gray1),
        (cv2.cvtColor(bgr0, cv2.COLOR_BGR2BGRA), cv2.cvtColor(bgr1, cv2.COLOR_BGR2BGRA)),
        (gray0.astype(np.uint16) * 257, gray1.astype(np.uint16) * 257),
    ]:
        assert_same_matches(matcher.match(a, b), reference)


def test_match_next_pairs_each_frame_with_the_previous(exported_model, freiburg_frames):
    matcher = Matcher(exported_model, **MODEL_ONLY)
    assert matcher.match_next(freiburg_frames[0]) is None
    for previous, frame in zip(freiburg_frames[:3], freiburg_frames[1:4]):
        result = matcher.match_next(frame)
        assert len(result) > 100
        assert_same_matches(result, matcher.match(previous, frame))
    matcher.reset()
    assert matcher.match_next(freiburg_frames[5]) is None


@pytest.mark.parametrize("model", ["exported_model", "released_onnx"])
def test_a_kept_extract_matches_like_match(model, request, freiburg_frames):
    """A keyframe's ``extract`` matched against later frames gives ``match``'s result, with
    (exported model) or without (released matrix model) the sequence-mode graphs."""
    matcher = Matcher(request.getfixturevalue(model), **MODEL_ONLY)
    keyframe = matcher.extract(freiburg_frames[0])
    for frame in freiburg_frames[2:5:2]:
        result = matcher.match_extracted(keyframe, matcher.extract(frame))
        expected = matcher.match(freiburg_frames[0], frame)
        assert len(result) > 0
        assert_same_matches(result, expected)


def test_threshold_and_max_matches(exported_model, freiburg_frames):
    everything = Matcher(exported_model, **MODEL_ONLY).match(freiburg_frames[0], freiburg_frames[1])
    strict = Matcher(exported_model, threshold=0.2, max_matches=50, **MODEL_ONLY).match(freiburg_frames[0], freiburg_frames[1])
    assert 0 < len(strict) <= 50 < len(everything)
    assert strict.confidence.min() >= 0.2
    expected = everything.confidence >= 0.2
    expected[np.flatnonzero(expected)[50:]] = False
    cut = float(strict.confidence[-1])
    assert_same_matches(strict, Subset(everything, expected), cut=cut)


class Subset:
    """The matches of a result selected by a boolean mask."""

    def __init__(self, result, mask):
        for name in ("cells0", "cells1", "keypoints0", "keypoints1", "confidence"):
            setattr(self, name, getattr(result, name)[mask])


def test_released_matrix_model_runs_with_numpy_extraction(released_onnx, motorcycle):
    result = Matcher(released_onnx).match(motorcycle[0], motorcycle[1])
    assert len(result) > 100 and result.confidence.min() > 0.01


def test_torch_backend_equals_onnx_runtime(released_checkpoint, exported_model, freiburg_frames):
    pytest.importorskip("torch")
    a = Matcher(released_checkpoint, backend="torch", **MODEL_ONLY).match(freiburg_frames[0], freiburg_frames[3])
    b = Matcher(exported_model, **MODEL_ONLY).match(freiburg_frames[0], freiburg_frames[3])
    assert a.backend == "torch" and b.backend == "onnxruntime"
    assert set(zip(a.cells0.tolist(), a.cells1.tolist())) == set(zip(b.cells0.tolist(), b.cells1.tolist()))


def test_default_model():
    if DEFAULT_MODEL.is_file():
        assert len(Matcher().match(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8))) >= 0
        assert Matcher().backend.name == "onnxruntime"
    else:
        with pytest.raises(ModelError, match="ships no default model") as error:
            Matcher()
        assert "\n" not in str(error.value)


def test_wrong_backend_for_file_type(exported_model):
    with pytest.raises(ModelError, match="torch backend cannot run"):
        Matcher(exported_model, backend="torch")
    with pytest.raises(ModelError, match="unknown backend"):
        Matcher(exported_model, backend="cuda")

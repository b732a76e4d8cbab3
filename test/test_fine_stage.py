"""The fine stage inside the graphs: correlation of image patches places and scores each match."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from coarse_loftr_ros import Matcher  # noqa: E402
from coarse_loftr_ros.backends.base import FINE_SCORE_NAME, OUTPUT_NAMES, RawMatches  # noqa: E402
from coarse_loftr_train.checkpoint import load_model  # noqa: E402
from coarse_loftr_train.correlation import CorrelationConfig, CorrelationRefinement  # noqa: E402
from coarse_loftr_train.export import ExportableMatcher, export_onnx, sequence_graph_paths  # noqa: E402
from matching import assert_same_matches  # noqa: E402

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "coarse_loftr_ros" / "models" / "default.pt"
NAMES = list(OUTPUT_NAMES) + [FINE_SCORE_NAME]


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _grid(image: np.ndarray, step: int = 16, margin: int = 24) -> np.ndarray:
    ys, xs = np.mgrid[margin : image.shape[0] - margin : step, margin : image.shape[1] - margin : step]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def _run(stage: CorrelationRefinement, image0, image1, points0, points1):
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))[None]  # noqa: E731
    with torch.no_grad():
        q0, q1, score = stage(tensor(image0 / 255.0), tensor(image1 / 255.0), tensor(points0), tensor(points1))
    return q0[0].numpy(), q1[0].numpy(), score[0].numpy()


def test_the_gradient_operator_gives_centred_pixels_and_central_differences():
    """On a square of a known quadratic surface the constant operator returns its inner pixels
    less their mean and the exact central differences (x right, y down), each row-major."""
    from coarse_loftr_train.correlation import _gradient_operator

    patch = 5
    y, x = torch.meshgrid(torch.arange(patch + 2.0), torch.arange(patch + 2.0), indexing="ij")
    square = 0.3 * x + 0.05 * y * y - 0.1 * x * y
    centred, gx, gy = (square.reshape(1, -1) @ _gradient_operator(patch)).reshape(3, patch, patch)
    inner = square[1:-1, 1:-1]
    torch.testing.assert_close(centred, inner - inner.mean())
    torch.testing.assert_close(gx, 0.3 - 0.1 * y[1:-1, 1:-1])
    torch.testing.assert_close(gy, 0.1 * y[1:-1, 1:-1] - 0.1 * x[1:-1, 1:-1])


@pytest.mark.parametrize("subpixel", ["gradient", "parabola"])
@pytest.mark.parametrize("shift", [(2.3, -1.6), (0.5, 0.5), (-1.25, 0.1)])
def test_a_known_subpixel_shift_is_recovered_and_scored_high(freiburg_frames, subpixel, shift):
    image0 = _gray(freiburg_frames[0])
    image1 = cv2.warpAffine(image0, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), image0.shape[::-1], flags=cv2.INTER_CUBIC)
    points0 = _grid(image0) + 0.3  # not on whole pixels: the stage rounds image 0's point and moves image 1's with it
    start = points0 + np.float32(shift) + np.random.default_rng(0).uniform(-1.0, 1.0, points0.shape).astype(np.float32)
    q0, q1, score = _run(CorrelationRefinement(CorrelationConfig(subpixel=subpixel)), image0, image1, points0, start)
    trusted = score >= 0.7
    assert trusted.mean() > 0.5  # the frame is blurred in places: flat patches may score low
    assert np.array_equal(q0[trusted], np.round(points0[trusted]))
    error = np.linalg.norm(q1[trusted] - (q0[trusted] + shift), axis=1)
    assert np.median(error) < (0.3 if subpixel == "gradient" else 0.35)  # half a pixel is the hardest case
    assert np.percentile(error, 90) < 0.8
    start_error = np.linalg.norm(start[trusted] - (points0[trusted] + shift), axis=1)
    assert np.median(error) < 0.5 * np.median(start_error)
    # untrusted matches keep the positions they came with
    assert np.array_equal(q1[~trusted], start[~trusted]) and np.array_equal(q0[~trusted], points0[~trusted])


def test_wrong_matches_score_low_and_edges_and_far_shifts_are_not_scored(freiburg_frames):
    image0 = _gray(freiburg_frames[3])
    shift = np.float32([1.5, 0.7])
    image1 = cv2.warpAffine(image0, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), image0.shape[::-1], flags=cv2.INTER_LINEAR)
    points0 = _grid(image0, step=24)
    rng = np.random.default_rng(1)
    wrong = rng.uniform([40, 40], [600, 440], points0.shape).astype(np.float32)
    _, _, score = _run(CorrelationRefinement(), image0, image1, points0, wrong)
    assert np.mean(score >= 0.7) < 0.15
    _, _, score_right = _run(CorrelationRefinement(), image0, image1, points0, points0 + shift)
    assert np.mean(score_right >= 0.7) > 0.5 and np.mean(score_right >= 0.7) > 4 * np.mean(score >= 0.7)
    # a square crossing the image edge, and a best shift on the search border, score -1
    edge = np.float32([[2.0, 100.0], [300.0, 478.0]])
    _, _, score_edge = _run(CorrelationRefinement(), image0, image0, edge, edge)
    assert np.all(score_edge == -1.0)
    inside = _grid(image0, step=48, margin=48)
    _, _, score_far = _run(CorrelationRefinement(CorrelationConfig(search=2)), image0, image0, inside, inside + 6.0)
    assert np.mean(score_far == -1.0) > 0.8


def _zoomed(image: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` magnified ``factor`` times about its centre (a scene that grows, as ahead of a
    car), and that centre ``[x, y]``."""
    centre = np.float32([(image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2])
    warp = np.float32([[factor, 0, centre[0] * (1 - factor)], [0, factor, centre[1] * (1 - factor)]])
    return cv2.warpAffine(image, warp, image.shape[::-1], flags=cv2.INTER_CUBIC), centre


def test_a_second_spacing_follows_a_scene_that_grows(freiburg_frames):
    image0 = _gray(freiburg_frames[0])
    image1, centre = _zoomed(image0, 1.3)
    points0 = _grid(image0, step=12, margin=130)  # where the magnified view still holds them
    truth = lambda points: (points - centre) * 1.3 + centre  # noqa: E731
    start = truth(points0) + np.random.default_rng(2).uniform(-1.0, 1.0, points0.shape).astype(np.float32)
    results = {}
    for scales in ((1.0,), (1.0, 1.25)):
        q0, q1, score = _run(CorrelationRefinement(CorrelationConfig(scales=scales)), image0, image1, points0, start)
        trusted = score >= 0.7
        results[scales] = trusted.mean(), np.median(np.linalg.norm(q1[trusted] - truth(q0[trusted]), axis=1))
    # measured on three frames: 1x alone trusts 60-67 % and places them within 0.46-0.49 px
    # (median); with 1.25x too, 76-82 % within 0.20-0.22 px
    (plain_share, plain_error), (scaled_share, scaled_error) = results.values()
    assert scaled_share > plain_share + 0.08
    assert scaled_error < 0.3 and scaled_error < 0.6 * plain_error
    # on a pair without zoom the extra spacing changes little
    _, _, plain_score = _run(CorrelationRefinement(), image0, image0, points0, points0 + 0.6)
    _, _, both_score = _run(CorrelationRefinement(CorrelationConfig(scales=(1.0, 1.25))), image0, image0, points0, points0 + 0.6)
    assert np.mean(both_score >= 0.7) == pytest.approx(np.mean(plain_score >= 0.7), abs=0.05)


def test_the_stage_with_two_spacings_runs_the_same_in_onnx_runtime(freiburg_frames, tmp_path):
    from coarse_loftr_train.export import OPSET

    stage = CorrelationRefinement(CorrelationConfig(scales=(1.0, 1.25))).eval()
    image0 = _gray(freiburg_frames[0])
    image1, centre = _zoomed(image0, 1.2)
    points0 = _grid(image0, step=20, margin=100)
    points1 = (points0 - centre) * 1.2 + centre + 0.4
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a, np.float32))[None] for a in (image0 / 255.0, image1 / 255.0, points0, points1))
    path = tmp_path / "stage.onnx"
    with torch.no_grad():
        torch.onnx.export(stage, inputs, str(path), opset_version=OPSET, dynamo=False, input_names=["i0", "i1", "p0", "p1"])
        expected = [t[0].numpy() for t in stage(*inputs)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = [a[0] for a in session.run(None, dict(zip(["i0", "i1", "p0", "p1"], (t.numpy() for t in inputs))))]
    # a near-tie between two shifts or spacings may go either way: nearly all rows equal
    # (the scores agree to a few thousandths: a patch's variance is a difference of sums)
    same = (np.abs(actual[1] - expected[1]).max(axis=1) < 0.01) & (np.abs(actual[2] - expected[2]) < 5e-3)
    assert np.mean(same) > 0.95 and np.mean(expected[2] >= 0.7) > 0.3


def test_bad_settings_are_refused_in_one_line():
    for bad in (dict(patch=6), dict(patch=1), dict(search=0), dict(subpixel="spline"), dict(rows=-1), dict(scales=()), dict(scales=(1.0, 3.0))):
        with pytest.raises(ValueError, match="patch|search|subpixel|rows|scales"):
            CorrelationConfig(**bad)


@pytest.fixture(scope="module")
def fine_stage_model(tmp_path_factory) -> Path:
    """The shipped checkpoint exported with the fine stage (pair and sequence graphs)."""
    path = tmp_path_factory.mktemp("fine") / "fine.onnx"
    return export_onnx(load_model(DEFAULT_CHECKPOINT), path, fine_stage=CorrelationConfig())


def _inputs(frames, a, b):
    return [(_gray(frames[i]).astype(np.float32) / 255.0)[None, None] for i in (a, b)]


def _assert_nearly_same(actual: RawMatches, expected: RawMatches) -> None:
    """The same matches (cells and confidences); positions and fine scores equal for at least 95 %
    of them (a point near a half pixel may round to either whole pixel, and a near-tie between two
    shifts go either way, between runtimes, moving a match by up to
    a pixel or two: see the test below)."""
    assert_same_matches(actual, expected, keypoint_atol=2.5)
    table = {key: (k1, score) for key, k1, score in zip(zip(expected.cells0.tolist(), expected.cells1.tolist()), expected.keypoints1, expected.fine_score)}
    same = [
        np.abs(k1 - table[key][0]).max() < 0.01 and abs(score - table[key][1]) < 1e-3
        for key, k1, score in zip(zip(actual.cells0.tolist(), actual.cells1.tolist()), actual.keypoints1, actual.fine_score)
    ]
    assert np.mean(same) > 0.95


@pytest.mark.slow
def test_graphs_with_the_fine_stage_equal_torch_and_each_other(fine_stage_model, freiburg_frames):
    proto = onnx.load(str(fine_stage_model))
    assert [o.name for o in proto.graph.output] == NAMES
    assert '"patch": 7' in {p.key: p.value for p in proto.metadata_props}["coarse_loftr.fine_stage"]
    x0, x1 = _inputs(freiburg_frames, 0, 2)
    pair = ort.InferenceSession(str(fine_stage_model), providers=["CPUExecutionProvider"])
    ours = RawMatches.from_outputs(dict(zip(NAMES, pair.run(NAMES, {"image0": x0, "image1": x1}))))
    wrapper = ExportableMatcher(load_model(DEFAULT_CHECKPOINT), fine_stage=CorrelationConfig()).eval()
    with torch.no_grad():
        expected = RawMatches.from_outputs({n: t.numpy() for n, t in zip(NAMES, wrapper(torch.from_numpy(x0), torch.from_numpy(x1)))})
    assert ours.fine_score is not None and len(ours.fine_score) == len(ours.confidence) > 300
    # The same matches; a match whose best shift is a near-tie between two whole-pixel shifts
    # may land on either between runtimes: compare match by match, and require nearly all equal.
    _assert_nearly_same(ours, expected)
    assert 0.1 < np.mean(ours.fine_score >= 0.7) < 1.0
    features_path, matching_path = sequence_graph_paths(fine_stage_model)
    features = ort.InferenceSession(str(features_path), providers=["CPUExecutionProvider"])
    matching = ort.InferenceSession(str(matching_path), providers=["CPUExecutionProvider"])
    f0, f1 = (features.run(None, {"image": x})[0] for x in (x0, x1))
    staged = RawMatches.from_outputs(dict(zip(NAMES, matching.run(NAMES, {"features0": f0, "features1": f1}))))
    _assert_nearly_same(staged, ours)


@pytest.mark.slow
def test_matcher_drops_matches_below_the_fine_score_in_pair_and_sequence_mode(fine_stage_model, exported_model, freiburg_frames):
    image0, image1 = _gray(freiburg_frames[0]), _gray(freiburg_frames[2])
    everything = Matcher(model=fine_stage_model, lk_refinement=False, min_fine_score=None).match(image0, image1)
    trusted = Matcher(model=fine_stage_model, lk_refinement=False).match(image0, image1)
    strict = Matcher(model=fine_stage_model, lk_refinement=False, min_fine_score=0.95).match(image0, image1)
    assert len(everything.keypoints0) > len(trusted.keypoints0) > len(strict.keypoints0) >= 20
    # the trusted matches are the ones of "everything" that the stage scored high: a subset
    pairs = lambda r: set(zip(r.cells0.tolist(), r.cells1.tolist()))  # noqa: E731
    assert pairs(strict) <= pairs(trusted) <= pairs(everything)
    # sequence mode gives the pair's matches too
    sequence = Matcher(model=fine_stage_model, lk_refinement=False)
    assert sequence.match_next(image0) is None
    assert pairs(sequence.match_next(image1)) == pairs(trusted)
    # a model without the stage ignores the setting
    plain = Matcher(exported_model, lk_refinement=False, min_fine_score=0.99).match(image0, image1)
    assert len(plain.keypoints0) == len(Matcher(exported_model, lk_refinement=False).match(image0, image1).keypoints0) > 100


def test_the_polish_follows_the_model_unless_told(exported_model, freiburg_frames):
    """lk_refinement="auto" (the default): no polish after graphs with the fine stage (the
    shipped ones), the polish after others; True and False decide for every model."""
    image0, image1 = _gray(freiburg_frames[0]), _gray(freiburg_frames[2])
    shipped, plain = Matcher(), Matcher(exported_model)
    assert shipped.fine_stage and not plain.fine_stage
    assert shipped.lk_refinement is None and plain.lk_refinement is not None
    assert shipped.match(image0, image1).timing_ms["polish"] == 0 and plain.match(image0, image1).timing_ms["polish"] > 0
    both = Matcher(lk_refinement=True)
    assert both.lk_refinement is not None and both.match(image0, image1).timing_ms["polish"] > 0
    assert Matcher(exported_model, lk_refinement=False).lk_refinement is None
    plain.lk_refinement = "auto"  # the setter takes the same values
    assert plain.lk_refinement is not None
    with pytest.raises(ValueError, match="lk_refinement must be True, False or 'auto'"):
        plain.lk_refinement = "sometimes"


def test_rows_limits_the_stage_to_the_first_matches(freiburg_frames):
    image0 = _gray(freiburg_frames[3])
    image1 = cv2.warpAffine(image0, np.float32([[1, 0, 1.5], [0, 1, 0.7]]), image0.shape[::-1])
    points0 = _grid(image0, step=24)
    start = points0 + np.float32([1.0, 1.0])
    every = _run(CorrelationRefinement(), image0, image1, points0, start)
    first = _run(CorrelationRefinement(CorrelationConfig(rows=100)), image0, image1, points0, start)
    for a, b in zip(every, first):
        assert np.array_equal(a[:100], b[:100])
    assert np.all(first[2][100:] == -1.0) and np.array_equal(first[1][100:], start[100:])

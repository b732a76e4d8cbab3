"""Comparing two match results as the product promises: the same matches, not the same bits.

Two runs of the same model on different CPU kernels (AVX-512 or not, another onnxruntime or
numpy build, a batched or a single-image CNN) round differently in the last bits. That
reorders matches whose confidences are near-ties and can move a match across a threshold or
a top-K cut by a hair. What stays is the set of matches, keyed by the matched coarse cells
(``cells0``, ``cells1``), and each match's keypoints and confidence within a tolerance.
"""

from __future__ import annotations

import numpy as np

# Matcher options that return the model's own matches: no Lucas-Kanade polish, no rotation
# search. Tests that compare two paths through the model (pair graph against sequence graphs,
# ONNX against torch) use them: the polish's keep-or-drop decision turns a 1e-4 px difference
# of a model position into a different set of matches.
MODEL_ONLY = {"lk_refinement": False, "rotation_search": False, "rewarp": False}

CONFIDENCE_ATOL = 1e-4  # measured differences between kernels: ~3e-7
KEYPOINT_ATOL_PX = 1e-2  # pixels of the original image; measured ~1e-4


def match_table(result) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]]:
    """(cell0, cell1) -> (keypoint0, keypoint1, confidence) of one result."""
    return {
        (int(c0), int(c1)): (k0, k1, float(c))
        for c0, c1, k0, k1, c in zip(result.cells0, result.cells1, result.keypoints0, result.keypoints1, result.confidence)
    }


def assert_same_matches(
    actual,
    expected,
    *,
    confidence_atol: float = CONFIDENCE_ATOL,
    keypoint_atol: float = KEYPOINT_ATOL_PX,
    cut: float | None = None,
) -> None:
    """Assert that two results hold the same matches, whatever their order.

    Args:
        actual, expected: objects with ``cells0``, ``cells1``, ``keypoints0``, ``keypoints1``
            and ``confidence`` (``MatchResult`` or one read back from a message).
        confidence_atol: allowed difference of one match's confidence.
        keypoint_atol: allowed difference of one match's keypoints, in pixels.
        cut: the confidence at which a threshold or top-K cut was applied, if any. A match in
            only one of the results is allowed when its confidence lies within
            ``confidence_atol`` of the cut (it crossed the cut by rounding); by default the
            lowest confidence of either result when both are capped, else none.
    """
    a, b = match_table(actual), match_table(expected)
    for name, result in (("actual", actual), ("expected", expected)):
        assert np.all(np.diff(result.confidence) <= confidence_atol), f"{name} is not sorted by descending confidence"
    only = [(key, table[key][2]) for table, other in ((a, b), (b, a)) for key in table.keys() - other.keys()]
    if only:
        assert cut is not None, f"{len(only)} matches in one result only, e.g. {only[:3]} (of {len(a)} and {len(b)})"
        far = [(key, c) for key, c in only if abs(c - cut) > confidence_atol]
        assert not far, f"matches in one result only, away from the cut {cut}: {far[:3]}"
    for key in a.keys() & b.keys():
        (ka0, ka1, ca), (kb0, kb1, cb) = a[key], b[key]
        assert abs(ca - cb) <= confidence_atol, f"match {key}: confidence {ca} vs {cb}"
        np.testing.assert_allclose(ka0, kb0, atol=keypoint_atol, err_msg=f"match {key}: keypoint0")
        np.testing.assert_allclose(ka1, kb1, atol=keypoint_atol, err_msg=f"match {key}: keypoint1")


FINE_STAGE_REACH_PX = 4.0
"""How far the shipped graphs' fine stage may move a match, in model-input pixels: image 0's
point to a whole pixel (0.5 each way), image 1's by the search (2 px, read 1.25 px apart) and
one sub-pixel step (1 more)."""


def assert_same_before_the_fine_stage(actual, expected, *, min_score: float = 0.7, cut: float | None = None) -> None:
    """Graphs with the fine stage (``actual``, with ``fine_score``) against the same weights
    without it (``expected``): the same matches and confidences, each within the stage's reach,
    and the matches the stage did not place (score below ``min_score``) where they were."""
    assert actual.fine_score is not None
    assert_same_matches(actual, expected, keypoint_atol=FINE_STAGE_REACH_PX, cut=cut)
    placed = {(int(c0), int(c1)) for c0, c1, s in zip(actual.cells0, actual.cells1, actual.fine_score) if s >= min_score}
    assert 0 < len(placed) < len(actual.confidence)
    a, b = match_table(actual), match_table(expected)
    for key in (a.keys() & b.keys()) - placed:
        np.testing.assert_allclose(a[key][0], b[key][0], atol=1e-3, err_msg=f"match {key}: keypoint0, not placed")
        np.testing.assert_allclose(a[key][1], b[key][1], atol=1e-3, err_msg=f"match {key}: keypoint1, not placed")

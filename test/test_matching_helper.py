"""The test helper ``assert_same_matches`` accepts a reorder of near-ties and nothing more."""

from types import SimpleNamespace

import numpy as np
import pytest

from matching import assert_same_matches


def result(cells0, cells1, confidence):
    n = len(cells0)
    points = np.stack([np.asarray(cells0, np.float32), np.asarray(cells1, np.float32)], axis=1)
    return SimpleNamespace(cells0=np.asarray(cells0), cells1=np.asarray(cells1), keypoints0=points, keypoints1=points + 1,
                           confidence=np.asarray(confidence, np.float32).reshape(n))


def test_near_ties_in_another_order_are_the_same_matches():
    assert_same_matches(result([1, 2, 3], [4, 5, 6], [0.9, 0.12045812, 0.12045789]),
                        result([1, 3, 2], [4, 6, 5], [0.9, 0.12045812, 0.12045789]))


@pytest.mark.parametrize("other", [
    result([1, 2], [4, 5], [0.9, 0.5]),                   # a match missing
    result([1, 2, 3], [4, 5, 7], [0.9, 0.5, 0.1]),        # another partner
    result([1, 2, 3], [4, 5, 6], [0.9, 0.5, 0.2]),        # another confidence
])
def test_other_matches_are_caught(other):
    with pytest.raises(AssertionError):
        assert_same_matches(result([1, 2, 3], [4, 5, 6], [0.9, 0.5, 0.1]), other)


def test_a_match_may_cross_a_cut_by_rounding_only():
    full, cut = result([1, 2, 3], [4, 5, 6], [0.9, 0.5, 0.30000001]), 0.3
    assert_same_matches(result([1, 2], [4, 5], [0.9, 0.5]), full, cut=cut)
    with pytest.raises(AssertionError):
        assert_same_matches(result([1], [4], [0.9]), full, cut=cut)

"""The overlay tells a person at a glance what they want to know, on real matches.

A readable subset (the 200 most confident by default), green for matches that agree with
one fundamental matrix and red for those that do not, and counts for all matches; the
same picture from the API and ``coarse-loftr match``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import cv2
import numpy as np
import pytest

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.matching.overlay import (
    CONSISTENT_BGR,
    DEFAULT_MAX_LINES,
    INCONSISTENT_BGR,
    draw_matches,
    geometric_consistency,
    overlay_text,
)


@pytest.fixture(scope="module")
def matched(exported_model, freiburg_frames):
    image0, image1 = freiburg_frames[0], freiburg_frames[1]
    return image0, image1, Matcher(exported_model).match(image0, image1)


def with_rows(result, rows: np.ndarray, keypoints1: np.ndarray):
    """A copy of ``result`` with ``keypoints1[rows]`` replaced."""
    moved = result.keypoints1.copy()
    moved[rows] = keypoints1
    return dataclasses.replace(result, keypoints1=moved)


def test_consecutive_frames_are_mostly_consistent_and_moved_matches_are_not(matched) -> None:
    _, _, result = matched
    consistent = geometric_consistency(result)
    assert consistent is not None and consistent.shape == (len(result),)
    assert consistent[:200].mean() > 0.8  # consecutive frames, the most confident matches
    # Move 40 of the top 200 matches to random places: the check must flag nearly all of them.
    rng = np.random.default_rng(0)
    rows = rng.choice(200, 40, replace=False)
    width, height = result.image1_size
    corrupted = with_rows(result, rows, rng.uniform((0, 0), (width - 1, height - 1), (40, 2)).astype(np.float32))
    flags = geometric_consistency(corrupted)
    assert (~flags[rows]).mean() >= 0.85
    assert geometric_consistency(corrupted) is not None and np.array_equal(flags, geometric_consistency(corrupted))  # fixed seed


def test_lines_are_green_when_consistent_and_red_when_not(matched) -> None:
    image0, image1, result = matched
    # The most confident match (drawn last, on top) moved far off its epipolar line.
    x, y = result.keypoints1[0]
    # Below the banner (top ~80 px, darkened) and far from where the match was.
    target = np.array([[(x + 300) % result.image1_size[0], 240 + (y + 100) % 200]], np.float32)
    corrupted = with_rows(result, np.array([0]), target)
    flags = geometric_consistency(corrupted)
    assert not flags[0]
    picture = draw_matches(image0, image1, corrupted)
    end = (int(round(target[0, 0])) + image0.shape[1], int(round(target[0, 1])))
    assert tuple(int(v) for v in picture[end[1], end[0]]) == INCONSISTENT_BGR
    good = int(np.flatnonzero(flags[:DEFAULT_MAX_LINES])[0])
    # The first consistent match among those drawn: its start point is green (unless a stronger match covers it).
    start = tuple(int(round(v)) for v in corrupted.keypoints0[good])
    covered = np.any(np.linalg.norm(corrupted.keypoints0[:good] - corrupted.keypoints0[good], axis=1) < 3)
    if not covered and start[1] > 100:
        assert tuple(int(v) for v in picture[start[1], start[0]]) == CONSISTENT_BGR


def test_a_readable_subset_by_default_and_counts_for_all_matches(matched) -> None:
    image0, image1, result = matched
    assert len(result) > DEFAULT_MAX_LINES == 200
    consistent = geometric_consistency(result)
    lines = overlay_text(result, consistent, min(len(result), DEFAULT_MAX_LINES))
    assert lines[0].startswith(f"{len(result)} matches, {int(consistent.sum())} consistent")
    assert "showing the 200 most confident" in lines[1] and "green: consistent, red: not" in lines[1]
    default = draw_matches(image0, image1, result)
    few = draw_matches(image0, image1, result, max_lines=20)
    everything = draw_matches(image0, image1, result, max_lines=len(result))
    below_banner = slice(80, None)
    coloured = [np.count_nonzero(np.abs(p[below_banner].astype(int) - d[below_banner]).sum(axis=2) > 0) for p, d in ((few, default), (everything, default))]
    assert coloured[0] > 0 and coloured[1] > 0  # 20 < 200 < all lines: three different pictures
    assert default.shape == (480, 1280, 3) and default.dtype == np.uint8
    # A cap of 0 (or None) means no cap, as for max_matches.
    assert np.array_equal(draw_matches(image0, image1, result, max_lines=0), everything)
    assert np.array_equal(draw_matches(image0, image1, result, max_lines=None), everything)


def test_few_or_no_matches_are_drawn_without_a_geometry(matched) -> None:
    image0, image1, result = matched
    few = dataclasses.replace(result, keypoints0=result.keypoints0[:5], keypoints1=result.keypoints1[:5], confidence=result.confidence[:5],
                              cells0=result.cells0[:5], cells1=result.cells1[:5])
    assert geometric_consistency(few) is None
    assert "too few to check" in overlay_text(few, None, 5)[0]
    assert draw_matches(image0, image1, few).shape == (480, 1280, 3)
    none = dataclasses.replace(few, keypoints0=few.keypoints0[:0], keypoints1=few.keypoints1[:0], confidence=few.confidence[:0],
                               cells0=few.cells0[:0], cells1=few.cells1[:0])
    assert draw_matches(image0[:100], image1, none).shape == (480, 1280, 3)


def test_match_command_writes_the_same_picture_as_the_api(matched, exported_model, tmp_path) -> None:
    image0, image1, result = matched
    paths = tmp_path / "a.png", tmp_path / "b.png"
    for path, image in zip(paths, (image0, image1)):
        cv2.imwrite(str(path), image)
    out = tmp_path / "overlay.png"
    done = subprocess.run([sys.executable, "-m", "coarse_loftr_ros.cli", "match", *map(str, paths), "--model", str(exported_model),
                           "--overlay", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = cv2.imread(str(out))
    expected = draw_matches(image0, image1, result)
    # The banner holds the run's time; everything below it is the same picture.
    difference = np.abs(written[80:].astype(int) - expected[80:]).mean()
    assert written.shape == expected.shape and difference < 0.5

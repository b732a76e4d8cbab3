"""Tracks chained from sequence-mode cells, and the keyframe policy a SLAM front end runs, on real frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared_data import SHARED, require
from coarse_loftr_ros.ros.pairing import Frame, SequencePairer
from coarse_loftr_ros.matching.tracks import CellTracker, track_statistics

KITTI_IMAGES = SHARED / "data" / "kitti_seq_dev" / "images"


def test_cells_chain_into_tracks_of_the_frames_they_span():
    tracker = CellTracker()
    first = tracker.update(np.array([10, 11, 12]), np.array([20, 21, 22]))  # frames 0 -> 1
    second = tracker.update(np.array([20, 22, 30]), np.array([40, 42, 43]))  # 21 stops, 30 starts
    third = tracker.update(np.array([40, 43]), np.array([50, 51]))  # 42 stops
    assert second[0] == first[0] and second[1] == first[2] and second[2] not in first
    assert third.tolist() == [first[0], second[2]]
    # 10-20-40-50: 4 frames; 12-22-42: 3; 11-21: 2; 30-43-51: 3.
    assert sorted(tracker.lengths().tolist()) == [2, 3, 3, 4]
    assert track_statistics(tracker.lengths()) == {"tracks": 4, "mean": 3.0, "median": 3.0, "p90": pytest.approx(3.7), "max": 4}
    tracker.reset()
    assert tracker.update(np.array([50]), np.array([60]))[0] not in third  # no chaining across a reset


def test_two_matches_on_one_cell_keep_the_longer_track():
    tracker = CellTracker()
    ids = tracker.update(np.array([1, 2]), np.array([5, 6]))
    tracker.update(np.array([6]), np.array([7]))  # track of cell 2 is now 3 frames long
    merged = tracker.update(np.array([9, 7]), np.array([8, 8]))  # a new match and that track land on 8
    assert merged[1] == ids[1] and merged[0] not in ids  # the new one keeps its id and ends
    assert sorted(tracker.lengths().tolist()) == [2, 2, 4]  # 1-5; 9-8 ended at the merge; 2-6-7-8
    with pytest.raises(ValueError, match="one entry per match"):
        tracker.update(np.array([1, 2]), np.array([3]))


@pytest.fixture(scope="module")
def kitti_frames() -> list[np.ndarray]:
    files = sorted(require(KITTI_IMAGES).glob("*.png"))[:12]
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


@pytest.mark.slow
def test_sequence_mode_on_kitti_frames_gives_tracks_beyond_one_pair(kitti_frames):
    from coarse_loftr_ros import Matcher

    matcher, tracker = Matcher(), CellTracker()
    for frame in kitti_frames:
        result = matcher.match_next(frame)
        if result is not None:
            tracker.update(result.cells0, result.cells1)
    stats = track_statistics(tracker.lengths())
    # Measured on these 12 frames: ~200 matches per pair, mean length ~4 frames.
    assert stats["tracks"] > 300 and stats["mean"] > 2.5 and stats["max"] >= 8


@pytest.mark.slow
def test_keyframe_replaced_when_matches_to_it_fall_on_real_frames(kitti_frames):
    """The node's ``keyframe_every: 0, keyframe_min_matches: N`` policy with extract / match_extracted:
    a forward-driving car loses matches to an old keyframe, so the keyframe moves along."""
    from coarse_loftr_ros import Matcher

    matcher = Matcher()
    # 180: with the zoom views a frame 10 frames past its keyframe still has 140-150 matches
    # (without them 80-90), so the threshold that moves the keyframe within 12 frames is higher.
    pairer = SequencePairer(keyframe_every=0, min_matches=180)
    features = [matcher.extract(frame) for frame in kitti_frames]
    references, counts = [], []
    for index, feature in enumerate(features):
        pair = pairer.push(Frame(index, (index, feature)))
        if pair is None:
            continue
        result = matcher.match_extracted(pair.reference.data[1], pair.current.data[1])
        pairer.report_matches(len(result))
        references.append(pair.reference.data[0])
        counts.append(len(result))
    assert references[0] == 0
    # Matches fall with the distance to the keyframe (1.2 m per frame) ...
    assert counts[0] > 180 and counts[0] > counts[references.count(0) - 1]
    # ... until a frame below 180 takes over: several keyframes, each frame matched to the newest.
    assert 2 <= pairer.keyframes < len(kitti_frames)
    assert references == sorted(references)
    for reference, count, nxt in zip(references, counts, references[1:]):
        assert nxt == reference or count < 180


@pytest.mark.slow
def test_keyframe_replaced_when_the_match_score_falls_on_real_frames(kitti_frames):
    """The node's ``keyframe_every: 0, keyframe_min_score: S`` policy, through ``MessageMatcher``
    (the node's path) on real image messages: the score falls with the distance to the keyframe
    (KITTI, shipped model: about 0.47 one frame apart, 0.2 five apart), so the keyframe moves
    along, and only after a pair scored below S."""
    pytest.importorskip("rosbags")
    from test_message_matching import header, image_message

    from coarse_loftr_ros import Matcher
    from coarse_loftr_ros.ros.message_matching import MessageMatcher

    streams = MessageMatcher(Matcher(), keyframe_every=0, keyframe_min_score=0.3)
    stamps = {(header(i).stamp.sec, header(i).stamp.nanosec): i for i in range(len(kitti_frames))}
    references, scores = [], []
    for index, frame in enumerate(kitti_frames):
        matched = streams.match_sequence(image_message(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), index))
        if matched is not None:
            references.append(stamps[(matched.header0.stamp.sec, matched.header0.stamp.nanosec)])
            scores.append(matched.result.match_score)
    assert references[0] == 0 and scores[0] > 0.3
    assert 2 <= streams.pairer.keyframes < len(kitti_frames)
    assert references == sorted(references)
    for reference, score, nxt in zip(references, scores, references[1:]):
        assert nxt == reference or score < 0.3


@pytest.mark.slow
def test_the_keyframe_example_of_node_md_runs_as_written():
    """docs/node.md's keyframe example, verbatim, from the checkout (it reads ../shared)."""
    import re
    import subprocess
    import sys

    from shared_data import REPO

    require(KITTI_IMAGES)
    text = (REPO / "docs" / "node.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "match_extracted(keyframe" in b]
    assert len(blocks) == 1
    process = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert process.returncode == 0, process.stderr
    lines = process.stdout.strip().splitlines()
    assert len(lines) == 14 and all("matches to the keyframe" in line for line in lines)
    counts = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert min(counts) < 180 < max(counts)  # the keyframe was replaced at least once, on real matching

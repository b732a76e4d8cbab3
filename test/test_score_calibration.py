"""Match-score calibration: a model's pair scores over the shipped model's, measured on video
frames, written into its graphs by `coarse-loftr export --score-frames`, and divided out by the
Matcher before the steps' thresholds."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from cli_run import assert_one_line_error, run_cli
from shared_data import REPO, SHARED, require

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.backends.base import METADATA_PREFIX
from coarse_loftr_ros.errors import CoarseLoftrError, ModelError
from coarse_loftr_ros.tools.calibration import score_scale

FREIBURG = SHARED / "data" / "freiburg_sequence"
SHIPPED = REPO / "coarse_loftr_ros" / "models" / "default.onnx"
GRAPHS = ("default.onnx", "default.features.onnx", "default.matching.onnx")


def shipped_with_scale(folder: Path, scale: str) -> Path:
    """The shipped graphs copied to ``folder``, their metadata saying ``match_score_scale``."""
    for name in GRAPHS:
        proto = onnx.load(str(SHIPPED.parent / name))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + "match_score_scale", scale
        onnx.save(proto, str(folder / name))
    return folder / "default.onnx"


def test_scores_are_divided_by_the_models_scale(tmp_path, freiburg_frames):
    once = dict(max_model_runs=1, threads=1)
    shipped = Matcher(**once).match(freiburg_frames[0], freiburg_frames[1])
    halved = Matcher(shipped_with_scale(tmp_path, "2.0"), **once).match(freiburg_frames[0], freiburg_frames[1])
    assert shipped.match_score > 0.2
    assert halved.match_score == pytest.approx(shipped.match_score / 2, rel=1e-5)
    assert len(halved) == len(shipped)  # the scale changes what the steps decide, not the matches


def test_a_model_that_scores_high_gets_the_steps_the_shipped_one_would_not(tmp_path, freiburg_frames):
    """Scores divided by 4 fall below the search's and the rewarp's thresholds: the steps run on
    a pair the shipped model matches in one run."""
    pair = freiburg_frames[0], freiburg_frames[1]
    assert Matcher(threads=1).match(*pair).model_runs == 1
    assert Matcher(shipped_with_scale(tmp_path, "4"), threads=1).match(*pair).model_runs >= 2


@pytest.mark.parametrize("text", ["-1", "0", "nan", "fast"])
def test_a_bad_scale_in_the_metadata_is_a_model_error(tmp_path, text):
    with pytest.raises(ModelError, match="match_score_scale"):
        Matcher(shipped_with_scale(tmp_path, text))


def test_score_scale_undoes_the_models_own_scale(tmp_path):
    """The shipped graphs marked 2.0 against the shipped model: the same scores, ratio 1."""
    scale, pairs = score_scale(shipped_with_scale(tmp_path, "2.0"), [require(FREIBURG)], pairs_per_folder=3, threads=1)
    assert pairs == 3
    assert scale == pytest.approx(1.0, abs=1e-5)


def test_score_scale_needs_folders_of_frames(tmp_path):
    (tmp_path / "one").mkdir()
    shutil.copy(sorted(require(FREIBURG).glob("*.png"))[0], tmp_path / "one" / "000000.png")
    with pytest.raises(CoarseLoftrError, match="at least two images"):
        score_scale(SHIPPED, [tmp_path / "one"])
    with pytest.raises(CoarseLoftrError, match="not a folder"):
        score_scale(SHIPPED, [tmp_path / "absent"])


@pytest.mark.slow
def test_export_writes_the_measured_scale_into_every_graph(tmp_path):
    """The shipped checkpoint exported again scores as the shipped graphs: scale 1 within 2 %."""
    pytest.importorskip("torch")
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in sorted(require(FREIBURG).glob("*.png"))[:4]:
        shutil.copy(path, frames / path.name)
    output = tmp_path / "model.onnx"
    done = run_cli("export", "--checkpoint", REPO / "coarse_loftr_ros" / "models" / "default.pt", "--output", output, "--score-frames", frames)
    assert done.returncode == 0, done.stderr
    assert "match scores:" in done.stdout and "3 consecutive pairs" in done.stdout
    for path in (output, output.with_suffix(".features.onnx"), output.with_suffix(".matching.onnx")):
        metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert float(metadata[METADATA_PREFIX + "match_score_scale"]) == pytest.approx(1.0, abs=0.02)
    assert Matcher(output).match_score_scale == pytest.approx(1.0, abs=0.02)


def test_export_refuses_a_bad_frames_folder_before_exporting(tmp_path):
    process = run_cli("export", "--checkpoint", REPO / "coarse_loftr_ros" / "models" / "default.pt",
                      "--output", tmp_path / "model.onnx", "--score-frames", tmp_path / "absent")
    assert_one_line_error(process, "--score-frames", "not a folder")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
def test_a_checkpoints_stored_scale_reaches_the_torch_backend_and_the_export(tmp_path):
    torch = pytest.importorskip("torch")
    data = torch.load(REPO / "coarse_loftr_ros" / "models" / "default.pt", weights_only=True)
    data["match_score_scale"] = 2.0
    checkpoint = tmp_path / "scaled.pt"
    torch.save(data, checkpoint)
    assert Matcher(checkpoint).match_score_scale == 2.0
    output = tmp_path / "scaled.onnx"
    done = run_cli("export", "--checkpoint", checkpoint, "--output", output)
    assert done.returncode == 0, done.stderr
    assert "stored in the checkpoint" in done.stdout
    assert Matcher(output).match_score_scale == 2.0

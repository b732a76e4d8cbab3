"""A model file must not run code: checkpoints load weights only, every entry point.

The hostile checkpoint is a real ``torch.save`` file whose pickle calls ``exec`` to write
a marker file when unpickled without restriction. Every way a user hands a checkpoint to
the package (the API, ``Matcher(model=...)``, ``match --model``, ``export --checkpoint``,
``train --resume``) must refuse it with one line and leave no marker.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from coarse_loftr_ros.errors import CheckpointSecurityError, ModelError  # noqa: E402
from coarse_loftr_train import STUDENT, CoarseLoFTR  # noqa: E402
from coarse_loftr_train.checkpoint import TRUSTED_CHECKPOINT_ENV, load_model, read_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class WritesAMarker:
    """Unpickled without restriction, this runs ``exec`` and creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').write('code ran')",))


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(checkpoint, marker): a checkpoint in our layout with a code-running object inside."""
    marker = tmp_path / "marker.txt"
    model = CoarseLoFTR(STUDENT.with_input_size(128, 96))
    path = tmp_path / "hostile.pt"
    torch.save({"model_state_dict": model.state_dict(), "config": model.config.to_dict(), "extra": WritesAMarker(marker)}, path)
    return path, marker


def assert_refused_in_one_line(process: subprocess.CompletedProcess, marker: Path) -> None:
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in process.stderr, process.stderr
    assert "refusing checkpoint" in lines[0] and "could run code" in lines[0] and "exec" in lines[0]
    assert not marker.exists()


def cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coarse_loftr_ros.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)


def test_the_hostile_file_really_runs_code_without_the_restriction(hostile) -> None:
    # The test is only meaningful if an unrestricted load would run the code.
    path, marker = hostile
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_load_model_refuses_it_in_one_line(hostile) -> None:
    path, marker = hostile
    with pytest.raises(CheckpointSecurityError) as error:
        load_model(path)
    assert "\n" not in str(error.value) and TRUSTED_CHECKPOINT_ENV in str(error.value)
    assert isinstance(error.value, ModelError)
    assert not marker.exists()


def test_matcher_refuses_it(hostile) -> None:
    from coarse_loftr_ros import Matcher

    path, marker = hostile
    with pytest.raises(CheckpointSecurityError):
        Matcher(model=path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["match", "export"])
def test_cli_refuses_it_in_one_line(command, hostile, tmp_path) -> None:
    path, marker = hostile
    if command == "match":
        image = REPO.parent / "shared" / "data" / "freiburg_sequence"
        frames = sorted(image.glob("*.png"))[:2] if image.is_dir() else []
        if len(frames) < 2:
            pytest.skip("needs ../shared/data/freiburg_sequence")
        done = cli("match", *frames, "--model", path)
    else:
        done = cli("export", "--checkpoint", path, "--output", tmp_path / "x.onnx")
        assert not (tmp_path / "x.onnx").exists()
    assert_refused_in_one_line(done, marker)


def test_train_resume_refuses_it(hostile, tmp_path) -> None:
    import cv2
    import skimage.data

    path, marker = hostile
    images = tmp_path / "images"
    images.mkdir()
    for index, name in enumerate(("astronaut", "camera", "coffee")):
        image = getattr(skimage.data, name)()
        cv2.imwrite(str(images / f"{index}.png"), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    done = cli("train", "--resume", path, f"output={tmp_path / 'run'}", f"data.images={images}", "data.holdout=1",
               "data.pairs_per_epoch=4", "model.input_width=128", "model.input_height=96", "optim.batch_size=2",
               "train.threads=1", "train.progress=false", "validation.pairs=1")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "refusing checkpoint" in errors[0] and "Traceback" not in done.stderr
    assert not marker.exists()


def test_real_checkpoint_layouts_load_weights_only(tmp_path, released_checkpoint) -> None:
    # The released student: model, optimizer and scaler states and the epoch.
    released = read_checkpoint(released_checkpoint)
    assert {"model_state_dict", "optimizer_state_dict", "scaler_state_dict", "epoch"} <= set(released)
    # Our trainer's layout, with real optimizer, scheduler and scaler states after one step.
    model = CoarseLoFTR(STUDENT.with_input_size(128, 96))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ours = {
        "model_state_dict": model.state_dict(), "config": model.config.to_dict(),
        "optimizer_state_dict": optimizer.state_dict(), "scaler_state_dict": torch.amp.GradScaler("cuda", enabled=False).state_dict(),
        "scheduler_state_dict": scheduler.state_dict(), "epoch": 3, "step": 40, "best_auc5": 0.5,
        "validation": {"auc@5px": 0.5}, "settings": {"output": "runs/x", "optim": {"milestones": [3, 6]}},
    }
    torch.save(ours, tmp_path / "ours.pt")
    assert load_model(tmp_path / "ours.pt").config == model.config
    # LoFTR's Lightning layout.
    lightning = {"state_dict": {f"matcher.{k}": v for k, v in released["model_state_dict"].items()}, "epoch": 1,
                 "global_step": 10, "pytorch-lightning_version": "1.3.5"}
    torch.save(lightning, tmp_path / "lightning.ckpt")
    load_model(tmp_path / "lightning.ckpt", "student")


def test_a_trusted_legacy_file_loads_only_when_named_explicitly(tmp_path, monkeypatch) -> None:
    model = CoarseLoFTR(STUDENT.with_input_size(128, 96))
    legacy = tmp_path / "legacy.pt"
    torch.save({"model_state_dict": model.state_dict(), "config": model.config.to_dict(), "hparams": argparse.Namespace(lr=1e-3)}, legacy)
    other = tmp_path / "other.pt"
    other.write_bytes(legacy.read_bytes())
    with pytest.raises(CheckpointSecurityError, match="argparse.Namespace"):
        load_model(legacy)
    assert load_model(legacy, trusted=True).config == model.config
    monkeypatch.setenv(TRUSTED_CHECKPOINT_ENV, str(legacy))
    assert load_model(legacy).config == model.config
    with pytest.raises(CheckpointSecurityError):  # the opt-in names one file, not all of them
        load_model(other)

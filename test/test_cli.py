"""The `coarse-loftr` command: the main job, the JSON contract, and one-line errors for bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_run import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def images(tmp_path_factory, motorcycle) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    left, right = folder / "left.png", folder / "right.jpg"
    cv2.imwrite(str(left), motorcycle[0])
    cv2.imwrite(str(right), motorcycle[1])
    return left, right


def test_help_lists_every_command():
    process = run_cli("--help")
    assert process.returncode == 0
    for command in ("match", "export"):
        assert command in process.stdout


def test_match_writes_json_contract_and_overlay(tmp_path, images, exported_model):
    out_json, out_png = tmp_path / "m.json", tmp_path / "m.png"
    process = run_cli("match", *images, "--model", exported_model, "--json", out_json, "--overlay", out_png)
    assert process.returncode == 0, process.stderr
    assert "matches between left.png (741x500) and right.jpg (741x500)" in process.stdout
    data = json.loads(out_json.read_text())
    for key in ("keypoints0", "keypoints1", "confidence", "image0_size", "image1_size", "backend", "model", "timing_ms"):
        assert key in data
    n = len(data["confidence"])
    assert n > 100 and len(data["keypoints0"]) == len(data["keypoints1"]) == n
    assert all(len(p) == 2 for p in data["keypoints0"])
    assert data["image0_size"] == [741, 500] and data["backend"] == "onnxruntime"
    overlay = cv2.imread(str(out_png))
    assert overlay.shape == (500, 741 * 2, 3)


def test_export_command_writes_a_model(tmp_path, released_checkpoint):
    output = tmp_path / "exported.onnx"
    process = run_cli("export", "--checkpoint", released_checkpoint, "--output", output, "--width", "320", "--height", "240")
    assert process.returncode == 0, process.stderr
    assert output.is_file() and "320x240" in process.stdout
    bad = run_cli("export", "--checkpoint", released_checkpoint, "--output", tmp_path / "x.onnx", "--width", "300")
    assert_one_line_error(bad, "multiple of the coarse stride 16")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = {
        "text": folder / "notes.png",
        "empty": folder / "empty.png",
        "tiny": folder / "tiny.png",
        "small": folder / "small.png",
        "truncated": folder / "truncated.png",
        "folder": folder / "dir.png",
    }
    files["text"].write_text("this is not an image\n")
    files["empty"].write_bytes(b"")
    cv2.imwrite(str(files["tiny"]), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(files["small"]), np.zeros((10, 12), np.uint8))
    ok, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    files["truncated"].write_bytes(encoded.tobytes()[:100])
    files["folder"].mkdir()
    return files


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("missing", ("does not exist",)),
        ("text", ("not a readable image",)),
        ("empty", ("is empty",)),
        ("tiny", ("smaller than one coarse cell",)),
        ("small", ("12x10 pixels is smaller than one coarse cell",)),
        ("truncated", ("not a readable image",)),
        ("folder", ("is not a file",)),
    ],
)
def test_bad_images_are_one_line_errors(name, fragments, bad_files, images, exported_model, tmp_path):
    path = bad_files.get(name, tmp_path / "missing.png")
    process = run_cli("match", images[0], path, "--model", exported_model)
    assert_one_line_error(process, *fragments)


def _wrong_input_model(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, 480, 640])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 480, 640])
    graph = helper.make_graph([helper.make_node("Identity", ["rgb"], ["out"])], "wrong", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bad_models_are_one_line_errors(tmp_path, images):
    assert_one_line_error(run_cli("match", *images, "--model", tmp_path / "missing.onnx"), "does not exist")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    assert_one_line_error(run_cli("match", *images, "--model", corrupt), "cannot load ONNX model")
    wrong = _wrong_input_model(tmp_path / "wrong.onnx")
    assert_one_line_error(run_cli("match", *images, "--model", wrong), "expected two float32 [1, 1, H, W] images")
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"0")
    assert_one_line_error(run_cli("match", *images, "--model", unknown), "unknown type")
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"PK\x03\x04 broken zip")
    assert_one_line_error(run_cli("match", *images, "--model", checkpoint), "cannot read checkpoint")

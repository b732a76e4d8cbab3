"""The backend comparison behind ``scripts/jetson_check.sh``.

On a GPU machine the script compares TensorRT with ONNX Runtime; here (no TensorRT) it
is exercised with ONNX Runtime on both sides, and its tolerance checks are tested by
perturbing a real result. The shell script's own argument checks and its first step
(TensorRT missing -> exit 1 with the reason) run here too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHECKPOINT = SHARED / "weights" / "coarse_loftr_trt_student.pt"
FRAMES = sorted((SHARED / "data" / "freiburg_sequence").glob("*.png"))
ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's package, whatever is installed

needs_shared = pytest.mark.skipif(
    not CHECKPOINT.is_file() or len(FRAMES) < 4, reason="../shared weights or freiburg frames are absent"
)


def _load_script():
    spec = importlib.util.spec_from_file_location("compare_backends", REPO / "scripts" / "compare_backends.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _load_script()


@pytest.fixture(scope="module")
def reference_result(exported_model: Path):
    """ONNX Runtime's matches of two freiburg frames with the released weights (conftest's export)."""
    from coarse_loftr_ros import Matcher
    from coarse_loftr_ros.imageio import read_image

    return Matcher(model=exported_model, backend="onnxruntime").match(read_image(FRAMES[0]), read_image(FRAMES[3]))


@needs_shared
def test_identical_backends_agree_exactly(exported_model: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    command = [
        sys.executable, str(REPO / "scripts" / "compare_backends.py"), str(FRAMES[0]), str(FRAMES[3]),
        "--model", str(exported_model), "--backend", "onnxruntime", "--reference-model", str(exported_model),
        "--precision", "fp32", "--repeat", "1", "--json", str(report_path),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["reference_strong"] > 20
    assert report["reference_found"] == report["candidate_found"] == 1.0
    assert report["max_abs_conf"] == 0.0 and report["max_keypoint_diff_px"] == 0.0
    sequence = report["sequence"]
    assert sequence["reference_uses_sequence_graphs"] and sequence["candidate_uses_sequence_graphs"]
    assert sequence["reference_found"] == sequence["candidate_found"] == 1.0 and sequence["reference_strong"] > 20


@needs_shared
def test_tolerances_catch_missing_matches(reference_result) -> None:
    strong = np.flatnonzero(reference_result.confidence >= 0.2)
    drop = strong[: max(1, len(strong) // 5)]  # the 20 % most confident matches go missing
    keep = np.setdiff1d(np.arange(len(reference_result)), drop)
    candidate = dataclasses.replace(
        reference_result,
        keypoints0=reference_result.keypoints0[keep], keypoints1=reference_result.keypoints1[keep],
        confidence=reference_result.confidence[keep], cells0=reference_result.cells0[keep], cells1=reference_result.cells1[keep],
    )
    report = compare.agreement(reference_result, candidate)
    assert report["reference_found"] == pytest.approx(1 - len(drop) / len(strong))
    assert report["candidate_found"] == 1.0
    assert any("reference_found" in f for f in compare.failures(report, "fp16"))
    assert compare.failures(report, "int8") == []


@needs_shared
def test_tolerances_catch_confidence_and_position_changes(reference_result) -> None:
    noisy = dataclasses.replace(reference_result, confidence=reference_result.confidence + np.float32(0.02))
    report = compare.agreement(reference_result, noisy)
    assert report["median_abs_conf"] == pytest.approx(0.02, abs=1e-6)
    assert [f.split()[0] for f in compare.failures(report, "fp16")] == ["median_abs_conf"]
    assert compare.failures(report, "int8") == []

    shifted = dataclasses.replace(reference_result, keypoints1=reference_result.keypoints1 + np.float32(0.5))
    assert [f.split()[0] for f in compare.failures(compare.agreement(reference_result, shifted), "int8")] == [
        "max_keypoint_diff_px"
    ]


def test_script_reports_a_missing_image_in_one_line(tmp_path: Path) -> None:
    command = [
        sys.executable, str(REPO / "scripts" / "compare_backends.py"), str(tmp_path / "a.png"), str(tmp_path / "b.png"),
        "--model", str(tmp_path / "m.onnx"), "--reference-model", str(tmp_path / "m.onnx"),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"compare_backends: error: image file {tmp_path / 'a.png'} does not exist; check the path"]


def test_jetson_check_arguments(tmp_path: Path) -> None:
    script = str(REPO / "scripts" / "jetson_check.sh")
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "jetson_check.sh MODEL.onnx IMAGE0 IMAGE1" in done.stderr
    files = []
    for name in ("m.onnx", "a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
        files.append(str(tmp_path / name))
    done = subprocess.run(["bash", script, *files, "fp64"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "precision must be" in done.stderr
    done = subprocess.run(["bash", script, *files, "int8"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "CALIBRATION_DIR" in done.stderr


def test_jetson_check_stops_when_tensorrt_is_missing(tmp_path: Path) -> None:
    from coarse_loftr_ros.backends.tensorrt_backend import tensorrt_available

    available, _ = tensorrt_available()
    if available:
        pytest.skip("TensorRT and a GPU are present: run the script itself")
    files = []
    for name in ("m.onnx", "a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
        files.append(str(tmp_path / name))
    done = subprocess.run(["bash", str(REPO / "scripts" / "jetson_check.sh"), *files], capture_output=True, text=True, timeout=120, env={**ENV, "TMPDIR": str(tmp_path)})
    assert done.returncode == 1
    assert "NOT available: TensorRT is not installed" in done.stdout
    assert "build-engine" not in done.stdout  # stopped at step 1

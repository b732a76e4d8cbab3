"""What of the TensorRT path runs without TensorRT: cache keys, IO plans, calibration batches,
``build-engine`` argument handling, and the one-line error when TensorRT or a GPU is missing.

The engine build and the runtime themselves need TensorRT and an NVIDIA GPU; they are
checked by ``scripts/jetson_check.sh`` on such a machine, not here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coarse_loftr_ros.backends.base import INPUT_NAMES, OUTPUT_NAMES
from coarse_loftr_ros.backends.tensorrt_backend import TensorRTBackend, tensorrt_available
from coarse_loftr_ros.cli import main
from coarse_loftr_ros.errors import BackendUnavailableError, ImageError, ModelError
from coarse_loftr_ros.imageio import read_image
from coarse_loftr_ros.preprocess import to_model_input
from coarse_loftr_ros.outputs import write_atomically
from coarse_loftr_ros.backends.tensorrt_plan import (
    CACHE_DIR_ENV,
    CalibrationImages,
    EngineCacheKey,
    cached_engine_path,
    default_cache_dir,
    check_size_range,
    feature_map_shapes,
    file_sha256,
    optimization_profile_shapes,
    plan_from_onnx,
    read_sidecar,
    resolve_input_shapes,
    sequence_graph_files,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RELEASED_ONNX = SHARED / "weights" / "coarse_loftr_trt_student.onnx"
TRT_AVAILABLE, TRT_REASON = tensorrt_available()
needs_no_tensorrt = pytest.mark.skipif(TRT_AVAILABLE, reason=f"TensorRT and a GPU are present here ({TRT_REASON})")

BASE_KEY = EngineCacheKey(
    tensorrt_version="10.3.0",
    gpu_name="Orin",
    compute_capability=(8, 7),
    model_sha256="a" * 64,
    precision="fp16",
    input_size=(640, 480),
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `coarse-loftr export` model (student architecture, random weights, 160x128)."""
    torch = pytest.importorskip("torch")
    from coarse_loftr_train.config import get_config
    from coarse_loftr_train.export import ExtractionConfig, export_onnx
    from coarse_loftr_train.model import CoarseLoFTR

    torch.manual_seed(0)
    model = CoarseLoFTR(get_config("student").with_input_size(160, 128))
    return export_onnx(model, tmp_path_factory.mktemp("export") / "student_160x128.onnx", ExtractionConfig(top_k=32))


@pytest.fixture(scope="module")
def small_static_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architecture exported with fixed 160x128 inputs (``dynamic=False``), pair graph only."""
    torch = pytest.importorskip("torch")
    from coarse_loftr_train.config import get_config
    from coarse_loftr_train.export import ExtractionConfig, export_onnx
    from coarse_loftr_train.model import CoarseLoFTR

    torch.manual_seed(0)
    model = CoarseLoFTR(get_config("student").with_input_size(160, 128))
    path = tmp_path_factory.mktemp("export") / "student_fixed.onnx"
    return export_onnx(model, path, ExtractionConfig(top_k=32), sequence_graphs=False, dynamic=False)


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small convolutional model exported with dynamic batch, height and width."""
    torch = pytest.importorskip("torch")

    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.avg_pool2d(self.conv(image), 4)

    path = tmp_path_factory.mktemp("dynamic") / "dynamic.onnx"
    torch.onnx.export(
        Pool().eval(),
        (torch.zeros(1, 1, 64, 96),),
        str(path),
        input_names=["image"],
        output_names=["features"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
        opset_version=17,
        dynamo=False,
    )
    return path


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image) in several formats, plus a corrupt image and a text file."""
    import cv2

    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("calibration")
    cv2.imwrite(str(folder / "a_camera.png"), data.camera())
    cv2.imwrite(str(folder / "b_astronaut.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "c_coffee.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGRA))
    (folder / "d_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "notes.txt").write_text("not an image")
    return folder


# --------------------------------------------------------------------------- cache keys


@pytest.mark.parametrize(
    "field, value",
    [
        ("tensorrt_version", "10.4.0"),
        ("tensorrt_version", "8.6.2"),
        ("gpu_name", "NVIDIA GeForce RTX 3060"),
        ("compute_capability", (8, 6)),
        ("model_sha256", "b" * 64),
        ("precision", "fp32"),
        ("precision", "int8"),
        ("input_size", (480, 640)),
        ("input_size", (320, 240)),
    ],
)
def test_cache_key_changes_with_each_component(field: str, value: object) -> None:
    changed = dataclasses.replace(BASE_KEY, **{field: value})
    assert changed.digest() != BASE_KEY.digest()
    assert changed.file_name("student") != BASE_KEY.file_name("student")


def test_cache_key_is_stable_across_instances_and_processes() -> None:
    same = EngineCacheKey("10.3.0", "Orin", (8, 7), "a" * 64, "fp16", (640, 480))
    assert same.digest() == BASE_KEY.digest()
    # A fresh interpreter with another hash seed must compute the same key (no hash(), no dict order).
    code = (
        "from coarse_loftr_ros.backends.tensorrt_plan import EngineCacheKey;"
        "print(EngineCacheKey('10.3.0', 'Orin', (8, 7), 'a' * 64, 'fp16', (640, 480)).digest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == BASE_KEY.digest()


def test_cache_key_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        dataclasses.replace(BASE_KEY, precision="fp8")


def test_cached_engine_path_is_readable_and_in_the_cache(tmp_path: Path) -> None:
    path = cached_engine_path(tmp_path, "/models/my model.onnx", BASE_KEY)
    assert path.parent == tmp_path
    assert path.name == f"my_model_fp16_640x480_{BASE_KEY.digest()}.engine"


def test_default_cache_dir_and_its_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "coarse_loftr_ros" / "engines"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"


def test_model_hash_follows_the_file_bytes(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x00" * 5000)
    first = file_sha256(model)
    assert first == file_sha256(model)
    model.write_bytes(b"\x00" * 4999 + b"\x01")
    assert file_sha256(model) != first


def test_write_atomically_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.engine"
    write_atomically(target, b"first")
    write_atomically(target, b"second engine")
    assert target.read_bytes() == b"second engine"
    with pytest.raises(TypeError):  # a failing write keeps the old file
        write_atomically(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"second engine"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.engine"]


def test_engine_without_its_description_is_a_one_line_error(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(ModelError, match="build-engine") as error:
        read_sidecar(engine)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match="build-engine"):
        TensorRTBackend(engine)


# --------------------------------------------------------------------------- IO plans


@pytest.mark.skipif(not RELEASED_ONNX.is_file(), reason=f"{RELEASED_ONNX} is absent (../shared not mounted)")
def test_plan_of_the_released_onnx() -> None:
    plan = plan_from_onnx(RELEASED_ONNX)
    inputs = [s for s in plan if s.is_input]
    outputs = [s for s in plan if not s.is_input]
    assert [(s.name, s.shape, s.dtype) for s in inputs] == [
        ("img0", (1, 1, 480, 640), np.float32),
        ("img1", (1, 1, 480, 640), np.float32),
    ]
    assert [s.nbytes for s in inputs] == [480 * 640 * 4] * 2
    assert len(outputs) == 2 and all(s.shape == (1, 1200, 1200) and s.dtype == np.float32 for s in outputs)


def test_plan_of_an_exported_matcher_agrees_with_onnxruntime(small_export: Path) -> None:
    import onnxruntime as ort

    plan = plan_from_onnx(small_export)
    assert [s.name for s in plan if s.is_input] == list(INPUT_NAMES)
    assert [s.name for s in plan if not s.is_input] == list(OUTPUT_NAMES)
    specs = {s.name: s for s in plan}
    assert specs["image0"].shape == (1, 1, 128, 160)
    assert specs["keypoints0"].shape == (1, 32, 2) and specs["valid"].dtype == np.bool_
    assert specs["cells1"].dtype == np.int32 and specs["confidence"].nbytes == 32 * 4

    session = ort.InferenceSession(str(small_export), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((1, 1, 128, 160), dtype=np.float32)
    outputs = session.run(list(OUTPUT_NAMES), {"image0": image, "image1": image})
    for name, value in zip(OUTPUT_NAMES, outputs):
        assert value.shape == specs[name].shape, name
        assert value.dtype == specs[name].dtype, name
        assert value.nbytes == specs[name].nbytes, name


def test_sequence_graph_plans_chain_and_are_named_as_export_names_them(small_export: Path) -> None:
    from coarse_loftr_train.export import sequence_graph_paths

    features_file, matching_file = sequence_graph_files(small_export)
    assert (features_file, matching_file) == sequence_graph_paths(small_export)
    assert sequence_graph_files("/x/student.engine") == (Path("/x/student.features.engine"), Path("/x/student.matching.engine"))
    # The matching graph's inputs are feature maps, not images: the input size must not touch them.
    features_plan = plan_from_onnx(features_file, (160, 128))
    matching_plan = plan_from_onnx(matching_file, (160, 128))
    assert [(s.name, s.shape) for s in features_plan if s.is_input] == [("image", (1, 1, 128, 160))]
    (features,) = [s for s in features_plan if not s.is_input]
    assert features.name == "features" and features.shape[2:] == (128 // 16, 160 // 16)
    assert [(s.name, s.shape) for s in matching_plan if s.is_input] == [("features0", features.shape), ("features1", features.shape)]
    assert [s.name for s in matching_plan if not s.is_input] == list(OUTPUT_NAMES)


def test_static_model_refuses_another_input_size(small_static_export: Path) -> None:
    assert [s.shape for s in plan_from_onnx(small_static_export, (160, 128)) if s.is_input] == [(1, 1, 128, 160)] * 2
    with pytest.raises(ModelError, match="160x128"):
        plan_from_onnx(small_static_export, (640, 480))


def test_dynamic_export_plans_at_any_size_with_the_feature_maps_following(small_export: Path) -> None:
    features_file, matching_file = sequence_graph_files(small_export)
    for width, height in ((160, 128), (320, 96)):
        assert [s.shape for s in plan_from_onnx(small_export, (width, height)) if s.is_input] == [(1, 1, height, width)] * 2
        (features,) = [s for s in plan_from_onnx(features_file, (width, height)) if not s.is_input]
        matching = plan_from_onnx(matching_file, (width, height))
        assert [s.shape for s in matching if s.is_input] == [features.shape] * 2 == [(1, 32, height // 16, width // 16)] * 2
        assert [s.shape for s in matching if s.name == "keypoints1"] == [(1, 32, 2)]  # K stays the export's top-k


def test_a_dynamic_export_defaults_to_the_size_it_was_exported_for(small_export: Path) -> None:
    from coarse_loftr_ros.backends.tensorrt_plan import default_input_size, load_onnx_graph

    graph = load_onnx_graph(small_export)
    assert default_input_size(graph, None) == (160, 128)
    assert default_input_size(graph, (320, 96)) == (320, 96)


def test_feature_map_shapes_divide_the_image_size_by_the_stride() -> None:
    declared = {"features0": (1, 288, -1, -1), "image": (1, 1, -1, -1), "fixed": (1, 8, 4, 4)}
    assert feature_map_shapes(declared, (1216, 368), 16) == {"features0": (1, 288, 23, 76)}
    assert feature_map_shapes(declared, None, 16) == {} == feature_map_shapes(declared, (640, 480), None)


def test_optimisation_profile_spans_a_size_range() -> None:
    declared = {"image0": (1, 1, -1, -1), "features0": (1, 288, -1, -1), "mask": (1, 10)}
    size_range = ((640, 192), (1280, 512))
    resolved = resolve_input_shapes(declared, (1008, 304), feature_map_shapes(declared, (1008, 304), 16))
    profiles = optimization_profile_shapes(declared, resolved, size_range, stride=16)
    assert profiles == {
        "image0": ((1, 1, 192, 640), (1, 1, 304, 1008), (1, 1, 512, 1280)),
        "features0": ((1, 288, 12, 40), (1, 288, 19, 63), (1, 288, 32, 80)),
    }
    assert check_size_range(size_range, (1008, 304), 16) == size_range
    with pytest.raises(ModelError, match="outside its profile"):
        check_size_range(size_range, (1344, 304), 16)
    with pytest.raises(ModelError, match="multiples of the stride 16"):
        check_size_range(((640, 190), (1280, 512)), (1008, 304), 16)
    with pytest.raises(ModelError, match="outside the profile"):
        optimization_profile_shapes(declared, resolve_input_shapes(declared, (1344, 304), feature_map_shapes(declared, (1344, 304), 16)), size_range, 16)
    with pytest.raises(ModelError, match="needs the model's stride"):
        optimization_profile_shapes(declared, resolved, size_range)


def test_dynamic_model_is_resolved_for_one_input_size(dynamic_model: Path) -> None:
    plan = plan_from_onnx(dynamic_model, input_size=(320, 256))
    assert [(s.name, s.shape) for s in plan] == [("image", (1, 1, 256, 320)), ("features", (1, 4, 32, 40))]
    assert plan[1].nbytes == 4 * 32 * 40 * 4
    with pytest.raises(ModelError, match="'image'"):
        plan_from_onnx(dynamic_model)  # no size: the dynamic dimensions cannot be resolved


def test_optimisation_profile_pins_only_dynamic_inputs() -> None:
    declared = {"image": (-1, 1, -1, -1), "mask": (1, 10)}
    resolved = resolve_input_shapes(declared, input_size=(640, 480))
    assert resolved == {"image": (1, 1, 480, 640), "mask": (1, 10)}
    assert optimization_profile_shapes(declared, resolved) == {"image": ((1, 1, 480, 640),) * 3}


def test_explicit_shapes_for_non_image_inputs() -> None:
    declared = {"features0": (1, 32, -1, -1)}
    with pytest.raises(ModelError, match="features0"):
        resolve_input_shapes(declared)
    assert resolve_input_shapes(declared, overrides={"features0": (1, 32, 30, 40)}) == {"features0": (1, 32, 30, 40)}
    with pytest.raises(ModelError, match="does not fit"):
        resolve_input_shapes(declared, overrides={"features0": (1, 16, 30, 40)})


# --------------------------------------------------------------------------- calibration


def test_calibration_batches_are_the_runtime_preprocessing(calibration_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    images = CalibrationImages(calibration_folder, (160, 128))
    assert [p.name for p in images.files] == ["a_camera.png", "b_astronaut.jpg", "c_coffee.png", "d_corrupt.png"]
    with caplog.at_level(logging.WARNING):
        batches = list(images.batches())
    assert "d_corrupt.png" in caplog.text  # skipped, with a warning
    assert len(batches) == 3
    for path, batch in zip(images.files, batches):
        expected, _ = to_model_input(read_image(path), (160, 128))
        assert batch.dtype == np.float32 and batch.shape == (1, 1, 128, 160)
        np.testing.assert_array_equal(batch, expected)
        assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.std() > 0.05  # real content


def test_calibration_limit_and_fingerprint(calibration_folder: Path, tmp_path: Path) -> None:
    assert len(CalibrationImages(calibration_folder, (160, 128), max_images=2)) == 2
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in CalibrationImages(calibration_folder, (160, 128)).files:
        (copy / path.name).write_bytes(path.read_bytes())
    first = CalibrationImages(copy, (160, 128)).fingerprint()
    assert first == CalibrationImages(calibration_folder, (160, 128)).fingerprint()
    (copy / "a_camera.png").write_bytes((calibration_folder / "b_astronaut.jpg").read_bytes())
    assert CalibrationImages(copy, (160, 128)).fingerprint() != first


@pytest.mark.skipif(not (SHARED / "data" / "train_images").is_dir(), reason="../shared/data/train_images is absent")
def test_calibration_batches_from_the_shared_photographs() -> None:
    images = CalibrationImages(SHARED / "data" / "train_images", (640, 480), max_images=4)
    batches = list(images.batches())
    assert len(batches) == 4 and all(b.shape == (1, 1, 480, 640) for b in batches)


def test_calibration_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        CalibrationImages(tmp_path / "missing", (640, 480))
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ImageError, match="no images"):
        CalibrationImages(tmp_path, (640, 480))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="none of the 1"):
        list(CalibrationImages(tmp_path, (640, 480)).batches())


# --------------------------------------------------------------------------- build-engine


def _build_engine(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["build-engine", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--int8"], "--int8 needs --calibration-images"),
        (["--calibration-images", "."], "only used with --int8"),
        (["--width", "640"], "both --width and --height"),
        (["--min-size", "640x192"], "both --min-size and --max-size"),
        (["--min-size", "640x192", "--max-size", "1280x512"], "needs --width and --height"),
    ],
)
def test_build_engine_argument_errors(
    small_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    code, err = _build_engine(["--onnx", str(small_export), "--output", str(tmp_path / "m.engine"), *extra], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_build_engine_file_errors(small_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _build_engine(["--onnx", str(tmp_path / "missing.onnx"), "--output", str(tmp_path / "m.engine")], capsys)
    assert code == 2 and "does not exist" in err
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf at all")
    code, err = _build_engine(["--onnx", str(tmp_path / "broken.onnx"), "--output", str(tmp_path / "m.engine")], capsys)
    assert code == 2 and "not a readable ONNX model" in err
    code, err = _build_engine(["--onnx", str(small_export), "--output", str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in err
    code, err = _build_engine(["--onnx", str(small_export), "--output", str(small_export)], capsys)
    assert code == 2 and "cannot write a .onnx file; use one of .engine, .plan" in err  # never over the model
    (tmp_path / "a_file").write_text("not a folder\n")
    code, err = _build_engine(["--onnx", str(small_export), "--output", str(tmp_path / "a_file" / "m.engine")], capsys)
    assert code == 2 and "is not a folder" in err and len(err.strip().splitlines()) == 1
    code, err = _build_engine(
        ["--onnx", str(small_export), "--output", str(tmp_path / "m.engine"), "--int8", "--calibration-images", str(tmp_path)],
        capsys,
    )
    assert code == 2 and "no images" in err


def test_build_engine_rejects_a_zero_workspace(small_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["build-engine", "--onnx", str(small_export), "--output", str(tmp_path / "m.engine"), "--workspace-mb", "0"])
    assert exit_info.value.code == 2
    assert "--workspace-mb: must be at least 1" in capsys.readouterr().err


@needs_no_tensorrt
@pytest.mark.parametrize("precision", [[], ["--fp16"], ["--int8", "--calibration-images", "CALIBRATION"]])
def test_build_engine_without_tensorrt_is_one_line_without_traceback(
    small_export: Path, calibration_folder: Path, tmp_path: Path, precision: list[str]
) -> None:
    output = tmp_path / "m.engine"
    args = [a.replace("CALIBRATION", str(calibration_folder)) for a in precision]
    command = [sys.executable, "-m", "coarse_loftr_ros.cli", "build-engine", "--onnx", str(small_export), "--output", str(output), *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("coarse-loftr build-engine: error: cannot build a TensorRT engine: ")
    assert "TensorRT" in lines[0] and "install" in lines[0]
    assert not output.exists() and not Path(str(output) + ".json").exists()


# --------------------------------------------------------------------------- backend selection


@needs_no_tensorrt
def test_tensorrt_backend_without_tensorrt_is_a_one_line_error(small_export: Path, tmp_path: Path) -> None:
    from coarse_loftr_ros import Matcher

    with pytest.raises(BackendUnavailableError, match="TensorRT") as error:
        Matcher(model=small_export, backend="tensorrt", cache_dir=tmp_path)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-built in the cache


@needs_no_tensorrt
def test_auto_backend_falls_back_to_onnxruntime_and_says_why(small_export: Path, caplog: pytest.LogCaptureFixture) -> None:
    from coarse_loftr_ros import Matcher

    with caplog.at_level(logging.INFO, logger="coarse_loftr_ros"):
        matcher = Matcher(model=small_export, backend="auto")
    assert matcher.backend.name == "onnxruntime"
    assert "using onnxruntime" in caplog.text and "no tensorrt: " in caplog.text
    available, reason = tensorrt_available()
    assert not available and reason and "\n" not in reason


WITHOUT_ONNX = """
import sys
class HideOnnx:  # this interpreter behaves as if the onnx package were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, HideOnnx())
from coarse_loftr_ros.cli import main
sys.exit(main(sys.argv[1:]))
"""


@needs_no_tensorrt
@pytest.mark.parametrize("command", ["match", "build-engine"])
def test_without_onnx_and_tensorrt_the_error_names_tensorrt_first(command: str, small_export: Path, tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(image), (np.random.default_rng(0).random((240, 320)) * 255).astype(np.uint8))
    arguments = {
        "match": ["match", image, image, "--model", small_export, "--backend", "tensorrt"],
        "build-engine": ["build-engine", "--onnx", small_export, "--output", tmp_path / "m.engine"],
    }[command]
    done = subprocess.run([sys.executable, "-c", WITHOUT_ONNX, *map(str, arguments)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].split("error: ", 1)[1].startswith("TensorRT is not installed"), lines[0]
    assert "onnx package" not in lines[0]


def test_a_model_that_is_not_an_export_is_refused_before_any_build(tmp_path: Path, dynamic_model: Path) -> None:
    # No TensorRT is needed to see that the model lacks the export metadata.
    with pytest.raises(ModelError, match="coarse-loftr export"):
        TensorRTBackend(dynamic_model, cache_dir=tmp_path)


def test_engine_description_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    description = {"precision": "fp16", "input_size": [640, 480], "metadata": {"coarse_loftr.stride": "16"}}
    write_atomically(Path(str(engine) + ".json"), json.dumps(description).encode())
    assert read_sidecar(engine) == description

"""Node parameters: declarations as data, validation with one-line errors, config/ profiles."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import pytest

from coarse_loftr_ros.ros.node_params import (
    PARAMETERS,
    NodeConfig,
    ParameterError,
    load_parameters_file,
    matcher_arguments,
    resolve_backend,
    validate_parameters,
)

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "config").glob("*.yaml"))


def one_line_error(values: dict, match: str) -> str:
    with pytest.raises(ParameterError, match=match) as info:
        validate_parameters(values)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_defaults_are_valid():
    config = validate_parameters({})
    assert config == NodeConfig(**{spec.name: spec.default for spec in PARAMETERS})
    assert config.qos_reliability == "best_effort" and config.qos_depth == 1  # sensor data, newest only


def test_every_spec_is_self_consistent():
    names = [spec.name for spec in PARAMETERS]
    assert len(names) == len(set(names))
    for spec in PARAMETERS:
        assert spec.description and not spec.description.endswith(".")
        if spec.choices:
            assert spec.default in spec.choices and isinstance(spec.default, str)
        if spec.minimum is not None:
            assert type(spec.minimum) is type(spec.default), spec.name  # ROS ranges are typed
            assert spec.minimum <= spec.default <= spec.maximum, spec.name


def test_only_runtime_tunable_parameters_are_dynamic():
    dynamic = {spec.name for spec in PARAMETERS if spec.dynamic}
    assert dynamic == {"threshold", "max_matches", "lk_refinement", "min_fine_score", "rotation_search", "rewarp", "zoom", "max_model_runs", "time_budget_ms", "publish_overlay", "overlay_max_lines"}


@pytest.mark.parametrize(
    "values, match",
    [
        ({"mode": "mono"}, "mode must be one of stereo, sequence; got 'mono'"),
        ({"backend": "cuda"}, "backend must be one of auto, onnxruntime, tensorrt, torch"),
        ({"slop_s": 2.5}, r"slop_s must be in \[0.0, 1.0\]"),
        ({"slop_s": -0.01}, "slop_s must be in"),
        ({"slop_s": float("nan")}, "finite"),
        ({"slop_s": 2}, r"slop_s must be in \[0.0, 1.0\], got 2.0"),
        ({"max_gap_s": -1}, r"max_gap_s must be in \[0.0, 3600.0\]"),
        ({"max_gap_s": "1s"}, "max_gap_s must be a double"),
        ({"use_camera_info": 1}, "use_camera_info must be a bool"),
        ({"max_matches": 2.0}, r"max_matches must be a int, got 2.0 \(float\)"),
        ({"qos_depth": 0}, "qos_depth must be in"),
        ({"qos_depth": True}, "qos_depth must be a int"),
        ({"threshold": "0.5"}, "threshold must be a double"),
        ({"time_budget_ms": -1.0}, r"time_budget_ms must be in \[0.0, 60000.0\]"),
        ({"time_budget_ms": "20ms"}, "time_budget_ms must be a double"),
        ({"publish_overlay": "yes"}, "publish_overlay must be a bool"),
        ({"input_width": 641, "input_height": 480}, "multiple of 8"),
        ({"input_width": 640}, "set both input_width and input_height"),
        ({"model": "student.ckpt", "backend": "tensorrt"}, "tensorrt backend needs an .onnx or .engine"),
        ({"model": "weights.bin"}, "unknown file type"),
        ({"mode": "sequence", "keyframe_every": 0}, "never replaced"),
        ({"slopp_s": 0.1}, "unknown parameter"),
        ({"backend": "tensorrt", "trt_precision": "int8"}, "int8 needs a calibrated engine"),
        ({"model": "student.onnx", "backend": "tensorrt", "trt_precision": "int8"}, "int8 needs a calibrated engine"),
    ],
)
def test_bad_values_are_one_line_errors(values, match):
    one_line_error(values, match)


def test_integers_are_taken_for_double_parameters():
    """`-p threshold:=1` or a YAML `1` arrive as int: they mean the double, and stay validated."""
    config = validate_parameters({"threshold": 1, "slop_s": 0, "max_gap_s": 2, "input_timeout_s": 3})
    assert (config.threshold, config.slop_s, config.max_gap_s, config.input_timeout_s) == (1.0, 0.0, 2.0, 3.0)
    assert all(type(v) is float for v in (config.threshold, config.slop_s, config.max_gap_s, config.input_timeout_s))
    with pytest.raises(ParameterError, match=r"threshold must be in \[0.0, 1.0\], got 2.0"):
        validate_parameters({"threshold": 2})
    with pytest.raises(ParameterError, match="threshold must be a double, got True"):
        validate_parameters({"threshold": True})  # a bool is no number here


def test_int8_with_a_prebuilt_engine_is_fine():
    assert validate_parameters({"model": "student_int8.engine", "trt_precision": "int8"}).trt_precision == "int8"


def test_keyframe_every_zero_is_fine_with_a_match_threshold_or_in_stereo():
    assert validate_parameters({"mode": "sequence", "keyframe_every": 0, "keyframe_min_matches": 50})
    assert validate_parameters({"mode": "sequence", "keyframe_every": 0, "keyframe_min_score": 0.2})
    assert validate_parameters({"mode": "stereo", "keyframe_every": 0}).keyframe_every == 0


def test_standard_ros_parameters_are_ignored():
    config = validate_parameters({"use_sim_time": True, "qos_overrides./image0.subscription.depth": 3})
    assert config == validate_parameters({})


def test_resolve_backend():
    assert resolve_backend("", "auto") == "onnxruntime"
    assert resolve_backend("/models/x.ENGINE", "auto") == "tensorrt"
    assert resolve_backend("student.ckpt", "auto") == "torch"
    assert resolve_backend("anything.onnx", "tensorrt") == "tensorrt"


def test_matcher_arguments_per_backend():
    base = validate_parameters({})
    matcher_options = {"lk_refinement": "auto", "min_fine_score": 0.7, "rotation_search": True, "rewarp": True, "zoom": True, "max_model_runs": 3, "time_budget_ms": None, "input_size": "auto"}
    assert matcher_arguments(base) == {"model": None, "backend": "auto", "threshold": None, "max_matches": None, **matcher_options}
    onnx = replace(base, model="/m/a.onnx", threads=2, threshold=0.3, max_matches=400, trt_precision="int8", time_budget_ms=40.0)
    assert matcher_arguments(onnx) == {
        "model": "/m/a.onnx",
        "backend": "auto",
        "threshold": 0.3,
        "max_matches": 400,
        **matcher_options,
        "time_budget_ms": 40.0,
        "threads": 2,
    }
    torch = validate_parameters({"model": "s.ckpt", "input_width": 320, "input_height": 240, "threads": 4})
    assert matcher_arguments(torch)["input_size"] == (320, 240) and "threads" not in matcher_arguments(torch)
    # The shipped graphs take any size (dynamic axes): the sizes reach the Matcher on onnxruntime too.
    assert matcher_arguments(validate_parameters({"input_width": 1008, "input_height": 304}))["input_size"] == (1008, 304)
    # A size set wins over input_size_auto (on by default); off, the model's own size.
    both = {"input_width": 1008, "input_height": 304, "input_size_auto": True}
    assert matcher_arguments(validate_parameters(both))["input_size"] == (1008, 304)
    assert matcher_arguments(validate_parameters({"input_size_auto": False}))["input_size"] is None
    trt = validate_parameters(
        {"backend": "tensorrt", "engine_cache_dir": "/cache", "trt_workspace_mb": 2048, "threads": 3}
    )
    arguments = matcher_arguments(trt)
    assert arguments == {
        "model": None,
        "backend": "tensorrt",
        "threshold": None,
        "max_matches": None,
        **matcher_options,
        "precision": "fp16",
        "rebuild": False,
        "device": 0,
        "cache_dir": "/cache",
        "workspace_mb": 2048,
    }


def test_matcher_accepts_the_arguments_for_onnxruntime_and_torch():
    """The names we pass exist in the real Matcher and backend signatures."""
    from coarse_loftr_ros.matching.matcher import Matcher

    matcher_parameters = inspect.signature(Matcher).parameters
    for name in ("model", "backend", "threshold", "max_matches"):
        assert name in matcher_parameters
    from coarse_loftr_ros.backends.onnxruntime_backend import OnnxRuntimeBackend

    assert "threads" in inspect.signature(OnnxRuntimeBackend).parameters
    torch_backend = pytest.importorskip("coarse_loftr_ros.backends.torch_backend")
    assert "input_size" in inspect.signature(torch_backend.TorchBackend).parameters


def test_tensorrt_option_names_match_the_backend_when_present():
    try:
        from coarse_loftr_ros.backends.tensorrt_backend import TensorRTBackend
    except ImportError:
        pytest.skip("coarse_loftr_ros.backends.tensorrt_backend is not in this checkout")
    accepted = inspect.signature(TensorRTBackend).parameters
    trt = validate_parameters({"backend": "tensorrt", "engine_cache_dir": "/c", "trt_workspace_mb": 64,
                               "input_width": 320, "input_height": 240})
    from coarse_loftr_ros import Matcher

    for name in set(matcher_arguments(trt)) - set(inspect.signature(Matcher).parameters):  # the backend's options
        assert name in accepted, name


# ----- parameters files -----


def test_there_are_desktop_and_jetson_profiles():
    assert {p.stem for p in PROFILES} >= {"desktop", "jetson"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profiles_validate_and_set_every_parameter_explicitly_or_by_default(path):
    values = load_parameters_file(path, node_name="matcher")
    config = validate_parameters(values)
    assert set(values) <= {spec.name for spec in PARAMETERS}
    if path.stem == "jetson":
        assert config.backend == "tensorrt" and config.trt_precision == "fp16"
    if path.stem == "desktop":
        assert resolve_backend(config.model, config.backend) == "onnxruntime"


def test_parameters_file_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    mode: sequence\n    qos_depth: 2\n"
        "/robot/matcher:\n  ros__parameters:\n    qos_depth: 3\n"
        "other_node:\n  ros__parameters:\n    qos_depth: 9\n"
    )
    assert load_parameters_file(path, "matcher") == {"mode": "sequence", "qos_depth": 3}
    assert load_parameters_file(path, "other_node") == {"mode": "sequence", "qos_depth": 9}


@pytest.mark.parametrize(
    "text, match",
    [
        ("just a string", "must map node names"),
        ("/**:\n  parameters:\n    mode: stereo\n", "no ros__parameters"),
        ("/**: [unclosed\n", "cannot read parameters file"),
    ],
)
def test_bad_parameters_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ParameterError, match=match) as info:
        load_parameters_file(path)
    assert "\n" not in str(info.value)


def _parameter_rows(path) -> dict[str, list[str]]:
    rows = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[1] in ("string", "int", "double", "bool"):
            rows[cells[0].strip("`")] = cells
    return rows


def _check_row(spec, row) -> None:
    name, type_name, default, choices_or_range, dynamic, _ = row
    assert type_name == spec.type_name, spec.name
    expected_default = {True: "true", False: "false"}.get(spec.default, spec.default) if isinstance(spec.default, bool) else spec.default
    assert default.strip("`") == ('""' if expected_default == "" else str(expected_default)), spec.name
    assert (dynamic == "yes") == spec.dynamic, spec.name
    if spec.choices:
        assert choices_or_range.split(" \\| ") == list(spec.choices), spec.name
    elif spec.minimum is not None:
        assert choices_or_range.startswith(f"[{spec.minimum}, {spec.maximum}]"), spec.name


def test_docs_parameter_table_matches_the_declarations():
    rows = _parameter_rows(REPO / "docs" / "ros2.md")
    assert list(rows) == [spec.name for spec in PARAMETERS]
    for spec in PARAMETERS:
        _check_row(spec, rows[spec.name])


def test_readme_parameter_rows_agree_with_the_declarations():
    """The README may show the table (or link to docs/ros2.md); the rows it shows are right."""
    specs = {spec.name: spec for spec in PARAMETERS}
    rows = _parameter_rows(REPO / "README.md")
    assert set(rows) <= set(specs), set(rows) - set(specs)
    for name, row in rows.items():
        _check_row(specs[name], row)


def test_node_import_hints_name_the_missing_module_and_both_ways_to_get_it():
    from coarse_loftr_ros.ros.node import _import_hint  # importable without ROS

    rclpy_hint = _import_hint(ImportError("No module named 'rclpy'", name="rclpy"))
    assert "cannot import rclpy" in rclpy_hint and "source /opt/ros" in rclpy_hint
    assert "scripts/setup_ros2_venv.sh" in rclpy_hint and "\n" not in rclpy_hint
    msg_hint = _import_hint(ImportError("No module named 'coarse_loftr_ros.msg'", name="coarse_loftr_ros.msg"))
    assert "cannot import coarse_loftr_ros.msg" in msg_hint and "colcon" in msg_hint and ".ros2/setup.bash" in msg_hint


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("true", True), (True, True), ("false", False), (False, False)])
def test_lk_refinement_takes_auto_and_booleans_written_either_way(value, expected):
    config = validate_parameters({"lk_refinement": value})
    assert matcher_arguments(config)["lk_refinement"] == expected


def test_lk_refinement_refuses_other_values_in_one_line():
    with pytest.raises(ParameterError, match="lk_refinement must be one of auto, true, false"):
        validate_parameters({"lk_refinement": "sometimes"})

"""The matcher node's parameters as data, and their validation, ROS-free.

Public API:

- ``PARAMETERS``: a tuple of ``ParameterSpec`` (name, default, description, choices or
  range, whether it may change while the node runs). ``node.py`` declares each one with a
  ``ParameterDescriptor`` built from it; the table in docs/ros2.md lists the same data
  (a test checks that they agree).
- ``validate_parameters(values) -> NodeConfig``: check a name -> value mapping (missing
  names take their defaults) and return the typed configuration; raises
  ``ParameterError`` with a one-line message naming the parameter and the fix.
- ``load_parameters_file(path, node_name="matcher") -> dict``: the values a ROS 2
  parameters YAML file (``config/*.yaml``) gives a node, for checks without ROS.
- ``resolve_backend(model, backend) -> str`` and ``matcher_arguments(config) -> dict``:
  the keyword arguments of ``Matcher(...)`` for a configuration, with only the backend
  options that the chosen backend takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import CoarseLoftrError

Value = bool | int | float | str


class ParameterError(CoarseLoftrError, ValueError):
    """A node parameter with a wrong type, a value out of range or an invalid combination."""


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter.

    ``choices`` lists the allowed strings; ``minimum``/``maximum`` bound numbers
    (inclusive) and ``step`` > 0 requires ``minimum + k * step``. ``dynamic`` parameters
    may be changed with ``ros2 param set`` while the node runs; the others are read once.
    """

    name: str
    default: Value
    description: str
    choices: tuple[str, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    step: int | float = 0
    dynamic: bool = False

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]


PARAMETERS: tuple[ParameterSpec, ...] = (
    # What to match.
    ParameterSpec("mode", "stereo", "stereo: match image0 with image1 taken at the same time; "
                  "sequence: match each frame of `image` with the previous frame or a keyframe",
                  choices=("stereo", "sequence")),
    ParameterSpec("image_transport", "raw", "raw: subscribe to sensor_msgs/Image; compressed: to "
                  "sensor_msgs/CompressedImage on <topic>/compressed", choices=("raw", "compressed")),
    # Stereo pairing.
    ParameterSpec("sync", "approximate", "stereo pairing: approximate (stamps within slop_s) or exact "
                  "(identical stamps)", choices=("approximate", "exact")),
    ParameterSpec("slop_s", 0.02, "stereo: largest stamp difference of a pair in seconds (approximate sync)",
                  minimum=0.0, maximum=1.0),
    ParameterSpec("sync_queue_size", 5, "stereo: unpaired images kept per camera by the synchronizer",
                  minimum=1, maximum=100),
    # Sequence keyframes.
    ParameterSpec("keyframe_every", 1, "sequence: the matched frame becomes the keyframe every N frames "
                  "(1 = always match against the previous frame; 0 = only on weak matching)",
                  minimum=0, maximum=10000),
    ParameterSpec("keyframe_min_matches", 0, "sequence: the matched frame becomes the keyframe when its pair "
                  "has fewer matches than this (0 = off)", minimum=0, maximum=100000),
    ParameterSpec("keyframe_min_score", 0.0, "sequence: the matched frame becomes the keyframe when its pair's "
                  "match score (summed confidence per coarse cell, MatchResult.match_score) is below this "
                  "(0 = off; consecutive frames score about 0.3-0.7)", minimum=0.0, maximum=1.0),
    ParameterSpec("max_gap_s", 1.0, "sequence: restart the sequence (no pair across it) when a frame comes more than "
                  "this many seconds after the previous one; 0 = never", minimum=0.0, maximum=3600.0),
    # Model and backend.
    ParameterSpec("model", "", "model file: .onnx, .engine/.plan (TensorRT) or .pt/.ckpt (torch); empty = "
                  "the model shipped with the package"),
    ParameterSpec("backend", "auto", "inference backend; auto picks by model file type",
                  choices=("auto", "onnxruntime", "tensorrt", "torch")),
    ParameterSpec("threshold", 0.0, "minimum match confidence; 0 keeps every match the model returns",
                  minimum=0.0, maximum=1.0, dynamic=True),
    ParameterSpec("max_matches", 0, "keep at most this many matches, the most confident (top-K); 0 = all the model "
                  "returns (at most its top-k: 1024 for the shipped model)",
                  minimum=0, maximum=100000, dynamic=True),
    ParameterSpec("lk_refinement", "auto", "polish matches to sub-pixel accuracy with Lucas-Kanade and drop those "
                  "whose forward-backward track disagrees (when at least 20 pass); auto: unless the model places "
                  "matches itself with the fine stage (the shipped model does); true/false also as YAML booleans",
                  choices=("auto", "true", "false"), dynamic=True),
    ParameterSpec("min_fine_score", 0.7, "with a model exported with --fine-stage: drop matches whose patch "
                  "correlation (ZNCC) is below this, when at least 20 pass; -1 keeps all; no effect on other models",
                  minimum=-1.0, maximum=1.0, dynamic=True),
    ParameterSpec("rotation_search", True, "when a pair matches weakly, also match image 1 turned by the angle its "
                  "gradients predict, then by +-30/+-60 degrees or scaled by 0.6/1.6, and keep the best view "
                  "(within max_model_runs)", dynamic=True),
    ParameterSpec("rewarp", True, "when a pair matches weakly and its matches agree on a homography far from a "
                  "shift (perspective, zoom, rotation), warp image 1 onto image 0 by it, match again and keep the "
                  "better (one more model run on such pairs)", dynamic=True),
    ParameterSpec("zoom", True, "when the rewarp of a weak pair gains nothing (a camera moving forward: near things "
                  "grow, far ones do not), also match image 1 shrunk about its centre by 0.7 and 0.85 and return "
                  "those views' matches with the pair's (within max_model_runs; needs rewarp)", dynamic=True),
    ParameterSpec("max_model_runs", 3, "the most model runs one pair may cost (1 = upright only: no motion prior, "
                  "search or rewarp); a pair taken while the node is behind (a newer pair replaced a waiting one) "
                  "gets 1, counted as 'steps shed total'", minimum=1, maximum=32, dynamic=True),
    ParameterSpec("time_budget_ms", 0.0, "the most milliseconds the model runs of one pair may take: a run after "
                  "the first starts only while the pair's time so far plus its longest run stays within it (the "
                  "first always runs; the polish after the runs is not counted); 0 = no limit, max_model_runs only",
                  minimum=0.0, maximum=60000.0, dynamic=True),
    ParameterSpec("threads", 0, "onnxruntime: intra-op threads; 0 = ONNX Runtime's default", minimum=0, maximum=256),
    ParameterSpec("input_width", 0, "model input width in pixels, a multiple of the model's stride (16); 0 = chosen "
                  "by input_size_auto; set, it wins over input_size_auto; an ONNX model exported with fixed shapes "
                  "takes only its own",
                  minimum=0, maximum=4096, step=8),
    ParameterSpec("input_height", 0, "model input height in pixels; 0 = chosen by input_size_auto",
                  minimum=0, maximum=4096, step=8),
    ParameterSpec("input_size_auto", True, "the model's own 640x480 for images near 4:3 (letterboxed, they fill "
                  "80 % of it), else the same area at the image's aspect ratio (1226x370 KITTI frames: 1008x304, "
                  "1280x720: 736x416); false = always the model's own; on a TensorRT engine or a fixed-shape ONNX "
                  "model always the model's own"),
    ParameterSpec("trt_precision", "fp16", "tensorrt: precision of an engine built from an ONNX model (int8: only "
                  "with a prebuilt, calibrated .engine)", choices=("fp32", "fp16", "int8")),
    ParameterSpec("engine_cache_dir", "", "tensorrt: folder of cached engines; empty = the backend's default"),
    ParameterSpec("engine_rebuild", False, "tensorrt: rebuild the engine even when a cached one matches"),
    ParameterSpec("trt_workspace_mb", 0, "tensorrt: builder memory pool limit in MiB; 0 = the backend's default",
                  minimum=0, maximum=65536),
    ParameterSpec("gpu_device", 0, "tensorrt: CUDA device index", minimum=0, maximum=64),
    # QoS of the image subscriptions.
    ParameterSpec("qos_reliability", "best_effort", "image subscriptions: best_effort (sensor data, the "
                  "default) or reliable", choices=("best_effort", "reliable")),
    ParameterSpec("qos_depth", 1, "image subscriptions: history depth (keep last N)", minimum=1, maximum=100),
    # Input images.
    ParameterSpec("max_image_pixels", 50_000_000, "refuse (log and skip) an image message of more pixels than this "
                  "(width x height), before converting or decoding it; 0 = no limit", minimum=0, maximum=1_000_000_000),
    # Camera calibration.
    ParameterSpec("use_camera_info", False, "subscribe to camera_info (sequence) or camera_info0 and camera_info1 "
                  "(stereo) and copy each camera's sensor_msgs/CameraInfo into the MatchArray (a zero one when "
                  "none arrived or its size differs from the image's)"),
    # Outputs.
    ParameterSpec("publish_overlay", True, "publish ~/overlay (drawn only while someone subscribes)", dynamic=True),
    ParameterSpec("overlay_max_lines", 200, "overlay: draw at most this many match lines", minimum=1,
                  maximum=10000, dynamic=True),
    ParameterSpec("input_timeout_s", 5.0, "diagnostics: warn when no image pair arrived for this long (seconds)",
                  minimum=0.1, maximum=3600.0),
)

_SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    """The validated parameters (see ``PARAMETERS`` for meanings and units)."""

    mode: str
    image_transport: str
    sync: str
    slop_s: float
    sync_queue_size: int
    keyframe_every: int
    keyframe_min_matches: int
    keyframe_min_score: float
    max_gap_s: float
    model: str
    backend: str
    threshold: float
    max_matches: int
    lk_refinement: str
    min_fine_score: float
    rotation_search: bool
    rewarp: bool
    zoom: bool
    max_model_runs: int
    time_budget_ms: float
    threads: int
    input_width: int
    input_height: int
    input_size_auto: bool
    trt_precision: str
    engine_cache_dir: str
    engine_rebuild: bool
    trt_workspace_mb: int
    gpu_device: int
    qos_reliability: str
    qos_depth: int
    max_image_pixels: int
    use_camera_info: bool
    publish_overlay: bool
    overlay_max_lines: int
    input_timeout_s: float


assert [f.name for f in fields(NodeConfig)] == list(_SPECS), "NodeConfig and PARAMETERS must list the same names"


def _check_value(spec: ParameterSpec, value: Any) -> Value:
    expected = type(spec.default)
    if expected is float and type(value) is int:
        # `-p threshold:=1` and a YAML `1` arrive as integers: take them as the double they mean
        # (the node declares its double parameters with dynamic typing so that ROS lets them through).
        value = float(value)
    if expected is str and type(value) is bool and "true" in spec.choices:
        value = "true" if value else "false"  # `-p lk_refinement:=true` and YAML `true` arrive as booleans
    if type(value) is not expected:
        raise ParameterError(
            f"parameter {spec.name} must be a {spec.type_name}, got {value!r} ({type(value).__name__})"
        )
    if expected is float and not math.isfinite(value):
        raise ParameterError(f"parameter {spec.name} must be a finite number, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter {spec.name} must be one of {', '.join(spec.choices)}; got {value!r}")
    if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value > spec.maximum:
        raise ParameterError(f"parameter {spec.name} must be in [{spec.minimum}, {spec.maximum}], got {value!r}")
    if spec.step and (value - (spec.minimum or 0)) % spec.step:
        raise ParameterError(f"parameter {spec.name} must be a multiple of {spec.step}, got {value!r}")
    return value


# Parameters every ROS 2 node or library has; they are not ours to check.
ROS_PARAMETERS = ("use_sim_time", "diagnostic_updater", "qos_overrides", "start_type_description_service")


def validate_parameters(values: Mapping[str, Any]) -> NodeConfig:
    """Check every value and their combinations; missing names take their defaults.

    Names in ``ROS_PARAMETERS`` (and names under them, e.g. ``qos_overrides./topic...``)
    are ignored; any other unknown name is an error (a typo in a parameters file).
    """
    ours = {k: v for k, v in values.items() if str(k).split(".", 1)[0] not in ROS_PARAMETERS}
    unknown = sorted(set(ours) - set(_SPECS))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(_SPECS)}"
        )
    checked = {name: _check_value(spec, ours.get(name, spec.default)) for name, spec in _SPECS.items()}
    config = NodeConfig(**checked)

    if config.mode == "sequence" and config.keyframe_every == 0 and config.keyframe_min_matches == 0 and config.keyframe_min_score == 0:
        raise ParameterError(
            "keyframe_every=0 needs keyframe_min_matches or keyframe_min_score > 0, or the keyframe is never replaced"
        )
    if (config.input_width == 0) != (config.input_height == 0):
        raise ParameterError("set both input_width and input_height, or neither (0 = the model's own size)")
    backend = resolve_backend(config.model, config.backend)
    if config.backend == "tensorrt" and Path(config.model).suffix.lower() in (".pt", ".pth", ".ckpt"):
        raise ParameterError("the tensorrt backend needs an .onnx or .engine model; export the checkpoint first")
    if backend == "tensorrt" and config.trt_precision == "int8" and Path(config.model).suffix.lower() not in (".engine", ".plan"):
        raise ParameterError(
            "trt_precision int8 needs a calibrated engine: build one with `coarse-loftr build-engine --int8 "
            "--calibration-images DIR` and set model to the .engine file"
        )
    return config


_MODEL_SUFFIX_BACKENDS = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
    ".ckpt": "torch",
}


def resolve_backend(model: str, backend: str) -> str:
    """The backend ``auto`` stands for: by model file type (no model: the shipped ONNX model)."""
    if backend != "auto":
        return backend
    if not model:
        return "onnxruntime"
    suffix = Path(model).suffix.lower()
    if suffix not in _MODEL_SUFFIX_BACKENDS:
        raise ParameterError(
            f"model {model} has an unknown file type; pass an .onnx, .engine/.plan or .pt/.ckpt file"
        )
    return _MODEL_SUFFIX_BACKENDS[suffix]


def lk_refinement_value(text: str) -> bool | str:
    """``Matcher(lk_refinement=...)`` for the parameter's value: True, False or "auto"."""
    return {"true": True, "false": False}.get(text, "auto")


def matcher_arguments(config: NodeConfig) -> dict[str, Any]:
    """``Matcher(**arguments)`` for ``config``; backend options only for the backend in use."""
    backend = resolve_backend(config.model, config.backend)
    arguments: dict[str, Any] = {
        "model": config.model or None,
        "backend": config.backend,
        "threshold": config.threshold if config.threshold > 0 else None,
        "max_matches": config.max_matches or None,
        "lk_refinement": lk_refinement_value(config.lk_refinement),
        "min_fine_score": config.min_fine_score,
        "rotation_search": config.rotation_search,
        "rewarp": config.rewarp,
        "zoom": config.zoom,
        "max_model_runs": config.max_model_runs,
        "time_budget_ms": config.time_budget_ms or None,
    }
    if config.input_width:
        arguments["input_size"] = (config.input_width, config.input_height)
    else:
        arguments["input_size"] = "auto" if config.input_size_auto else None
    if backend == "onnxruntime" and config.threads:
        arguments["threads"] = config.threads
    elif backend == "tensorrt":
        arguments.update(precision=config.trt_precision, rebuild=config.engine_rebuild, device=config.gpu_device)
        if config.engine_cache_dir:
            arguments["cache_dir"] = config.engine_cache_dir
        if config.trt_workspace_mb:
            arguments["workspace_mb"] = config.trt_workspace_mb
    return arguments


def load_parameters_file(path: str | Path, node_name: str = "matcher") -> dict[str, Any]:
    """The parameters a ROS 2 parameters YAML file gives node ``node_name``.

    Sections apply in file order: ``/**`` (every node), then ``<name>`` or
    ``/<namespace>/<name>`` entries whose last component is ``node_name``.
    """
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ParameterError(f"cannot read parameters file {path}: {str(error).splitlines()[0]}") from error
    if not isinstance(document, dict):
        raise ParameterError(f"parameters file {path} must map node names to ros__parameters")
    values: dict[str, Any] = {}
    for key, section in document.items():
        if key != "/**" and str(key).rstrip("/").rsplit("/", 1)[-1] != node_name:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ParameterError(f"parameters file {path}: section {key!r} has no ros__parameters mapping")
        values.update(section["ros__parameters"])
    return values

"""ONNX Runtime backend (the default; CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError
from ..preprocess import DEFAULT_INPUT_SIZE, check_input_size
from .base import FINE_SCORE_NAME, METADATA_PREFIX, OUTPUT_NAMES, RawMatches, parse_size
from .extraction import extract_matches

# Threshold applied to models that output a full confidence matrix (the released
# reference ONNX), as in the reference pipeline.
MATRIX_MODEL_THRESHOLD = 0.01


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Low-latency CPU settings: all graph optimisations, sequential execution, one
    intra-op thread per CPU core available to this process, no spinning."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # Idle worker threads sleep instead of spinning: a node runs up to three sessions
    # (pair, features, matching) next to a SLAM stack on few cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(path: Path, threads: int | None = None, providers: list[str] | None = None) -> ort.InferenceSession:
    """An InferenceSession, with one-line errors for a missing or unreadable file."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; pass the path of an .onnx file from `coarse-loftr export`")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        detail = " ".join(str(error).split())[:160]
        raise ModelError(f"cannot load ONNX model {path}: {detail}; is it a complete .onnx file?") from None


class OnnxRuntimeBackend:
    """Runs an exported matcher (matches inside the graph) or a model that outputs the full
    confidence matrix (then extraction runs in numpy).

    A graph exported with dynamic height and width (``dynamic_input``) runs at any size
    ``set_input_size`` accepts; ``input_size`` starts at the size it was exported with
    (metadata ``input_size``, 640x480 for the shipped model). A fixed-shape graph runs at its
    own size only.
    """

    name = "onnxruntime"

    def __init__(self, model: str | Path, threads: int | None = None) -> None:
        self.model_path = Path(model)
        self.session = open_session(self.model_path, threads)
        inputs = self.session.get_inputs()
        shapes = [tuple(i.shape) for i in inputs]
        if (
            len(inputs) != 2
            or any(i.type != "tensor(float)" for i in inputs)
            or any(len(s) != 4 or s[:2] != (1, 1) for s in shapes)
            or shapes[0] != shapes[1]
        ):
            found = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)
            raise ModelError(
                f"ONNX model {self.model_path} has inputs [{found}]; expected two float32 [1, 1, H, W] images "
                "(export one with `coarse-loftr export`)"
            )
        self.input_names = [i.name for i in inputs]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k.removeprefix(METADATA_PREFIX): v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.exported = set(OUTPUT_NAMES) <= set(self.output_names)
        # The match outputs, and the fine score where the graph has the fine stage.
        self.match_outputs = list(OUTPUT_NAMES) + ([FINE_SCORE_NAME] if FINE_SCORE_NAME in self.output_names else [])
        self.dynamic_input = not all(isinstance(d, int) for d in shapes[0][2:])
        if self.dynamic_input and not self.exported:
            raise ModelError(f"ONNX model {self.model_path} has a dynamic input size but not the outputs of `coarse-loftr export`; export it with fixed shapes")
        if self.dynamic_input:
            width, height = parse_size(self.metadata.get("input_size"), DEFAULT_INPUT_SIZE)
        else:
            height, width = shapes[0][2:]
        self.input_size = (width, height)
        self.max_input_size = parse_size(self.metadata.get("max_input_size"), None) if self.dynamic_input else self.input_size
        if self.exported:
            self.stride = int(self.metadata.get("stride", 16))
        else:
            self.stride = self._matrix_stride(outputs[0].shape)
        if width % self.stride or height % self.stride:
            raise ModelError(f"ONNX model {self.model_path} input {width}x{height} is not a multiple of its stride {self.stride}")
        self.grid = (width // self.stride, height // self.stride)
        self._open_sequence_graphs(threads)

    def set_input_size(self, size: tuple[int, int]) -> None:
        """Run at ``size`` (width, height) pixels from now on; InputSizeError / ModelError (one
        line) for a size the model cannot take."""
        if not self.dynamic_input:
            if tuple(size) != self.input_size:
                raise ModelError(
                    f"ONNX model {self.model_path.name} has a fixed {self.input_size[0]}x{self.input_size[1]} input, "
                    f"not {size[0]}x{size[1]}; export it with dynamic height and width (`coarse-loftr export`)"
                )
            return
        self.input_size = check_input_size(size, self.stride, self.max_input_size)
        self.grid = (self.input_size[0] // self.stride, self.input_size[1] // self.stride)

    def _open_sequence_graphs(self, threads: int | None) -> None:
        """Open ``*.features.onnx`` and ``*.matching.onnx`` when they sit beside the model."""
        features_path = self.model_path.with_suffix(".features.onnx")
        matching_path = self.model_path.with_suffix(".matching.onnx")
        self.features_session = self.matching_session = None
        if self.exported and features_path.is_file() and matching_path.is_file():
            self.features_session = open_session(features_path, threads)
            self.matching_session = open_session(matching_path, threads)

    @property
    def supports_features(self) -> bool:
        """True when sequence mode can compute each frame's CNN features once."""
        return self.features_session is not None

    def features(self, image: np.ndarray) -> np.ndarray:
        """Per-frame features (the ``*.features.onnx`` graph's output) of one float32 [1, 1, H, W] image."""
        return self.features_session.run(None, {"image": image})[0]

    def match_features(self, features0: np.ndarray, features1: np.ndarray) -> RawMatches:
        """Matches from two feature maps of ``features``."""
        values = self.matching_session.run(self.match_outputs, {"features0": features0, "features1": features1})
        return RawMatches.from_outputs(dict(zip(self.match_outputs, values)))

    def _matrix_stride(self, shape: list) -> int:
        width, height = self.input_size
        if len(shape) == 3 and all(isinstance(d, int) for d in shape) and shape[1] == shape[2]:
            for stride in (8, 16, 32):
                if (width // stride) * (height // stride) == shape[1] and not (width % stride or height % stride):
                    return stride
        raise ModelError(
            f"ONNX model {self.model_path} outputs {self.output_names} {list(shape)}: neither the matches of "
            "`coarse-loftr export` nor a [1, L, L] confidence matrix"
        )

    @property
    def model_name(self) -> str:
        return self.metadata.get("name", self.model_path.name)

    @property
    def config(self) -> dict:
        return json.loads(self.metadata["config"]) if "config" in self.metadata else {}

    def run(self, image0: np.ndarray, image1: np.ndarray) -> RawMatches:
        feeds = {self.input_names[0]: image0, self.input_names[1]: image1}
        if self.exported:
            values = self.session.run(self.match_outputs, feeds)
            return RawMatches.from_outputs(dict(zip(self.match_outputs, values)))
        (confidence,) = self.session.run(self.output_names[:1], feeds)
        return extract_matches(confidence, self.grid, self.grid, self.stride, MATRIX_MODEL_THRESHOLD)

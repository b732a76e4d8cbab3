"""What every backend provides.

A backend runs one exported matcher model and returns at most K matches in model-input
pixels. The Matcher does everything else (image conversion, resizing, mapping back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import ModelError

# Names of the tensors of the single-graph matcher model written by `coarse-loftr export`.
INPUT_NAMES = ("image0", "image1")  # float32 [1, 1, H, W], grayscale in [0, 1]
OUTPUT_NAMES = ("keypoints0", "keypoints1", "confidence", "valid", "cells0", "cells1")
# keypoints0/1: float32 [1, K, 2] model-input pixels (x, y), pixel centres at integers;
# confidence: float32 [1, K] descending; valid: bool [1, K]; cells0/1: int32 [1, K].
FINE_SCORE_NAME = "fine_score"
# Graphs exported with the fine stage (`coarse-loftr export --fine-stage`) also output the fine
# score float32 [1, K]: the ZNCC of the matched patches in [-1, 1], -1 where it could not be
# measured (coarse_loftr_train.correlation).
METADATA_PREFIX = "coarse_loftr."


@dataclass
class RawMatches:
    """Matches in model-input pixel coordinates, as a backend returns them.

    All arrays hold only the valid matches, sorted by descending confidence.
    """

    keypoints0: np.ndarray  # float32 (N, 2)
    keypoints1: np.ndarray  # float32 (N, 2)
    confidence: np.ndarray  # float32 (N,)
    cells0: np.ndarray  # int32 (N,)
    cells1: np.ndarray  # int32 (N,)
    fine_score: np.ndarray | None = None  # float32 (N,), from a graph with the fine stage; else None

    @classmethod
    def from_outputs(cls, outputs: dict[str, np.ndarray]) -> "RawMatches":
        """Select the valid rows of a model's fixed-size top-K outputs (batch 1)."""
        valid = np.asarray(outputs["valid"]).reshape(-1).astype(bool)
        return cls(
            keypoints0=np.asarray(outputs["keypoints0"], dtype=np.float32).reshape(-1, 2)[valid],
            keypoints1=np.asarray(outputs["keypoints1"], dtype=np.float32).reshape(-1, 2)[valid],
            confidence=np.asarray(outputs["confidence"], dtype=np.float32).reshape(-1)[valid],
            cells0=np.asarray(outputs["cells0"]).reshape(-1)[valid].astype(np.int32),
            cells1=np.asarray(outputs["cells1"]).reshape(-1)[valid].astype(np.int32),
            fine_score=(
                np.asarray(outputs[FINE_SCORE_NAME], dtype=np.float32).reshape(-1)[valid] if FINE_SCORE_NAME in outputs else None
            ),
        )


def parse_size(text: str | None, default: tuple[int, int] | None) -> tuple[int, int] | None:
    """``"WxH"`` (e.g. model metadata ``input_size``) -> (width, height); ``default`` for None."""
    if text is None:
        return default
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def takes_any_size(backend: "Backend") -> bool:
    """True when ``backend`` runs its model at any input size cheaply: a graph exported with
    dynamic height and width on ONNX Runtime, or a PyTorch checkpoint. (A TensorRT engine is
    built for one size or one profile: it keeps its size unless one is asked for.)"""
    return bool(getattr(backend, "dynamic_input", backend.name == "torch"))


def set_input_size(backend: "Backend", size: tuple[int, int]) -> None:
    """Make ``backend`` run at ``size`` (width, height): its ``set_input_size`` where it has one,
    else only its own size passes (a one-line ModelError otherwise)."""
    setter = getattr(backend, "set_input_size", None)
    if setter is not None:
        setter(tuple(size))
    elif tuple(size) != tuple(backend.input_size):
        from ..errors import ModelError

        raise ModelError(f"the {backend.name} backend runs its model at {backend.input_size[0]}x{backend.input_size[1]} only, not {size[0]}x{size[1]}")


class Backend(Protocol):
    """A runtime for one matcher model."""

    name: str
    """Backend name: ``onnxruntime``, ``tensorrt`` or ``torch``."""
    input_size: tuple[int, int]
    """(width, height) of the model input in pixels (``set_input_size`` changes it where the
    model allows: graphs exported with dynamic height and width)."""
    stride: int
    """Model-input pixels per coarse cell."""

    def run(self, image0: np.ndarray, image1: np.ndarray) -> RawMatches:
        """Match two float32 [1, 1, H, W] images in [0, 1] (H, W = input_size)."""
        ...


def has_fine_stage(backend: Backend) -> bool:
    """Whether ``backend``'s graphs place each match themselves (``coarse-loftr export
    --fine-stage``: they output ``FINE_SCORE_NAME``), read from the graphs' metadata."""
    return getattr(backend, "metadata", {}).get("fine_stage", "none") not in ("", "none")


def match_score_scale(backend: Backend) -> float:
    """How ``backend``'s model scores pairs against the shipped model: the graphs' metadata
    ``match_score_scale`` (``coarse-loftr export --score-frames``), 1 when absent.

    Raises ModelError when the entry is not a positive number (a graph edited by hand)."""
    text = getattr(backend, "metadata", {}).get("match_score_scale")
    if text is None:
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"the model's metadata match_score_scale is {text!r}, not a positive number; export it again with `coarse-loftr export --score-frames`")
    return scale


class FeatureBackend(Backend, Protocol):
    """A backend that also runs the two sequence-mode graphs, so a sequence computes each
    frame's features (its CNN and the matching layers that see one image only) once
    (``supports_features`` tells whether they are loaded)."""

    supports_features: bool

    def features(self, image: np.ndarray) -> np.ndarray:
        """Per-frame features (the ``*.features.onnx`` graph's output) of one float32 [1, 1, H, W] image."""
        ...

    def match_features(self, features0: np.ndarray, features1: np.ndarray) -> RawMatches:
        """Matches from two feature maps returned by ``features``."""
        ...

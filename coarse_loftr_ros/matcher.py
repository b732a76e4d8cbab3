"""``Matcher``: two images in, correspondences in original pixel coordinates out.

The path is plain: preprocess (grayscale, letterbox into the model input) -> backend ->
drop matches on the padding, apply the runtime threshold -> map back to original pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import create_backend
from .backends.base import Backend, RawMatches
from .errors import ImageError
from .options import check_max_matches, check_threshold
from .preprocess import Letterbox, check_size, to_model_input
from .result import MatchResult


@dataclass(frozen=True)
class FrameFeatures:
    """One image as ``Matcher.extract`` keeps it for later matching.

    Attributes:
        data: the backend's per-frame features of the image (backends with the sequence-mode
            graphs), else the model-input image itself.
        letterbox: the image's placement in the model input.
    """

    data: np.ndarray
    letterbox: Letterbox


class Matcher:
    """Find pixel correspondences between two images with a coarse LoFTR model.

    Args:
        model: an ``.onnx`` file from ``coarse-loftr export``, a ``.pt``/``.ckpt``
            checkpoint, a TensorRT ``.engine``, or None for the model shipped in the package.
        backend: ``auto`` (by file type), ``onnxruntime``, ``tensorrt`` or ``torch``.
        threshold: minimum confidence of a returned match, a number in [0, 1]; None keeps
            the model's own (0 keeps every match the model returns).
        max_matches: keep at most this many matches (the most confident), a whole number
            >= 0; 0 or None keeps all.
        **backend_options: passed to the backend (e.g. ``threads`` for onnxruntime).

    Example::

        matcher = Matcher()
        result = matcher.match(image0, image1)   # uint8 HxW or HxWx3 BGR, any sizes
        result.keypoints0, result.keypoints1, result.confidence
    """

    def __init__(
        self,
        model: str | Path | None = None,
        backend: str = "auto",
        threshold: float | None = None,
        max_matches: int | None = None,
        **backend_options,
    ) -> None:
        # Checked before the model is opened: a bad value fails fast, with one line.
        self.threshold = threshold
        self.max_matches = max_matches
        self.backend: Backend = create_backend(model, backend, **backend_options)
        self.model_name = getattr(self.backend, "model_name", str(model or "default"))
        width, height = self.backend.input_size
        self.grid_size = (width // self.backend.stride, height // self.backend.stride)
        self._previous: FrameFeatures | None = None
        stride = self.backend.stride
        columns = self.grid_size[0]
        cells = np.arange(self.grid_size[0] * self.grid_size[1])
        self._cell_points = np.stack([cells % columns, cells // columns], axis=1).astype(np.float32) * stride
        self._sequence_features = bool(getattr(self.backend, "supports_features", False))

    @property
    def threshold(self) -> float | None:
        """Minimum confidence of a returned match in [0, 1], or None (the model's own)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = check_threshold(value)

    @property
    def max_matches(self) -> int | None:
        """At most this many matches are returned, the most confident; 0 or None: all."""
        return self._max_matches

    @max_matches.setter
    def max_matches(self, value: int | None) -> None:
        self._max_matches = check_max_matches(value)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input in pixels."""
        return self.backend.input_size

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Validate an image and convert it to the model input (see ``preprocess``)."""
        if not isinstance(image, np.ndarray):
            raise ImageError(f"expected a numpy image, got {type(image).__name__}; load files with coarse_loftr_ros.imageio.read_image")
        check_size(image, self.backend.stride, self.input_size)
        return to_model_input(image, self.input_size)

    def match(self, image0: np.ndarray, image1: np.ndarray) -> MatchResult:
        """Match two images: uint8/uint16, HxW, HxWx3 (BGR) or HxWx4 (BGRA), any sizes."""
        start = time.perf_counter()
        input0 = self.prepare(image0)
        input1 = self.prepare(image1)
        return self._run(input0, input1, start)

    def match_next(self, frame: np.ndarray) -> MatchResult | None:
        """Sequence mode: match the previous frame (image 0) against ``frame`` (image 1).

        With a backend that has the sequence-mode graphs, each frame's features (CNN and first
        self-attention layer) are computed once and kept for the next pair. Returns None for
        the first frame after construction or ``reset()``.
        """
        start = time.perf_counter()
        tensor, box = self.prepare(frame)
        prepared = time.perf_counter()
        current = self._extract(tensor, box)
        previous, self._previous = self._previous, current
        if previous is None:
            return None
        raw = self._match_extracted(previous, current)
        return self._finish(raw, previous.letterbox, box, start, prepared, time.perf_counter())

    def extract(self, image: np.ndarray) -> FrameFeatures:
        """Compute what matching needs of one image once, to match it many times (a keyframe).

        ``match_extracted(extract(a), extract(b))`` equals ``match(a, b)``.
        """
        return self._extract(*self.prepare(image))

    def match_extracted(self, features0: FrameFeatures, features1: FrameFeatures) -> MatchResult:
        """Match two images given by ``extract`` of this matcher (timing: no preprocess)."""
        start = time.perf_counter()
        raw = self._match_extracted(features0, features1)
        return self._finish(raw, features0.letterbox, features1.letterbox, start, start, time.perf_counter())

    def _extract(self, tensor: np.ndarray, box: Letterbox) -> FrameFeatures:
        return FrameFeatures(self.backend.features(tensor) if self._sequence_features else tensor, box)

    def _match_extracted(self, features0: FrameFeatures, features1: FrameFeatures) -> RawMatches:
        if self._sequence_features:
            return self.backend.match_features(features0.data, features1.data)
        return self.backend.run(features0.data, features1.data)

    def reset(self) -> None:
        """Forget the previous frame of sequence mode."""
        self._previous = None

    def _run(self, input0: tuple[np.ndarray, Letterbox], input1: tuple[np.ndarray, Letterbox], start: float) -> MatchResult:
        (tensor0, box0), (tensor1, box1) = input0, input1
        prepared = time.perf_counter()
        raw = self.backend.run(tensor0, tensor1)
        return self._finish(raw, box0, box1, start, prepared, time.perf_counter())

    def _finish(self, raw: RawMatches, box0: Letterbox, box1: Letterbox, start: float, prepared: float, inferred: float) -> MatchResult:
        result = self._to_result(raw, box0, box1)
        done = time.perf_counter()
        result.timing_ms = {
            "preprocess": (prepared - start) * 1e3,
            "inference": (inferred - prepared) * 1e3,
            "postprocess": (done - inferred) * 1e3,
            "total": (done - start) * 1e3,
        }
        return result

    def _to_result(self, raw: RawMatches, box0: Letterbox, box1: Letterbox) -> MatchResult:
        # A match whose cell lies on the letterbox padding is not on the image.
        keep = box0.inside(self._cell_points[raw.cells0]) & box1.inside(self._cell_points[raw.cells1])
        if self.threshold is not None:
            keep &= raw.confidence >= self.threshold
        index = np.flatnonzero(keep)[: self.max_matches or None]  # 0 and None: no cap
        return MatchResult(
            keypoints0=box0.to_original_clipped(raw.keypoints0[index]),
            keypoints1=box1.to_original_clipped(raw.keypoints1[index]),
            confidence=raw.confidence[index],
            cells0=raw.cells0[index],
            cells1=raw.cells1[index],
            image0_size=box0.original_size,
            image1_size=box1.original_size,
            grid_size=self.grid_size,
            backend=self.backend.name,
            model=self.model_name,
        )

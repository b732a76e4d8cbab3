"""``Matcher``: two images in, correspondences in original pixel coordinates out.

The path is plain: preprocess (grayscale, letterbox into the model input) -> the model runs of
the pair (``steps``: the upright view, and only when it matches weakly the predicted rotation,
the rewarp and the rotation and scale search, at most ``max_model_runs`` runs in all) -> drop
matches on the padding, map back to original pixels -> runtime threshold and cap -> sub-pixel
polish with Lucas-Kanade (``lk_refinement``) of the matches returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..backends import create_backend
from ..backends.base import Backend, RawMatches, has_fine_stage, match_score_scale, set_input_size, takes_any_size
from ..errors import ImageError, OptionError
from ..preprocess import InputSizeError, Letterbox, check_size, follow_input_size, to_grayscale, to_model_input
from .lk_refinement import LKRefinement
from .options import check_max_matches, check_max_model_runs, check_min_fine_score, check_threshold, check_time_budget
from .result import MatchResult
from .rotation_search import map_points, match_score
from .steps import Candidate, MotionPrior, PairSearch, PredictedRotation, Rewarp, RotationSearch, Step, Upright, Zoom, prior_of

STEP_TIMINGS = ("prior", "search", "rewarp", "zoom")
"""Steps whose own work (warps, fits, predictions; not their model runs) ``timing_ms`` reports."""

DEFAULT_MAX_MODEL_RUNS = 3
"""Model runs a pair may cost with the defaults: the upright view and two more (``steps``)."""

DEFAULT_MIN_FINE_SCORE = 0.7
"""Least fine score (ZNCC of the matched 7x7 patches) of a returned match, for graphs with the
fine stage: the score the stage itself needs to move a match (``CorrelationConfig.min_score``)."""

MIN_FINE_KEPT = 20
"""Below this many matches over ``min_fine_score`` a pair keeps all (as the polish's ``min_polished``)."""


@dataclass(frozen=True)
class FrameFeatures:
    """One image as ``Matcher.extract`` keeps it for later matching.

    Attributes:
        data: the backend's per-frame features of the image (backends with the sequence-mode
            graphs), else the model-input image itself.
        letterbox: the image's placement in the model input.
        image: the image as uint8 HxW grayscale at its original size (for the polish, the
            rotation search and the rewarp).
    """

    data: np.ndarray
    letterbox: Letterbox
    image: np.ndarray


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
        lk_refinement: polish matches to sub-pixel accuracy with pyramidal Lucas-Kanade and
            drop those whose forward-backward track disagrees (``LKRefinement``; True: its
            defaults, False: off, returning the model's positions; "auto", the default: on
            unless the model's graphs place the matches themselves with the fine stage).
        min_fine_score: with a model whose graphs have the fine stage (``coarse-loftr export
            --fine-stage``: each match placed by correlating image patches, scored by their ZNCC
            in [-1, 1]), drop the matches scoring below this, unless fewer than
            ``MIN_FINE_KEPT`` would remain; None: keep them all. Without the stage: no effect.
        rotation_search: when the upright pair matches weakly, also match image 1 turned by
            ``SEARCH_ANGLES``, then scaled by ``SEARCH_SCALES`` at the best angle, and keep the
            best view (``rotation_search`` module).
        rewarp: when a pair matches weakly (or in a view the search found) and its matches
            agree on a homography far from a shift (perspective, zoom, rotation), warp image 1
            onto image 0 by it, match again and keep the better of the two (``rewarp`` module).
        zoom: when the rewarp of a weak upright pair gains nothing (a camera moving forward:
            near things grow, far ones do not), also match image 1 shrunk about its centre by
            ``ZOOM_SCALES`` and return those views' matches with the upright's (``steps.Zoom``;
            needs ``rewarp``).
        max_model_runs: the most model runs one pair may cost, a whole number >= 1 (1: the
            upright view only, no search and no rewarp). The steps spend it in the order of
            ``steps``: the motion prior, the upright view, the predicted rotation, the rewarp,
            the fixed angles and scales of the search, the zoom views.
        time_budget_ms: the most milliseconds the model runs of one pair may take, counted from
            the call (preprocessing and, in sequence mode, the new frame's features included), a
            number >= 0; 0 or None: no limit. The first run always happens; a further one starts
            only while the time so far plus the pair's longest run so far (with a view's
            features, which a run in sequence mode computes but the first did not) stays within
            it, so a slow pair gives up its search or rewarp instead of overrunning. The polish
            after the runs (a few ms, docs/benchmarks.md) is not counted.
        motion_prior: in sequence mode, try the view the previous pair was matched in (when the
            search turned or scaled it) before the upright one (``steps.MotionPrior``).
        input_size: the model input (width, height) in pixels. ``"auto"`` (default): for
            each pair, the model's own size while image 1 letterboxed into it fills at least
            80 % of it (4:3 and 3:2 images), else the same area at image 1's aspect ratio
            (``preprocess.follow_input_size``: 1226x370 KITTI frames -> 1008x304, 1280x720 ->
            736x416), so a wide camera is not letterboxed into a 4:3 input; on a model that
            runs at one size only (exported with fixed shapes, or a TensorRT engine) it is
            that size. None: the model's own (640x480 for the shipped model). A
            tuple: that size, whole multiples of the model's stride (16 px), at least 4 cells
            each way and at most 1280x1024 pixels; a model exported with fixed shapes takes
            only its own.
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
        lk_refinement: bool | str | LKRefinement = "auto",
        min_fine_score: float | None = DEFAULT_MIN_FINE_SCORE,
        rotation_search: bool = True,
        rewarp: bool = True,
        zoom: bool = True,
        max_model_runs: int = DEFAULT_MAX_MODEL_RUNS,
        time_budget_ms: float | None = None,
        motion_prior: bool = True,
        input_size: tuple[int, int] | str | None = "auto",
        **backend_options,
    ) -> None:
        # Checked before the model is opened: a bad value fails fast, with one line.
        self.threshold = threshold
        self.max_matches = max_matches
        self._auto_polish = LKRefinement()
        self._fine_stage = False  # set from the model below
        self.lk_refinement = lk_refinement
        self.min_fine_score = check_min_fine_score(min_fine_score)
        self.rotation_search = bool(rotation_search)
        self.rewarp = bool(rewarp)
        self.zoom = bool(zoom)
        if not (input_size is None or input_size == "auto" or isinstance(input_size, (tuple, list))):
            raise InputSizeError(f"input_size must be (width, height), 'auto' or None, got {input_size!r}")
        self.max_model_runs = max_model_runs
        self.time_budget_ms = time_budget_ms
        self.motion_prior = bool(motion_prior)
        self.backend: Backend = create_backend(model, backend, **backend_options)
        self.model_name = getattr(self.backend, "model_name", str(model or "default"))
        self._fine_stage = has_fine_stage(self.backend)
        self.match_score_scale = match_score_scale(self.backend)
        """The model's pair scores over the shipped model's (graph metadata, 1 when absent):
        scores are divided by it, so the steps' thresholds mean the same for every model."""
        # "auto": each pair's input follows image 1 (_follow), where the model takes any size.
        self._follows_images = input_size == "auto" and takes_any_size(self.backend)
        self._model_input_size = tuple(self.backend.input_size)  # the model's own, before any change
        if isinstance(input_size, (tuple, list)):
            set_input_size(self.backend, tuple(input_size))
        self._grid_points: tuple[tuple[int, int], np.ndarray] | None = None  # (grid, its cell points), see _cell_points
        self._previous: FrameFeatures | None = None
        self._prior: np.ndarray | None = None  # sequence mode: the previous pair's view transform (3x3)
        self._sequence_features = bool(getattr(self.backend, "supports_features", False))
        self._extract_ms = 0.0  # the last image's features, in ms: what a view's run costs beyond the matching

    @property
    def threshold(self) -> float | None:
        """Minimum confidence of a returned match in [0, 1], or None (the model's own)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = check_threshold(value)

    @property
    def min_fine_score(self) -> float | None:
        """Least fine score in [-1, 1] of a returned match (models with the fine stage), or None: all."""
        return self._min_fine_score

    @min_fine_score.setter
    def min_fine_score(self, value: float | None) -> None:
        self._min_fine_score = check_min_fine_score(value)

    @property
    def max_matches(self) -> int | None:
        """At most this many matches are returned, the most confident; 0 or None: all."""
        return self._max_matches

    @max_matches.setter
    def max_matches(self, value: int | None) -> None:
        self._max_matches = check_max_matches(value)

    @property
    def max_model_runs(self) -> int:
        """The most model runs one pair may cost (>= 1)."""
        return self._max_model_runs

    @max_model_runs.setter
    def max_model_runs(self, value: int) -> None:
        self._max_model_runs = check_max_model_runs(value)

    @property
    def time_budget_ms(self) -> float | None:
        """The most milliseconds a pair's model runs may take (> 0), or None: no limit."""
        return self._time_budget_ms

    @time_budget_ms.setter
    def time_budget_ms(self, value: float | None) -> None:
        self._time_budget_ms = check_time_budget(value)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps that spend a pair's model runs, in order (``steps`` module)."""
        steps: list[Step] = [MotionPrior()] if self.motion_prior and (self.rotation_search or self.rewarp) else []
        steps.append(Upright())
        if self.rotation_search:
            steps.append(PredictedRotation())
        if self.rewarp:
            steps.append(Rewarp())
        if self.rotation_search:
            steps.append(RotationSearch())
        if self.rewarp and self.zoom:
            steps.append(Zoom())
        return tuple(steps)

    @property
    def fine_stage(self) -> bool:
        """Whether the model's graphs place each match themselves and score it (``fine_score``:
        ``coarse-loftr export --fine-stage``; the shipped model's do)."""
        return self._fine_stage

    @property
    def lk_refinement(self) -> LKRefinement | None:
        """The sub-pixel polish, or None when off. Set True for its defaults, False for off, or
        ``"auto"``: the polish unless the model's graphs place each match themselves (a fine
        stage, ``has_fine_stage``)."""
        if isinstance(self._lk_refinement, str):  # "auto"
            return None if self._fine_stage else self._auto_polish
        return self._lk_refinement

    @lk_refinement.setter
    def lk_refinement(self, value: bool | str | LKRefinement | None) -> None:
        if isinstance(value, str) and value == "auto":
            self._lk_refinement = "auto"
        elif value is True:
            self._lk_refinement = LKRefinement()
        elif value is False or value is None:
            self._lk_refinement = None
        elif callable(value):  # an LKRefinement, or anything of its call signature
            self._lk_refinement = value
        else:
            raise OptionError(f"lk_refinement must be True, False or 'auto', got {value!r}")

    @property
    def input_follows_images(self) -> bool:
        """True when ``input_size="auto"`` applies: the model input is chosen per pair from
        image 1 (``preprocess.follow_input_size``); False for a fixed size or a model that runs
        at one size only."""
        return self._follows_images

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input in pixels (with ``input_size="auto"``: that of
        the last pair, the model's own before the first)."""
        return self.backend.input_size

    @property
    def grid_size(self) -> tuple[int, int]:
        """(columns, rows) of coarse cells of the model input."""
        width, height = self.input_size
        return width // self.backend.stride, height // self.backend.stride

    @property
    def _cell_points(self) -> np.ndarray:
        """Model-input pixel (x, y) of every coarse cell, row-major, float32 (L, 2); cached per grid."""
        grid = self.grid_size
        if self._grid_points is None or self._grid_points[0] != grid:
            cells = np.arange(grid[0] * grid[1])
            points = np.stack([cells % grid[0], cells // grid[0]], axis=1).astype(np.float32) * self.backend.stride
            self._grid_points = (grid, points)
        return self._grid_points[1]

    def _follow(self, image: np.ndarray) -> None:
        """With ``input_size="auto"``, make the model input follow ``image``'s aspect ratio."""
        if not (self._follows_images and isinstance(image, np.ndarray) and image.ndim >= 2):
            return  # a bad image is refused, with its reason, by check_size in _grayscale
        height, width = image.shape[:2]
        if min(height, width) >= self.backend.stride:  # else refused by check_size too
            size = follow_input_size((width, height), self._model_input_size, self.backend.stride, getattr(self.backend, "max_input_size", None))
            set_input_size(self.backend, size)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Validate an image and convert it to the model input (see ``preprocess``; with
        ``input_size="auto"`` the input is the one ``image`` would have as image 1)."""
        self._follow(image)
        return self._prepare_gray(self._grayscale(image))

    def match(self, image0: np.ndarray, image1: np.ndarray) -> MatchResult:
        """Match two images: uint8/uint16, HxW, HxWx3 (BGR) or HxWx4 (BGRA), any sizes."""
        start = time.perf_counter()
        self._follow(image1)
        gray0, gray1 = self._grayscale(image0), self._grayscale(image1)
        tensor0, box0 = self._prepare_gray(gray0)
        tensor1, box1 = self._prepare_gray(gray1)

        if not self._sequence_features:

            def run(image1: np.ndarray) -> tuple[RawMatches, Letterbox]:
                tensor, box = (tensor1, box1) if image1 is gray1 else self._prepare_gray(image1)
                return self.backend.run(tensor0, tensor), box

            return self._match(run, gray0, box0, gray1, start, time.perf_counter())
        # With the split graphs, image 0's features are computed once (in the first run), so a
        # second view of image 1 (rewarp, search) costs image 1's features and the matching only.
        features0: list[FrameFeatures] = []

        def run_split(image1: np.ndarray) -> tuple[RawMatches, Letterbox]:
            if not features0:
                features0.append(self._extract(tensor0, box0, gray0))
            features = self._extract(tensor1, box1, gray1) if image1 is gray1 else self._extract(*self._prepare_gray(image1), image1)
            return self._match_extracted(features0[0], features), features.letterbox

        return self._match(run_split, gray0, box0, gray1, start, time.perf_counter())

    def match_next(self, frame: np.ndarray) -> MatchResult | None:
        """Sequence mode: match the previous frame (image 0) against ``frame`` (image 1).

        With a backend that has the sequence-mode graphs, each frame's features (CNN and first
        self-attention layer) are computed once and kept for the next pair. Returns None for
        the first frame after construction or ``reset()``.
        """
        start = time.perf_counter()
        self._follow(frame)
        gray = self._grayscale(frame)
        tensor, box = self._prepare_gray(gray)
        prepared = time.perf_counter()
        current = self._extract(tensor, box, gray)
        previous, self._previous = self._previous, current
        if previous is None:
            return None
        previous = self._at_input_size(previous)  # a frame of another shape before this one
        return self._match(self._runner(previous, current), previous.image, previous.letterbox, gray, start, prepared, sequence=True, view_features_ms=self._extract_ms)

    def extract(self, image: np.ndarray) -> FrameFeatures:
        """Compute what matching needs of one image once, to match it many times (a keyframe).

        ``match_extracted(extract(a), extract(b))`` equals ``match(a, b)``.
        """
        self._follow(image)
        gray = self._grayscale(image)
        return self._extract(*self._prepare_gray(gray), gray)

    def match_extracted(self, features0: FrameFeatures, features1: FrameFeatures) -> MatchResult:
        """Match two images given by ``extract`` of this matcher (timing: no preprocess). With
        ``input_size="auto"``, image 0 is extracted again at image 1's input when theirs differ."""
        start = time.perf_counter()
        if self._follows_images:
            set_input_size(self.backend, features1.letterbox.input_size)
        features0 = self._at_input_size(features0)
        return self._match(self._runner(features0, features1), features0.image, features0.letterbox, features1.image, start, start, view_features_ms=self._extract_ms)

    def reset(self) -> None:
        """Forget the previous frame of sequence mode (and the view its pair was matched in)."""
        self._previous = None
        self._prior = None

    # ------------------------------------------------------------------ the steps

    def _at_input_size(self, features: FrameFeatures) -> FrameFeatures:
        """``features`` extracted again at the current model input, when theirs differs."""
        if features.letterbox.input_size == tuple(self.input_size):
            return features
        return self._extract(*self._prepare_gray(features.image), features.image)

    def _grayscale(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            raise ImageError(f"expected a numpy image, got {type(image).__name__}; load files with coarse_loftr_ros.imageio.read_image")
        check_size(image, self.backend.stride, self.input_size)
        return to_grayscale(image)

    def _prepare_gray(self, gray: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return to_model_input(gray, self.input_size, self.backend.stride)

    def _extract(self, tensor: np.ndarray, box: Letterbox, gray: np.ndarray) -> FrameFeatures:
        if not self._sequence_features:
            return FrameFeatures(tensor, box, gray)
        start = time.perf_counter()
        features = FrameFeatures(self.backend.features(tensor), box, gray)
        self._extract_ms = (time.perf_counter() - start) * 1e3
        return features

    def _match_extracted(self, features0: FrameFeatures, features1: FrameFeatures) -> RawMatches:
        if self._sequence_features:
            return self.backend.match_features(features0.data, features1.data)
        return self.backend.run(features0.data, features1.data)

    def _runner(self, features0: FrameFeatures, features1: FrameFeatures) -> Callable[[np.ndarray], tuple[RawMatches, Letterbox]]:
        """Image 1 (as given, or a view of it) -> its matches with ``features0``."""

        def run(image1: np.ndarray) -> tuple[RawMatches, Letterbox]:
            features = features1 if image1 is features1.image else self._extract(*self._prepare_gray(image1), image1)
            return self._match_extracted(features0, features), features.letterbox

        return run

    def _match(
        self,
        run: Callable[[np.ndarray], tuple[RawMatches, Letterbox]],
        image0: np.ndarray,
        box0: Letterbox,
        image1: np.ndarray,
        start: float,
        prepared: float,
        sequence: bool = False,
        view_features_ms: float = 0.0,
    ) -> MatchResult:
        """The steps' runs, the best view's matches mapped back and polished. ``view_features_ms``:
        where image 1's features were computed before the runs (sequence mode, ``match_extracted``),
        what a view's run will cost beyond the first (the time budget's estimate)."""
        pair = PairSearch(
            image0, box0, image1, run,
            score=lambda raw, box1: self._score(raw, box0, box1),
            model_points=lambda candidate: self._model_points(candidate, box0),
            stride=self.backend.stride,
            budget=self.max_model_runs,
            prior=self._prior if sequence else None,
            deadline=None if self.time_budget_ms is None else start + self.time_budget_ms / 1e3,
            view_features_ms=view_features_ms,
        )
        pair.run_steps(self.steps)
        best = pair.kept  # the view the pair is matched in; the zoom views' matches join it
        given_box1 = Letterbox.fit((image1.shape[1], image1.shape[0]), self.input_size)  # a view's may differ
        if sequence:
            self._prior = prior_of(best)
        inferred = time.perf_counter()
        result = self._to_result(best, box0, given_box1, image0)
        if pair.merged:
            result = self._merge(result, [self._to_result(c, box0, given_box1, image0) for c in pair.merged])
        result.rotation_deg, result.scale, result.rewarped = best.view.angle, best.view.scale, best.view.rewarped
        result.model_runs = pair.runs
        result.match_score = best.score
        done = time.perf_counter()
        result.timing_ms = {
            "preprocess": (prepared - start) * 1e3,
            "inference": (inferred - prepared) * 1e3,
            "postprocess": (done - inferred) * 1e3,
            "total": (done - start) * 1e3,
            "model": pair.model_ms,
            **{name: pair.step_ms.get(name, 0.0) for name in STEP_TIMINGS},
            "polish": result.timing_ms.get("polish", 0.0),
        }
        return result

    def _merge(self, result: MatchResult, others: list[MatchResult]) -> MatchResult:
        """``result`` with the matches of ``others`` (other views of the same pair), by
        descending confidence, capped. Every view's matches stay, so a cell of image 0 may have
        a match from each view: where the views agree, a robust fit downstream counts it once
        per view; where they disagree, it tells them apart. (Keeping one match per cell, or per
        pair of cells, lowered the drive's pose AUC@10 at 20 frames from 47 to 34.)"""
        parts = [result, *others]
        keep = np.argsort(-np.concatenate([r.confidence for r in parts]), kind="stable")[: self.max_matches or None]
        for name in ("keypoints0", "keypoints1", "confidence", "cells0", "cells1"):
            setattr(result, name, np.concatenate([getattr(r, name) for r in parts])[keep])
        result.timing_ms["polish"] = sum(r.timing_ms.get("polish", 0.0) for r in parts)
        return result

    def _model_points(self, candidate: Candidate, box0: Letterbox) -> tuple[np.ndarray, np.ndarray]:
        """A candidate's matched points that lie on both images, in model-input pixels."""
        on_images = self._on_images(candidate.raw, box0, candidate.letterbox1)
        return candidate.raw.keypoints0[on_images], candidate.raw.keypoints1[on_images]

    def _on_images(self, raw: RawMatches, box0: Letterbox, box1: Letterbox) -> np.ndarray:
        """Bool mask of the matches whose cells lie on both images, not on the padding."""
        return box0.inside(self._cell_points[raw.cells0]) & box1.inside(self._cell_points[raw.cells1])

    def _score(self, raw: RawMatches, box0: Letterbox, box1: Letterbox) -> float:
        """``match_score`` of the matches on both images, in the shipped model's units."""
        stride = self.backend.stride
        cells = min(math.ceil(w / stride) * math.ceil(h / stride) for w, h in (box0.resized_size, box1.resized_size))
        return match_score(raw.confidence[self._on_images(raw, box0, box1)], cells) / self.match_score_scale

    def _to_result(self, best: Candidate, box0: Letterbox, box1: Letterbox, image0: np.ndarray) -> MatchResult:
        """Matches on the images, in original pixels, thresholded, capped, polished, mapped back.

        ``best`` is the model run kept: image 1 as given, or a view of it (turned, scaled or
        rewarped) with ``best.view.to_image1`` the transform back to the given image 1, whose
        placement in the model input is ``box1``. The threshold and the cap apply first, so the
        polish works only on the matches that can be returned.
        """
        raw, view, view_box = best.raw, best.view, best.letterbox1
        index = np.flatnonzero(self._on_images(raw, box0, view_box))
        if self.threshold is not None:
            index = index[raw.confidence[index] >= self.threshold]
        index = index[: self.max_matches or None]  # 0 and None: no cap; the model's order is by confidence
        if raw.fine_score is not None and self.min_fine_score is not None:
            trusted = raw.fine_score[index] >= self.min_fine_score
            if trusted.sum() >= MIN_FINE_KEPT:  # else a pair the stage cannot follow keeps its matches
                index = index[trusted]
        keypoints0 = box0.to_original_clipped(raw.keypoints0[index])
        keypoints1 = view_box.to_original_clipped(raw.keypoints1[index])
        cells1 = raw.cells1[index]
        polish_ms = 0.0
        if self.lk_refinement is not None:
            polish_start = time.perf_counter()
            keypoints1, keep = self.lk_refinement(image0, view.image, keypoints0, keypoints1, min(box0.scale, view_box.scale))
            index, keypoints0, keypoints1, cells1 = index[keep], keypoints0[keep], keypoints1[keep], cells1[keep]
            polish_ms = (time.perf_counter() - polish_start) * 1e3
        if view.to_image1 is not None:
            # Back to the given image 1; its cell is the one of its own grid the point lies in.
            keypoints1 = map_points(view.to_image1, keypoints1)
            width, height = box1.original_size
            on_image = (keypoints1[:, 0] >= 0) & (keypoints1[:, 1] >= 0) & (keypoints1[:, 0] <= width - 1) & (keypoints1[:, 1] <= height - 1)
            index, keypoints0, keypoints1 = index[on_image], keypoints0[on_image], keypoints1[on_image]
            cells1 = self._cells_of(box1.to_model(keypoints1))
        return MatchResult(
            keypoints0=keypoints0,
            keypoints1=keypoints1,
            confidence=raw.confidence[index],
            cells0=raw.cells0[index],
            cells1=cells1.astype(np.int32),
            image0_size=box0.original_size,
            image1_size=box1.original_size,
            grid_size=self.grid_size,
            backend=self.backend.name,
            model=self.model_name,
            timing_ms={"polish": polish_ms},
        )

    def _cells_of(self, points: np.ndarray) -> np.ndarray:
        """Row-major index of the model-grid cell that holds each model-input point (N, 2)."""
        columns, rows = self.grid_size
        stride = self.backend.stride
        # Cell (col, row) is centred on model pixel (col * stride, row * stride).
        col = np.clip(np.rint(points[:, 0] / stride), 0, columns - 1).astype(np.int32)
        row = np.clip(np.rint(points[:, 1] / stride), 0, rows - 1).astype(np.int32)
        return row * columns + col

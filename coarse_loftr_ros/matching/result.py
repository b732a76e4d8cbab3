"""The result of matching two images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MatchResult:
    """Correspondences between image 0 and image 1.

    Coordinates are pixels of the ORIGINAL images in the OpenCV convention: x to the
    right, y down, pixel centres at integer coordinates (the top-left pixel's centre is
    (0, 0)). Matches are sorted by descending confidence.

    Attributes:
        keypoints0: float32 (N, 2), [x, y] in image 0.
        keypoints1: float32 (N, 2), [x, y] in image 1.
        confidence: float32 (N,), the dual-softmax confidence in (0, 1], descending.
        cells0: int32 (N,), row-major index of the matched coarse cell in image 0's model
            grid (``row * grid_size[0] + col``); equal indices in consecutive results of
            a sequence denote the same cell, so tracks can be chained.
        cells1: int32 (N,), the same for image 1.
        image0_size: (width, height) of the original image 0 in pixels.
        image1_size: (width, height) of the original image 1 in pixels.
        grid_size: (columns, rows) of the coarse grid of the model input.
        backend: name of the backend that ran the model.
        model: name or path of the model.
        rotation_deg: the in-plane angle (degrees, counter-clockwise) by which the rotation
            search turned image 1 before matching; 0 when it matched upright. The keypoints
            are always in the given image 1.
        scale: the factor by which the search scaled image 1 (about its centre) before
            matching; 1 when it did not.
        rewarped: True when image 1 was matched warped onto image 0 by the homography a first
            match agreed on (``Matcher(rewarp=True)``); the keypoints are still in the given image 1.
        model_runs: how many times the model ran for this pair (1, or more when the search,
            the rewarp or the motion prior tried other views; at most ``Matcher.max_model_runs``,
            fewer when ``Matcher.time_budget_ms`` ran out).
        match_score: how well the view kept matched (``rotation_search.match_score``: the
            summed confidence of its matches per coarse cell of the smaller image, over the
            model's ``Matcher.match_score_scale``): what the steps decide on. Consecutive video
            frames score about 0.2-0.7 with the shipped model; 0 when nothing matched.
        timing_ms: wall time per stage in milliseconds: ``preprocess``, ``inference`` (every
            model run and the steps around them), ``postprocess`` (mapping back and the polish),
            ``total``; and within them ``model`` (the model runs alone), ``prior``, ``search``
            and ``rewarp`` (each step's own work besides its model runs: warps, fits, the angle
            prediction) and ``polish``.
    """

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    confidence: np.ndarray
    cells0: np.ndarray
    cells1: np.ndarray
    image0_size: tuple[int, int]
    image1_size: tuple[int, int]
    grid_size: tuple[int, int]
    backend: str = ""
    model: str = ""
    rotation_deg: float = 0.0
    scale: float = 1.0
    rewarped: bool = False
    model_runs: int = 1
    match_score: float = 0.0
    timing_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.confidence.shape[0])

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (the ``coarse-loftr match --json`` layout)."""
        return {
            "keypoints0": self.keypoints0.astype(float).round(3).tolist(),
            "keypoints1": self.keypoints1.astype(float).round(3).tolist(),
            "confidence": self.confidence.astype(float).round(6).tolist(),
            "cells0": self.cells0.astype(int).tolist(),
            "cells1": self.cells1.astype(int).tolist(),
            "num_matches": len(self),
            "image0_size": list(self.image0_size),
            "image1_size": list(self.image1_size),
            "grid_size": list(self.grid_size),
            "backend": self.backend,
            "model": self.model,
            "rotation_deg": float(self.rotation_deg),
            "scale": float(self.scale),
            "rewarped": bool(self.rewarped),
            "model_runs": int(self.model_runs),
            "match_score": round(float(self.match_score), 6),
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }

"""Match-score calibration: how a model's ``match_score`` compares with the shipped model's.

The steps after the model decide on its first run's ``rotation_search.match_score`` (the summed
confidence of the matches per coarse cell): below ``WEAK_MATCH_SCORE`` a pair is searched, below
``REWARP_MATCH_SCORE`` it is rewarped. Those thresholds were chosen for the shipped model. A
retrained model may be as good and still score lower across the board (a larger student trained
with "no match" cells scores consecutive video frames about 0.87x the shipped one's), and then
the steps run on pairs that do not need them, and sequence mode slows down.

``score_scale`` measures the ratio on consecutive frames of real video (the median over pairs of
the new model's first-run score over the shipped model's); ``coarse-loftr export --score-frames``
writes it into the graphs' metadata (``match_score_scale``), and ``Matcher`` divides the scores
by it before comparing them with the thresholds. The shipped model has no such entry (scale 1).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import CoarseLoftrError
from ..matching.matcher import Matcher
from .bench import frame_files

DEFAULT_PAIRS_PER_FOLDER = 12
"""Consecutive pairs read from the start of each folder: 12 pairs of each of the eleven
training clips give ratios whose clips agree within about 5 % (docs/training.md)."""


def first_run_scores(matcher: Matcher, frames: list[Path]) -> np.ndarray:
    """``MatchResult.match_score`` of each consecutive pair of ``frames`` times the model's
    ``match_score_scale`` (the score as the model gives it; float64, one per pair). ``matcher``
    should run once a pair, upright (``score_scale``'s options)."""
    scores: list[float] = []
    for path0, path1 in zip(frames[:-1], frames[1:]):
        image0, image1 = (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in (path0, path1))
        if image0 is None or image1 is None:
            raise CoarseLoftrError(f"cannot read {path0 if image0 is None else path1} as an image; remove it from the folder or pick another")
        scores.append(matcher.match(image0, image1).match_score * matcher.match_score_scale)
    return np.asarray(scores, np.float64)


def video_frames(folders: list[Path], pairs_per_folder: int = DEFAULT_PAIRS_PER_FOLDER) -> list[list[Path]]:
    """The first ``pairs_per_folder + 1`` images (by name) of each folder of consecutive frames."""
    runs = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise CoarseLoftrError(f"--score-frames {folder}: not a folder; give folders of consecutive video frames")
        images = frame_files(Path(folder))
        if len(images) < 2:
            raise CoarseLoftrError(f"--score-frames {folder}: needs at least two images of consecutive frames, found {len(images)}")
        runs.append(images[: pairs_per_folder + 1])
    return runs


def score_scale(model: str | Path, folders: list[Path], reference: str | Path | None = None,
                pairs_per_folder: int = DEFAULT_PAIRS_PER_FOLDER, threads: int | None = None) -> tuple[float, int]:
    """The median over consecutive pairs of ``model``'s first-run ``match_score`` over
    ``reference``'s (None: the shipped model) and the number of pairs it was measured on.

    Both run upright, once a pair, without the steps, on the first ``pairs_per_folder`` pairs of
    each folder. Pairs where the reference matched nothing are left out.
    """
    options = dict(max_model_runs=1, rotation_search=False, rewarp=False, zoom=False, lk_refinement=False)
    if threads is not None:
        options["threads"] = threads
    candidate, shipped = Matcher(model, **options), Matcher(reference, **options)
    ratios = []
    for frames in video_frames(folders, pairs_per_folder):
        new, old = first_run_scores(candidate, frames), first_run_scores(shipped, frames)
        ratios.extend(new[old > 0] / old[old > 0])
    if not ratios:
        raise CoarseLoftrError("the reference model matched nothing on --score-frames; give folders of consecutive video frames")
    return float(np.median(ratios)), len(ratios)

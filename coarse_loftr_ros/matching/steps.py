"""The model runs of one pair, as data: each step proposes a view of image 1 to match, and
``Matcher`` spends the pair's budget of model runs on the proposals in the order of its steps.

A *view* is image 1 as given, or warped (turned, scaled, or rewarped onto image 0) with the
transform back to the given image 1. Every step has one interface, ``propose(pair) -> View |
None``: what it needs is the ``PairSearch`` (the images, the candidates so far, the best one and
its score); what it costs is one model run per view it proposes; what it returns is the view.
The loop in ``PairSearch.run_steps`` asks the steps in order and runs the first proposal, again
and again, until no step proposes or the budget (``Matcher(max_model_runs=...)``) is spent, so
the order of the steps is the order in which they spend the budget. With a time budget
(``Matcher(time_budget_ms=...)``) a run after the first also needs the time: it starts only when
the pair's time so far plus its longest run so far stays within the budget.

The steps, in order:

1. ``MotionPrior`` (sequence mode): the view the previous pair was matched in, first, because
   consecutive frames move smoothly;
2. ``Upright``: image 1 as given;
3. ``PredictedRotation``: when the best view matches weakly, image 1 turned by the in-plane
   angle its gradient orientations suggest (``rotation_search.predict_rotation``: about 1 ms);
4. ``Rewarp``: when the best view still matches below ``REWARP_MATCH_SCORE`` (or was turned or
   scaled by the search), image 1 warped onto image 0 by the homography the best view's matches
   agree on. A rewarp of the upright view that scores less than ``REWARP_MIN_GAIN`` above it ends
   the pair's runs: the pair is no turn, zoom or perspective the steps can undo (a car driving
   10-20 frames forward through a street, or a pair the model cannot match at all), and no
   further view pays for its run;
5. ``RotationSearch``: when the best view still matches weakly, the fixed angles (nearest the
   predicted angle first) and then the scales of ``rotation_search``; the scales first when no
   turn is predicted.
6. ``Zoom``: when the rewarp of the upright view stopped the runs (no gain: a camera moving
   forward through a scene, whose near parts grow and far parts do not), image 1 shrunk about
   its centre by each of ``ZOOM_SCALES``. The near parts of a view 10-20 frames ahead of a car
   grow 1.3-2x, beyond what the model's cells tolerate; shrunk, they come back into its range.
   These views are matched *as well as* the best one: ``Matcher`` returns their matches with
   the best view's (``View.merge``), so a cell of image 0 may have a match from each view. No
   other step runs after a zoom view.

The Lucas-Kanade polish runs after the model runs, on the best view only (``lk_refinement``); it
costs no model run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..backends.base import RawMatches
from ..preprocess import Letterbox
from .rewarp import REWARP_DISTORTION, REWARP_MATCH_SCORE, REWARP_RANSAC_CELLS, distortion, fit_homography, warp_onto
from .rotation_search import SEARCH_ANGLES, SEARCH_SCALES, WEAK_MATCH_SCORE, predict_rotation, rotate_image

REWARP_MIN_GAIN = 0.15
"""A rewarp of the upright view must raise its score by this share, or the pair's runs end.
Measured with a budget of 8 runs: on the development homography levels and the castle views such
a rewarp raises the score by a median of 65-117 %; on the dev drive's pairs 5-20 frames apart by
-1 to +6 % (10th-90th percentile -10 to +13 %), and the views the search tried after it there
found no more correct matches than the view kept (docs/model.md)."""

ZOOM_SCALES: tuple[float, ...] = (0.7, 0.85)
"""Factors by which ``Zoom`` shrinks image 1 about its centre, in the order tried (the default
budget of 3 runs leaves room for the first only). On the development drive (``Matcher()``, 41
pairs 10 frames apart, 31 pairs 20 frames apart) the 0.7 view's matches with the kept view's
raise pose AUC@10 from 78.9 to 93.3 and from 17.8 to 47.3; 0.6, 0.75, 0.8 and both 0.7 and 0.85
scored within noise of it or below (docs/log/2026-12-07.md)."""

ZOOM_GROWTH_MIN = -0.1
"""``Zoom`` enlarges image 1 instead (by the inverse factors) when the upright view's matches lie
this much nearer the image centre in image 1 than in image 0 (median log of the ratio of their
distances from the centre): image 1 is then the farther view (a camera moving backwards, or a
pair given newest first). Far pairs of a forward-moving car measure -0.09 to +0.14 there, so
the threshold sits below them."""

PREDICTED_ANGLE_MIN = 15.0
"""``PredictedRotation`` proposes a turn only when the predicted angle is at least this many
degrees: the model itself tolerates about 25."""


@dataclass(frozen=True)
class View:
    """Image 1 as the model sees it in one run.

    Attributes:
        image: uint8 HxW, image 1 or a warp of it.
        to_image1: None for the given image 1, else the 2x3 affine or 3x3 homography that maps
            pixels of ``image`` to pixels of the given image 1.
        angle: degrees (counter-clockwise on the screen) by which image 1 was turned.
        scale: factor by which image 1 was scaled about its centre.
        rewarped: warped onto image 0 by a homography (``Rewarp`` or ``MotionPrior``).
        key: what identifies the view among a pair's candidates (no view is matched twice).
        stop_below: when the view scores below this, the pair's runs end (None: never).
        merge: its matches are returned together with the best view's, not instead (``Zoom``).
    """

    image: np.ndarray
    to_image1: np.ndarray | None = None
    angle: float = 0.0
    scale: float = 1.0
    rewarped: bool = False
    key: tuple = ("upright",)
    stop_below: float | None = None
    merge: bool = False


@dataclass
class Candidate:
    """One model run on a pair: the view and what the model found in it."""

    raw: RawMatches
    letterbox1: Letterbox  # the view's placement in the model input
    view: View
    score: float = 0.0

    @property
    def ended_runs(self) -> bool:
        """It scored below its view's ``stop_below``: the pair's runs end here."""
        return self.view.stop_below is not None and self.score < self.view.stop_below


class Step(Protocol):
    """A step that may spend model runs on a pair."""

    name: str

    def propose(self, pair: "PairSearch") -> View | None:
        """The next view to match (one model run), or None when this step has nothing (more)."""


@dataclass
class PairSearch:
    """The model runs of one pair and what the steps need to choose the next.

    ``run`` matches image 0 against a view's image (one model run); ``score`` rates a candidate
    (``rotation_search.match_score`` on the matches that lie on both images); ``model_points``
    gives a candidate's matched points on both images in model-input pixels.
    """

    image0: np.ndarray
    box0: Letterbox
    image1: np.ndarray
    run: Callable[[np.ndarray], tuple[RawMatches, Letterbox]]
    score: Callable[[RawMatches, Letterbox], float]
    model_points: Callable[[Candidate], tuple[np.ndarray, np.ndarray]]
    stride: int
    budget: int
    prior: np.ndarray | None = None  # 3x3, the previous pair's view transform (sequence mode)
    deadline: float | None = None  # time.perf_counter() seconds by which the runs must end (None: no limit)
    candidates: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None
    notes: dict = field(default_factory=dict)  # per-pair memory of the steps (what was tried)
    model_ms: float = 0.0
    step_ms: dict[str, float] = field(default_factory=dict)
    longest_run_ms: float = 0.0  # the longest run so far: its step's work, the model run and its score
    view_features_ms: float = 0.0  # what a view's features cost that the first run did not pay (image 1's were ready)

    @property
    def best_score(self) -> float:
        return self.best.score if self.best is not None else -1.0

    @property
    def runs(self) -> int:
        return len(self.candidates)

    @property
    def stopped(self) -> bool:
        """The last view scored below its ``stop_below``: no more runs."""
        return bool(self.candidates) and self.candidates[-1].ended_runs

    @property
    def out_of_time(self) -> bool:
        """A further run would likely end past the deadline: the time so far plus the longest
        run so far is beyond it (never before the first run)."""
        if self.deadline is None or not self.candidates:
            return False
        return time.perf_counter() + self.longest_run_ms / 1e3 > self.deadline

    @property
    def merged(self) -> list[Candidate]:
        """The candidates whose matches are returned with the best view's (``View.merge``)."""
        return [c for c in self.candidates if c.view.merge]

    @property
    def kept(self) -> Candidate | None:
        """The best candidate among those that are not merged: the view the pair is matched in."""
        own = [c for c in self.candidates if not c.view.merge]
        return max(own, key=lambda c: c.score) if own else None

    def tried(self, key: tuple) -> bool:
        return any(c.view.key == key for c in self.candidates)

    def run_steps(self, steps: tuple[Step, ...]) -> None:
        """Spend the budget on the steps' proposals, in the order of ``steps``, until it is spent
        (runs or time) or no step proposes; once a view scores below its ``stop_below``, only
        the steps marked ``after_stop`` (``Zoom``) may still propose. The result: ``kept``,
        ``merged``."""
        while self.runs < self.budget and not self.out_of_time:
            for step in steps:
                if self.stopped and not getattr(step, "after_stop", False):
                    continue
                start = time.perf_counter()
                view = step.propose(self)
                if view is not None and not self.tried(view.key):
                    self._try(step.name, view, start)
                    break
                self._charge(step.name, start)
            else:
                break
        if self.best is None:  # every step declined (all off): the given image 1
            self._try("upright", View(self.image1), time.perf_counter())

    def _try(self, name: str, view: View, start: float) -> None:
        before = time.perf_counter()
        raw, box = self.run(view.image)
        ran = time.perf_counter()
        self.model_ms += (ran - before) * 1e3
        candidate = Candidate(raw, box, view, self.score(raw, box))
        self.candidates.append(candidate)
        if self.best is None or candidate.score > self.best.score:
            self.best = candidate
        done = time.perf_counter()
        self.step_ms[name] = self.step_ms.get(name, 0.0) + (before - start) * 1e3 + (done - ran) * 1e3
        first = len(self.candidates) == 1
        self.longest_run_ms = max(self.longest_run_ms, (done - start) * 1e3 + (self.view_features_ms if first else 0.0))

    def _charge(self, name: str, start: float) -> None:
        self.step_ms[name] = self.step_ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3


def as_homography(transform: np.ndarray) -> np.ndarray:
    """A 2x3 affine or 3x3 homography as a float64 3x3 homography."""
    transform = np.asarray(transform, np.float64)
    return transform if transform.shape == (3, 3) else np.vstack([transform, [0.0, 0.0, 1.0]])


class MotionPrior:
    """Sequence mode: the previous pair's view of image 1, tried before the upright one.

    Consecutive frames move smoothly: when the previous pair was matched turned (by at least
    ``PREDICTED_ANGLE_MIN``) or scaled, the same transform (with its rewarp, if any), applied to
    the new image 1, is the likeliest view of this pair. Proposes only as the pair's first run,
    and only with a prior (``Matcher`` keeps it)."""

    name = "prior"

    def propose(self, pair: PairSearch) -> View | None:
        if pair.runs or pair.prior is None:
            return None
        width, height = pair.box0.original_size
        return View(warp_onto(pair.image1, pair.prior, (width, height)), pair.prior, rewarped=True, key=("prior",))


def prior_of(best: Candidate) -> np.ndarray | None:
    """What ``MotionPrior`` carries to the next pair of a sequence: the 3x3 transform of a view
    turned by at least ``PREDICTED_ANGLE_MIN`` or scaled (with its rewarp, if any), else None. A
    rewarp alone (a few degrees or percent) is not carried over: on a hand-held video it would
    keep the next pairs in a stale warp instead of the upright view they match best in."""
    if abs(best.view.angle) >= PREDICTED_ANGLE_MIN or best.view.scale != 1.0:
        return as_homography(best.view.to_image1)
    return None


class Upright:
    """Image 1 as given: the first run of every pair without a prior, else when the prior's view
    matched weakly."""

    name = "upright"

    def propose(self, pair: PairSearch) -> View | None:
        if pair.runs and pair.best_score >= WEAK_MATCH_SCORE:
            return None
        return View(pair.image1)


class PredictedRotation:
    """When the best view matches weakly: image 1 turned by the angle that its gradient
    orientations predict (at least ``PREDICTED_ANGLE_MIN`` degrees)."""

    name = "search"

    def propose(self, pair: PairSearch) -> View | None:
        if pair.best_score >= WEAK_MATCH_SCORE:
            return None
        angle = _predicted_angle(pair)
        if abs(angle) < PREDICTED_ANGLE_MIN:
            return None
        image, to_image1 = rotate_image(pair.image1, angle)
        return View(image, to_image1, angle, key=("turn", round(angle, 1), 1.0))


class RotationSearch:
    """When the best view still matches weakly: the fixed ``SEARCH_ANGLES`` (nearest the
    predicted angle first), then ``SEARCH_SCALES`` at the best view's angle; when no turn is
    predicted, the scales (upright) first."""

    name = "search"

    def propose(self, pair: PairSearch) -> View | None:
        if pair.best_score >= WEAK_MATCH_SCORE:
            return None
        predicted = _predicted_angle(pair)
        angles = sorted(SEARCH_ANGLES, key=lambda angle: abs((angle - predicted + 180.0) % 360.0 - 180.0))
        turns = [(angle, 1.0) for angle in angles]
        if abs(predicted) < PREDICTED_ANGLE_MIN:  # no turn predicted: a change of scale is likelier
            views = [(0.0, scale) for scale in SEARCH_SCALES] + turns
        else:
            views = turns + [(pair.best.view.angle, scale) for scale in SEARCH_SCALES]
        for angle, scale in views:
            key = ("turn", round(angle, 1), scale)
            if not pair.tried(key):
                image, to_image1 = rotate_image(pair.image1, angle, scale)
                return View(image, to_image1, angle, scale, key=key)
        return None


class Rewarp:
    """When the best view matches below ``REWARP_MATCH_SCORE``, or is a turned or scaled view
    (whose steps are coarse): image 1 warped onto image 0 by the homography the best view's matches agree on
    (``rewarp`` module). Each candidate is used for a fit once. A rewarp of the upright view
    ends the pair's runs when it scores less than ``REWARP_MIN_GAIN`` above that view."""

    name = "rewarp"

    def propose(self, pair: PairSearch) -> View | None:
        best = pair.best
        coarse_view = best is not None and best.view.to_image1 is not None and not best.view.rewarped
        if best is None or (best.score >= REWARP_MATCH_SCORE and not coarse_view):
            return None
        fitted_from = pair.notes.setdefault("rewarp_fitted", set())
        if id(best) in fitted_from:
            return None
        fitted_from.add(id(best))
        # Fitted in model-input pixels, as the model saw the pair: a difference of resolution
        # alone is no distortion.
        points0, points1 = pair.model_points(best)
        fitted = fit_homography(points0, points1, REWARP_RANSAC_CELLS * pair.stride)
        if fitted is None or distortion(fitted, pair.box0.resized_size) <= REWARP_DISTORTION:
            return None
        # In original pixels: image 0 -> model input 0 -> model input 1 -> best's view -> image 1.
        homography = np.linalg.inv(best.letterbox1.to_model_matrix()) @ fitted @ pair.box0.to_model_matrix()
        if best.view.to_image1 is not None:
            homography = as_homography(best.view.to_image1) @ homography
        warped = warp_onto(pair.image1, homography, pair.box0.original_size)
        stop_below = best.score * (1.0 + REWARP_MIN_GAIN) if best.view.key == ("upright",) else None
        return View(warped, homography, best.view.angle, best.view.scale, rewarped=True, key=("rewarp", len(pair.candidates)), stop_below=stop_below)


class Zoom:
    """When the rewarp of the upright view ended the pair's runs (it gained less than
    ``REWARP_MIN_GAIN``): image 1 shrunk about its centre by each of ``ZOOM_SCALES`` (enlarged
    when the upright matches say image 1 is the farther view, ``ZOOM_GROWTH_MIN``), their
    matches merged with the best view's. Runs after the stop (``after_stop``), and no other
    step runs after a zoom view."""

    name = "zoom"
    after_stop = True

    def propose(self, pair: PairSearch) -> View | None:
        if not any(c.view.key[0] == "rewarp" and c.ended_runs for c in pair.candidates):
            return None
        upright = next((c for c in pair.candidates if c.view.key == ("upright",)), None)
        if upright is None:
            return None
        if "zoom_out" not in pair.notes:
            pair.notes["zoom_out"] = _growth(pair, upright) >= ZOOM_GROWTH_MIN
        for factor in ZOOM_SCALES:
            scale = factor if pair.notes["zoom_out"] else 1.0 / factor
            key = ("zoom", scale)
            if not pair.tried(key):
                image, to_image1 = rotate_image(pair.image1, 0.0, scale)
                # stop_below infinite: after a zoom view only the zoom step proposes
                return View(image, to_image1, 0.0, scale, key=key, stop_below=math.inf, merge=True)
        return None


def _growth(pair: PairSearch, candidate: Candidate) -> float:
    """Median log of how much farther from the image centre the candidate's matches lie in
    image 1 than in image 0 (model-input pixels; 0 with fewer than 8 matches off the centre)."""
    points0, points1 = pair.model_points(candidate)
    distance0 = np.linalg.norm(points0 - _centre(pair.box0), axis=1)
    distance1 = np.linalg.norm(points1 - _centre(candidate.letterbox1), axis=1)
    off_centre = (distance0 > 2 * pair.stride) & (distance1 > 0)
    if off_centre.sum() < 8:
        return 0.0
    return float(np.median(np.log(distance1[off_centre] / distance0[off_centre])))


def _centre(box: Letterbox) -> np.ndarray:
    """The centre of the original image, in model-input pixels."""
    width, height = box.original_size
    return np.asarray(box.to_model(np.array([[(width - 1) / 2.0, (height - 1) / 2.0]])), np.float64)[0]


def _predicted_angle(pair: PairSearch) -> float:
    if "predicted_angle" not in pair.notes:
        pair.notes["predicted_angle"] = predict_rotation(pair.image0, pair.image1)
    return pair.notes["predicted_angle"]

"""One meaning for every matcher option, in the Python API, the CLI and the node.

- ``threshold``: minimum match confidence, a finite number in [0, 1]; ``None`` (API, CLI
  default) keeps the model's own threshold; 0 keeps every match the model returns.
- ``max_matches``: keep at most this many matches, the most confident; a whole number
  >= 0 where 0 means no cap (every match), and ``None`` means no cap too.
- ``max_model_runs``: the most model runs one pair may cost, a whole number >= 1.
- ``time_budget_ms``: the most milliseconds a pair's model runs may take, a finite number
  >= 0 where 0 means no limit, and ``None`` means no limit too.
- ``min_fine_score``: with a model whose graphs have the fine stage, the least fine score (a
  ZNCC) of a returned match, a finite number in [-1, 1] where -1 keeps every match, and
  ``None`` keeps every match too.

``check_threshold`` / ``check_max_matches`` raise ``OptionError`` (a ``ValueError``) with
one line; ``threshold_arg`` / ``max_matches_arg`` are the same checks as argparse types,
so a bad value on the command line ends with one line and exit status 2.

Output files (``check_output_file``, ``write_atomically``) live in ``coarse_loftr_ros.outputs``.
"""

from __future__ import annotations

import argparse
import math
import numbers
from pathlib import Path
from typing import Sequence

from ..errors import OptionError


def check_threshold(value: object, name: str = "threshold") -> float | None:
    """``value`` as a float in [0, 1], or None; OptionError for anything else (NaN, 1.5, "x")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(f"{name} must be a number in [0, 1] (a match confidence), got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise OptionError(f"{name} must be a number in [0, 1] (a match confidence), got {value!r}")
    return number


def check_max_matches(value: object, name: str = "max_matches") -> int | None:
    """``value`` as an int >= 0 (0 = no cap), or None (no cap); OptionError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(f"{name} must be a whole number >= 0 (0 = no cap), got {value!r}")
    number = int(value)
    if number < 0:
        raise OptionError(f"{name} must be a whole number >= 0 (0 = no cap), got {value!r}")
    return number


def check_max_model_runs(value: object, name: str = "max_model_runs") -> int:
    """``value`` as an int >= 1 (the most model runs one pair may cost); OptionError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise OptionError(f"{name} must be a whole number >= 1 (model runs per pair; 1: no search and no rewarp), got {value!r}")
    return int(value)


def check_time_budget(value: object, name: str = "time_budget_ms") -> float | None:
    """``value`` as a float > 0 (milliseconds), or None for no limit (None or 0); OptionError
    for anything else (a negative number, NaN, infinity, "x")."""
    if value is None:
        return None
    try:
        number = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise OptionError(f"{name} must be a finite number of milliseconds >= 0 (0 = no limit), got {value!r}")
    return number or None


def check_min_fine_score(value: object, name: str = "min_fine_score") -> float | None:
    """``value`` as a float in [-1, 1] (a ZNCC), or None (keep every match); OptionError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or not -1.0 <= float(value) <= 1.0:
        raise OptionError(f"{name} must be a number in [-1, 1] (a patch correlation; -1 keeps every match), got {value!r}")
    return float(value)


def _argparse_type(check, parse, name: str):
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = text  # let the check word the error
        try:
            return check(value, name)
        except OptionError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name} ")) from None

    convert.__name__ = name  # argparse names the type in its messages
    return convert


threshold_arg = _argparse_type(check_threshold, float, "threshold")
"""argparse ``type=`` for ``--threshold``."""
max_matches_arg = _argparse_type(check_max_matches, int, "max_matches")
"""argparse ``type=`` for ``--max-matches``."""
max_model_runs_arg = _argparse_type(check_max_model_runs, int, "max_model_runs")
"""argparse ``type=`` for ``--max-model-runs``."""
time_budget_arg = _argparse_type(check_time_budget, float, "time_budget_ms")
"""argparse ``type=`` for ``--time-budget-ms``."""
min_fine_score_arg = _argparse_type(check_min_fine_score, float, "min_fine_score")
"""argparse ``type=`` for ``--min-fine-score``."""


def positive_int_arg(text: str) -> int:
    """argparse ``type=`` for counts that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def non_negative_float_arg(text: str) -> float:
    """argparse ``type=`` for finite quantities >= 0 (pixels, seconds)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_float_arg(text: str) -> float:
    """argparse ``type=`` for finite quantities > 0 (a RANSAC threshold in pixels)."""
    value = non_negative_float_arg(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def input_size_arg(text: str) -> tuple[int, int] | str | None:
    """argparse ``type=`` for ``--input-size WxH|auto|model``: (width, height) in whole pixels,
    ``"auto"``, or None for ``model`` (the model's own size). Multiples of the model's stride and
    its limits are checked by the Matcher, which knows the model (``preprocess.check_input_size``)."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value == "model":
        return None
    parts = value.split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in pixels (e.g. 1008x304), auto or model, got {text!r}")
    return int(parts[0]), int(parts[1])


def add_matching_arguments(parser) -> None:
    """The Matcher's options on a command line: ``--threshold``, ``--max-matches``, ``--input-size``
    and its optional steps, ``--no-lk-refinement``, ``--min-fine-score``, ``--no-rotation-search``, ``--no-rewarp`` and ``--no-zoom``,
    and the budgets ``--max-model-runs`` and ``--time-budget-ms``."""
    parser.add_argument("--threshold", type=threshold_arg, default=None, metavar="T",
                        help="minimum match confidence in [0, 1] (default: the model's; 0 keeps every match)")
    parser.add_argument("--max-matches", type=max_matches_arg, default=None, metavar="N",
                        help="keep at most N matches per pair, the most confident (default and 0: all the model "
                             "returns, which is at most its top-k: 1024 for the shipped model)")
    parser.add_argument("--input-size", type=input_size_arg, default="auto", metavar="WxH|auto|model",
                        help="model input in pixels, multiples of the model's stride (16), e.g. 1008x304; auto (default): "
                             "640x480 for images near 4:3, else the same area at the image's aspect ratio (1226x370 -> "
                             "1008x304); model: the model's own size (640x480)")
    parser.add_argument("--no-lk-refinement", dest="lk_refinement", action="store_const", const=False, default="auto",
                        help="return the model's match positions: no Lucas-Kanade polish, no forward-backward check "
                             "(default: the polish unless the model places matches itself with the fine stage)")
    parser.add_argument("--lk-refinement", dest="lk_refinement", action="store_const", const=True,
                        help="the Lucas-Kanade polish also after a model with the fine stage")
    parser.add_argument("--min-fine-score", type=min_fine_score_arg, default=0.7, metavar="S",
                        help="with a model exported with --fine-stage: drop matches whose patch correlation is below S "
                             "in [-1, 1] unless fewer than 20 would remain (default 0.7; -1 keeps all); no effect otherwise")
    parser.add_argument("--no-rotation-search", dest="rotation_search", action="store_false",
                        help="match upright only: never try image 1 turned (+-30/+-60 deg) or scaled (0.6/1.6) on a weak pair")
    parser.add_argument("--no-rewarp", dest="rewarp", action="store_false",
                        help="match once: never match again with image 1 warped onto image 0 by the first match's homography")
    parser.add_argument("--no-zoom", dest="zoom", action="store_false",
                        help="never match image 1 shrunk about its centre when the rewarp of a weak pair gains nothing "
                             "(the views that follow a scene growing ahead of a forward-moving camera)")
    parser.add_argument("--max-model-runs", type=max_model_runs_arg, default=3, metavar="N",
                        help="the most model runs one pair may cost (default 3: the upright view and two of the "
                             "predicted rotation, the rewarp and the search; 1: upright only)")
    parser.add_argument("--time-budget-ms", type=time_budget_arg, default=None, metavar="MS",
                        help="the most milliseconds one pair's model runs may take: a further run starts only while "
                             "the pair's time so far plus its longest run stays within MS; the first run always "
                             "happens, the polish after the runs is not counted (default and 0: no limit)")

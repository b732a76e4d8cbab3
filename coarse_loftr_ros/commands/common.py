"""What several sub-commands share (``match``, ``eval`` and its ``--sequence`` mode): the ``Matcher`` of the
matching options that ``matching.options.add_matching_arguments`` adds to a parser."""

from __future__ import annotations

import argparse
from pathlib import Path


def make_matcher(args: argparse.Namespace, model: str | Path | None):
    """The ``Matcher`` of one ``--model`` value (None or "default": the shipped model) with the
    command's matching options."""
    from ..matching.matcher import Matcher

    return Matcher(
        model=None if model == "default" else model, backend=args.backend, threshold=args.threshold, max_matches=args.max_matches,
        lk_refinement=args.lk_refinement, min_fine_score=args.min_fine_score, rotation_search=args.rotation_search, rewarp=args.rewarp, zoom=args.zoom, max_model_runs=args.max_model_runs, time_budget_ms=args.time_budget_ms,
        input_size=args.input_size,
    )

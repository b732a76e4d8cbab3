#!/usr/bin/env python3
"""Accuracy and model runs per pair against the per-pair budget (``Matcher(max_model_runs=N)``).

    python scripts/budget_sweep.py --runs 1 3 8 --limit 40 --json runs/dev/budget.json

For each budget: homography AUC@5 per difficulty level of the development pairs (runs/dev, from
scripts/make_dev_benchmark.py), castle pose AUC@5/10/20, and the model runs per pair (mean, p95,
max) on each set, every row from one run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from coarse_loftr_ros import Matcher
from coarse_loftr_train import evaluation

LEVELS = ("easy", "medium", "hard")


def counting_method(matcher: Matcher, runs: list[int]) -> evaluation.Method:
    """``evaluation.matcher_method`` that also records each pair's model runs in ``runs``."""

    def match(image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = matcher.match(image0, image1)
        runs.append(result.model_runs)
        return result.keypoints0.astype(np.float64), result.keypoints1.astype(np.float64)

    return match


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--dev", type=Path, default=Path("runs/dev"))
    parser.add_argument("--poses", type=Path, default=Path("../shared/data/castle_p30_pose"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    levels = {level: evaluation.read_homography_pairs(args.dev / level)[: args.limit] for level in LEVELS}
    poses = evaluation.read_pose_pairs(args.poses)[: args.limit] if args.poses.is_dir() else []
    report = {}
    for budget in args.runs:
        row: dict = {}
        for name, pairs in [*levels.items(), ("castle", poses)]:
            runs: list[int] = []
            method = counting_method(Matcher(max_model_runs=budget), runs)
            scores = evaluation.evaluate_poses(method, pairs) if name == "castle" else evaluation.evaluate_homographies(method, pairs)
            row[name] = {**scores, "runs_mean": float(np.mean(runs)), "runs_p95": float(np.percentile(runs, 95)), "runs_max": int(max(runs))}
        report[str(budget)] = row
        print(budget, json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

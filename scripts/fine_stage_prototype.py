#!/usr/bin/env python3
"""Would a correlation fine stage inside the graph place matches as well as the Lucas-Kanade polish?

The graph's fine stage (``coarse_loftr_train.correlation.CorrelationRefinement``, the same torch
code) run where the polish runs (``Matcher(lk_refinement=...)`` takes any callable of the polish's
signature), on the images resized to the MODEL'S input scale, as the graph sees them, with no
alignment by a transform: so its accuracy can be compared with the polish's on the same pairs
before it goes into a graph. A match is dropped when its fine score is below ``min_score`` (as
the polish drops a failed track, keeping all when fewer than ``min_kept`` pass).

    python scripts/fine_stage_prototype.py [--limit N] [--patch 7 --search 2] [--only "stage, gradient"] [--no-sequence]

(The graphs themselves: ``coarse-loftr export --fine-stage`` and ``scripts/evaluate_dev.py
--no-polish``; this script is how the stage's settings were chosen, docs/log/2026-12-06.md.)

One run, the same pairs for every method: the shipped ``Matcher()`` with the polish, without
it, with this stage instead, and with this stage then the polish. Scores as
``scripts/evaluate_dev.py`` (homography AUC@3/5 and precision@3px by level, castle pose AUC,
the stereo pair within 1 / 3 px, the KITTI drive by stride).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate_dev  # noqa: E402

from coarse_loftr_ros import Matcher  # noqa: E402
from coarse_loftr_ros.matching.lk_refinement import LKRefinement  # noqa: E402
from coarse_loftr_train import evaluation  # noqa: E402
from coarse_loftr_train.correlation import CorrelationConfig, CorrelationRefinement  # noqa: E402


@dataclass
class CorrelationStage:
    """The graph's fine stage (``coarse_loftr_train.correlation``) in the polish's place, on the
    images resized to the model's input scale (see the module docstring)."""

    config: CorrelationConfig = CorrelationConfig()
    min_kept: int = 20
    calls: int = 0
    ms: float = 0.0

    def __post_init__(self) -> None:
        self.stage = CorrelationRefinement(self.config)

    def __call__(self, image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray, keypoints1: np.ndarray, scale: float = 1.0):
        start = time.perf_counter()
        count = len(keypoints0)
        if count == 0:
            return keypoints1.astype(np.float32), np.zeros(0, bool)
        s = min(1.0, scale)
        small = [cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else im for im in (image0, image1)]
        tensors = [torch.from_numpy(im.astype(np.float32) / 255.0)[None] for im in small]
        p0 = (keypoints0 + 0.5) * s - 0.5
        p1 = (keypoints1 + 0.5) * s - 0.5
        with torch.no_grad():
            q0, q1, score = self.stage(*tensors, torch.from_numpy(p0.astype(np.float32))[None], torch.from_numpy(p1.astype(np.float32))[None])
        q0, q1, score = q0[0].numpy(), q1[0].numpy(), score[0].numpy()
        q1 = q1 - (q0 - p0)  # back to the given image-0 points (locally a translation)
        refined = ((q1 + 0.5) / s - 0.5).astype(np.float32)
        good = score >= self.config.min_score
        keep = good if good.sum() >= self.min_kept else np.ones(count, bool)
        self.calls += 1
        self.ms += (time.perf_counter() - start) * 1e3
        return refined, keep


@dataclass
class Both:
    """The correlation stage, then the polish from its positions."""

    first: CorrelationStage
    second: LKRefinement

    def __call__(self, image0, image1, keypoints0, keypoints1, scale=1.0):
        moved, keep = self.first(image0, image1, keypoints0, keypoints1, scale)
        polished, keep2 = self.second(image0, image1, keypoints0[keep], moved[keep], scale)
        out = moved.copy()
        out[keep] = polished
        final = keep.copy()
        final[keep] = keep2
        return out, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--min-score", type=float, default=0.7)
    parser.add_argument("--patch", type=int, default=7)
    parser.add_argument("--search", type=int, default=2)
    parser.add_argument("--only", default=None, help="method names to run, separated by |")
    parser.add_argument("--no-sequence", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    def config(subpixel: str) -> CorrelationConfig:
        return CorrelationConfig(args.patch, args.search, args.min_score, subpixel)

    stage = CorrelationStage(config("gradient"))
    methods = {
        "polish (today)": Matcher(),
        "no polish": Matcher(lk_refinement=False),
        "stage, parabola": Matcher(lk_refinement=CorrelationStage(config("parabola"))),
        "stage, gradient": Matcher(lk_refinement=stage),
        "stage + polish": Matcher(lk_refinement=Both(CorrelationStage(config("gradient")), LKRefinement())),
    }
    if args.only:
        methods = {k: v for k, v in methods.items() if k in args.only.split("|")}

    def evaluate_methods() -> dict:
        namespace = argparse.Namespace(
            dev=Path("runs/dev"), limit=args.limit, poses=Path("../shared/data/castle_p30_pose"),
            sequence=Path("../shared/data/kitti_seq_dev") if not args.no_sequence else Path("/nonexistent"),
        )
        return evaluate_dev.evaluate(namespace, {name: evaluation.matcher_method(m) for name, m in methods.items()})

    results = evaluate_methods()
    print(evaluate_dev.markdown(results))
    print()
    print("| method | AUC@3 easy / medium / hard / all |")
    print("| --- | --- |")
    for name, entry in results.items():
        print(f"| {name} | " + " / ".join(f"{entry[level]['auc@3px']:.1f}" for level in ("easy", "medium", "hard", "all")) + " |")
    if strides := evaluate_dev.markdown_strides(results):
        print()
        print(strides)
    print(f"\nthe stage (gradient) in eager torch: {stage.calls} calls, {stage.ms / max(stage.calls, 1):.2f} ms a call (not the graph's cost)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

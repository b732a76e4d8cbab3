#!/usr/bin/env python3
"""The Lucas-Kanade polish's settings compared on the development set, every row in one run.

    python scripts/polish_sweep.py --limit 100          # runs/dev (scripts/make_dev_benchmark.py) and the castle views

For each setting of ``LKRefinement`` (window; histogram equalisation or the gain matched at the
matches; dropping the failed tracks or keeping them at the model's position), ``Matcher()``
otherwise at its defaults: AUC@5 and precision@3px per level, castle pose AUC@5/10/20, and the
matches kept on the README's example pair.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.imageio import read_image
from coarse_loftr_ros.matching.lk_refinement import LKRefinement
from coarse_loftr_train import evaluation

REPO = Path(__file__).resolve().parents[1]


class KeepFailed(LKRefinement):
    """The polish, but failed tracks stay at the model's position instead of being dropped."""

    def __call__(self, *args, **kwargs):
        refined, keep = super().__call__(*args, **kwargs)
        return refined, np.ones_like(keep)


SETTINGS = {
    "window 9, gain (default)": LKRefinement(),
    "window 13, gain": LKRefinement(window=13),
    "window 9, equalised": LKRefinement(normalize=False, equalize=True),
    "window 13, equalised (before 2026-12-02)": LKRefinement(window=13, normalize=False, equalize=True),
    "window 9, gain, failed tracks kept": KeepFailed(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=Path("runs/dev"))
    parser.add_argument("--poses", type=Path, default=Path("../shared/data/castle_p30_pose"))
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    levels = {level: evaluation.read_homography_pairs(args.dev / level)[: args.limit] for level in ("easy", "medium", "hard")}
    poses = evaluation.read_pose_pairs(args.poses)[: args.limit] if args.poses.is_dir() else []
    example = [read_image(REPO / "examples" / f"astronaut_{i}.jpg") for i in (0, 1)]
    print("| setting | AUC@5 easy / medium / hard | precision@3px easy / medium / hard | castle AUC@5/10/20 | example pair |")
    print("| --- | --- | --- | --- | ---: |")
    for name, polish in SETTINGS.items():
        matcher = Matcher(lk_refinement=polish)
        method = evaluation.matcher_method(matcher)
        rows = {level: evaluation.evaluate_homographies(method, pairs) for level, pairs in levels.items()}
        castle = evaluation.evaluate_poses(method, poses) if poses else {}
        auc = " / ".join(f"{rows[level]['auc@5px']:.1f}" for level in levels)
        precision = " / ".join(f"{rows[level]['precision@3px']:.1f}" for level in levels)
        pose = " / ".join(f"{castle[k]:.1f}" for k in ("auc@5deg", "auc@10deg", "auc@20deg")) if castle else "-"
        print(f"| {name} | {auc} | {precision} | {pose} | {len(matcher.match(*example))} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What the confidence means: precision and match count as functions of the threshold.

    python scripts/threshold_sweep.py [--model default] [--dev runs/dev] [--json runs/dev/thresholds.json]

Each pair of the development benchmark (every level, ``scripts/make_dev_benchmark.py``) is
matched once with no threshold; then, for each threshold, the matches at or above it give
precision@3px (share within 3 px of the true position, averaged over pairs with matches), the
mean match count per pair and homography AUC@5 px after RANSAC. The same for ORB-2000 (no
threshold) as the mark. On the consecutive Freiburg frames (``--frames``), the fundamental-matrix
RANSAC (3 px) inlier ratio and inlier count per pair. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from coarse_loftr_ros import Matcher
from coarse_loftr_train import evaluation

THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
LEVELS = ("easy", "medium", "hard")


def fundamental_inliers(k0: np.ndarray, k1: np.ndarray) -> tuple[float, int]:
    if len(k0) < 8:
        return 0.0, 0
    cv2.setRNGSeed(0)
    _, mask = cv2.findFundamentalMat(k0, k1, cv2.FM_RANSAC, 3.0, 0.999)
    inliers = int(mask.sum()) if mask is not None else 0
    return inliers / len(k0), inliers


def score(k0: np.ndarray, k1: np.ndarray, pair, size0: tuple[int, int], *rows: dict) -> None:
    error = evaluation.homography_corner_error(k0, k1, pair.homography, size0)
    precision = evaluation.homography_match_precision(k0, k1, pair.homography)
    for row in rows:
        row["errors"].append(error)
        row["precision"].append(precision)
        row["matches"].append(len(k0))


def sweep(args: argparse.Namespace) -> dict:
    matcher = Matcher(model=None if args.model == "default" else args.model)
    orb = evaluation.orb_method(2000)
    pairs = [(level, p) for level in LEVELS for p in evaluation.read_homography_pairs(args.dev / level)]
    rows = {(level, t): {"errors": [], "precision": [], "matches": []} for level in (*LEVELS, "all") for t in THRESHOLDS}
    orb_rows = {level: {"errors": [], "precision": [], "matches": []} for level in (*LEVELS, "all")}
    for level, pair in pairs:
        image0, image1 = cv2.imread(str(pair.image0)), cv2.imread(str(pair.image1))
        size0 = (image0.shape[1], image0.shape[0])
        result = matcher.match(image0, image1)
        for t in THRESHOLDS:
            keep = result.confidence >= t
            k0, k1 = result.keypoints0[keep].astype(np.float64), result.keypoints1[keep].astype(np.float64)
            score(k0, k1, pair, size0, rows[level, t], rows["all", t])
        score(*orb(image0, image1), pair, size0, orb_rows[level], orb_rows["all"])

    def summary(row: dict) -> dict:
        precision = [p for p in row["precision"] if np.isfinite(p)]
        return {
            "precision@3px": 100 * float(np.mean(precision)) if precision else 0.0,
            "matches": float(np.mean(row["matches"])),
            "auc@5px": 100 * evaluation.auc(row["errors"], [5])[0],
        }

    out = {
        "pairs": len(pairs),
        "model": args.model,
        "levels": {level: {str(t): summary(rows[level, t]) for t in THRESHOLDS} for level in (*LEVELS, "all")},
        "orb-2000": {level: summary(row) for level, row in orb_rows.items()},
    }
    frames = sorted(args.frames.glob("*.png")) if args.frames.is_dir() else []
    if frames:
        images = [cv2.imread(str(f)) for f in frames]
        results = [matcher.match(a, b) for a, b in zip(images, images[1:])]
        freiburg = {}
        for t in THRESHOLDS:
            stats = [fundamental_inliers(r.keypoints0[r.confidence >= t], r.keypoints1[r.confidence >= t]) for r in results]
            freiburg[str(t)] = {"inlier_ratio": float(np.mean([s[0] for s in stats])), "inliers": float(np.mean([s[1] for s in stats]))}
        stats = [fundamental_inliers(*(k.astype(np.float32) for k in orb(a, b))) for a, b in zip(images, images[1:])]
        freiburg["orb-2000"] = {"inlier_ratio": float(np.mean([s[0] for s in stats])), "inliers": float(np.mean([s[1] for s in stats]))}
        out["freiburg"] = freiburg
    return out


def markdown(out: dict) -> str:
    names = (*LEVELS, "all")
    head = "| threshold | " + " | ".join(f"precision {n} / matches" for n in names) + " | AUC@5 all | Freiburg F-inlier ratio / inliers |"
    lines = [head, "| ---: |" + " ---: |" * (len(names) + 2)]
    freiburg = out.get("freiburg", {})

    def cells(rows: dict) -> str:
        return " | ".join(f"{rows[n]['precision@3px']:.1f} / {rows[n]['matches']:.0f}" for n in names)

    for t in map(str, THRESHOLDS):
        rows = {n: out["levels"][n][t] for n in names}
        f = freiburg.get(t)
        lines.append(f"| {t} | {cells(rows)} | {rows['all']['auc@5px']:.1f} | " + (f"{f['inlier_ratio']:.2f} / {f['inliers']:.0f}" if f else "-") + " |")
    orb, f = out["orb-2000"], freiburg.get("orb-2000")
    lines.append(f"| ORB-2000 | {cells(orb)} | {orb['all']['auc@5px']:.1f} | " + (f"{f['inlier_ratio']:.2f} / {f['inliers']:.0f}" if f else "-") + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--dev", type=Path, default=Path("runs/dev"))
    parser.add_argument("--frames", type=Path, default=Path("../shared/data/freiburg_sequence"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = sweep(args)
    print(f"{out['pairs']} development pairs, model {args.model}")
    print(markdown(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cost against accuracy of the model input size on a video sequence with ground-truth poses.

For each ``--sizes`` entry (``WxH`` or ``auto``) a ``Matcher(input_size=...)`` with every other
option at its default matches every pair of ``pairs.txt`` and is scored with the pose-error
protocol of ``coarse-loftr eval --poses`` (``coarse_loftr_train.evaluation.relative_pose_error``
and ``auc``: essential matrix by RANSAC at 0.5 px, max of the rotation and translation-direction
errors, AUC@5/10/20 deg), per stride; plus the matches per pair and the median wall time per
``Matcher.match`` call (reading the files not included).

Data layout (``../shared/data/kitti_seq_dev``): ``pairs.txt`` (``img0 img1 stride``),
``poses.txt`` (TUM ``t tx ty tz qx qy qz qw``, camera-to-world, one line per frame in order)
and ``cameras.json`` (``fx fy cx cy``). The relative ground truth of a pair (k, k+s) is
``T_0to1 = inv(T_w_c[k+s]) @ T_w_c[k]`` (a point in camera k -> camera k+s).

    python scripts/input_size_sweep.py --sizes 640x480,auto,1216x368 --json runs/input_size_sweep.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coarse_loftr_ros import Matcher  # noqa: E402
from coarse_loftr_ros.matching.options import input_size_arg  # noqa: E402
from coarse_loftr_train.evaluation import POSE_THRESHOLDS, auc, relative_pose_error  # noqa: E402


def quaternion_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """3x3 rotation of a unit quaternion (Hamilton, x y z w as in TUM files)."""
    q = np.array([qw, qx, qy, qz], np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def read_poses(path: Path) -> list[np.ndarray]:
    """Camera-to-world 4x4 poses of a TUM file, in file order."""
    poses = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _, tx, ty, tz, qx, qy, qz, qw = (float(v) for v in line.split())
        pose = np.eye(4)
        pose[:3, :3] = quaternion_matrix(qx, qy, qz, qw)
        pose[:3, 3] = (tx, ty, tz)
        poses.append(pose)
    return poses


def read_pairs(data: Path, limit: int | None) -> list[tuple[Path, Path, int, np.ndarray]]:
    """(image0, image1, stride, T_0to1) of ``pairs.txt``, at most ``limit`` per stride."""
    poses = read_poses(data / "poses.txt")
    pairs, per_stride = [], defaultdict(int)
    for line in (data / "pairs.txt").read_text().split("\n"):
        if not line.strip():
            continue
        name0, name1, stride = line.split()
        stride = int(stride)
        if limit is not None and per_stride[stride] >= limit:
            continue
        per_stride[stride] += 1
        k0, k1 = int(Path(name0).stem), int(Path(name1).stem)
        pairs.append((data / name0, data / name1, stride, np.linalg.inv(poses[k1]) @ poses[k0]))
    return pairs


def sweep(data: Path, sizes: list, limit: int | None) -> dict:
    camera = json.loads((data / "cameras.json").read_text())
    K = np.array([[camera["fx"], 0, camera["cx"]], [0, camera["fy"], camera["cy"]], [0, 0, 1.0]])
    pairs = read_pairs(data, limit)
    images = {path: cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for pair in pairs for path in pair[:2]}
    results = {}
    for size in sizes:
        matcher = Matcher(input_size=size)
        errors, counts, times = defaultdict(list), defaultdict(list), []
        for path0, path1, stride, T_0to1 in pairs:
            start = time.perf_counter()
            result = matcher.match(images[path0], images[path1])
            times.append((time.perf_counter() - start) * 1e3)
            errors[stride].append(relative_pose_error(result.keypoints0, result.keypoints1, K, K, T_0to1))
            counts[stride].append(len(result))
        label = size if isinstance(size, str) else f"{size[0]}x{size[1]}"
        results[label] = {
            "input_size": list(matcher.input_size),
            "median_ms": statistics.median(times),
            "strides": {
                str(stride): {
                    **{f"auc@{t}deg": 100 * a for t, a in zip(POSE_THRESHOLDS, auc(errors[stride], POSE_THRESHOLDS))},
                    "matches": float(np.mean(counts[stride])),
                    "pairs": len(errors[stride]),
                }
                for stride in sorted(errors)
            },
        }
        print(f"{label} ({matcher.input_size[0]}x{matcher.input_size[1]}): median {results[label]['median_ms']:.1f} ms per pair", flush=True)
    return results


def model_timing(data: Path, sizes: list, runs: int) -> dict[str, float]:
    """Median ms of one pair-graph run (``backend.run``, the model alone, no steps after it) per
    size, on the first pair of ``pairs.txt``, after one warm-up run."""
    path0, path1, _, _ = read_pairs(data, 1)[0]
    images = [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in (path0, path1)]
    out = {}
    for size in sizes:
        matcher = Matcher(input_size=size)
        tensors = [matcher.prepare(image)[0] for image in images]
        matcher.backend.run(*tensors)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            matcher.backend.run(*tensors)
            times.append((time.perf_counter() - start) * 1e3)
        label = size if isinstance(size, str) else f"{size[0]}x{size[1]}"
        out[label] = statistics.median(times)
        print(f"{label} ({matcher.input_size[0]}x{matcher.input_size[1]}): model alone {out[label]:.1f} ms per run", flush=True)
    return out


def format_table(results: dict) -> str:
    strides = sorted({int(s) for r in results.values() for s in r["strides"]})
    head = "| input size | " + " | ".join(f"stride {s} AUC@5/10/20" for s in strides) + " | matches (stride 1) | median ms per pair |"
    lines = [head, "| --- |" + " --- |" * len(strides) + " ---: | ---: |"]
    for label, r in results.items():
        cells = [" / ".join(f"{r['strides'][str(s)][f'auc@{t}deg']:.1f}" for t in POSE_THRESHOLDS) for s in strides]
        size = f"{label} ({r['input_size'][0]}x{r['input_size'][1]})" if label == "auto" else label
        lines.append(f"| {size} | " + " | ".join(cells) + f" | {r['strides'][str(strides[0])]['matches']:.0f} | {r['median_ms']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitti_seq_dev", help="sequence folder")
    parser.add_argument("--sizes", default="640x480,auto,1216x368", help="comma-separated WxH or auto (default %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="at most N pairs per stride")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--model-timing", type=int, default=0, metavar="N",
                        help="instead: the median of N runs of the model alone per size, on the first pair")
    args = parser.parse_args(argv)
    sizes = [input_size_arg(text) for text in args.sizes.split(",")]
    if args.model_timing:
        model_timing(args.data, sizes, args.model_timing)
        return 0
    start = time.perf_counter()
    results = sweep(args.data, sizes, args.limit)
    print(format_table(results))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

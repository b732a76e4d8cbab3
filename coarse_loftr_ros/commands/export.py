"""``coarse-loftr export``: checkpoint -> ONNX with in-graph match extraction."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..matching.options import positive_int_arg, threshold_arg


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX with match extraction in the graph (needs torch)",
        description="Export a coarse LoFTR checkpoint to ONNX (opset 17, dynamic height and width, top-K matches out).",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt/.ckpt)")
    parser.add_argument("--output", type=Path, required=True, metavar="MODEL.onnx", help="ONNX file to write (its folder must exist)")
    parser.add_argument("--config", choices=["student", "teacher"], default=None, help="model config (default: stored in the checkpoint, else student)")
    parser.add_argument("--width", type=positive_int_arg, default=640,
                        help="model input width in pixels: the runtime's default size of a dynamic graph, the only one of a --static one (default 640)")
    parser.add_argument("--height", type=positive_int_arg, default=480, help="model input height in pixels (default 480)")
    parser.add_argument("--static", action="store_true",
                        help="fixed --width x --height inputs instead of dynamic height and width (e.g. for a runtime without dynamic shapes)")
    parser.add_argument("--top-k", type=positive_int_arg, default=1024, help="number of match rows the graph outputs (default 1024)")
    parser.add_argument("--threshold", type=threshold_arg, default=0.0, metavar="T", help="minimum confidence in [0, 1] inside the graph (default 0)")
    parser.add_argument("--border", type=_non_negative_int, default=0, help="coarse cells removed at each border (default 0, chosen on the development set: see docs/training.md)")
    parser.add_argument(
        "--refinement",
        choices=["auto", "learned", "learned-oneway", "expectation", "none"],
        default="auto",
        help="sub-cell refinement in the graph (default auto: the model's learned one both ways, else the 3x3 expectation)",
    )
    parser.add_argument(
        "--fine-stage", action="store_true",
        help="also place each match by correlating 7x7 image patches inside the graphs (within 2 px; outputs fine_score: docs/model.md)",
    )
    parser.add_argument(
        "--fine-stage-scales", type=_scales, default=(1.0,), metavar="S[,S...]",
        help="with --fine-stage: also search image 1 read at these spacings, e.g. 1,1.25 to follow a scene that grows "
             "by about 1.25x (forward motion), at about the stage's cost again per spacing (default 1)",
    )
    parser.add_argument(
        "--fine-stage-rows", type=_non_negative_int, default=0, metavar="N",
        help="with --fine-stage: place only the N most confident matches, the others keep their positions and score -1 (default 0: all)",
    )
    parser.add_argument(
        "--score-frames", type=Path, nargs="+", default=None, metavar="DIR",
        help="folders of consecutive video frames (not your evaluation data): measure how this model's pair scores compare "
             "with the shipped model's on them and write the ratio into the graphs, so that the matcher's steps trigger "
             "as they do for the shipped model (docs/training.md; about a minute for the eleven training clips)",
    )
    parser.set_defaults(run=run)


def _scales(text: str) -> tuple[float, ...]:
    """argparse ``type=`` for ``--fine-stage-scales``: comma-separated spacings in [0.5, 2]."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        scales = ()
    if not scales or not all(0.5 <= scale <= 2.0 for scale in scales):
        raise argparse.ArgumentTypeError(f"must be spacings between 0.5 and 2 separated by commas (e.g. 1,1.25), got {text!r}")
    return scales


def run(args: argparse.Namespace) -> int:
    from ..errors import BackendUnavailableError, ModelError
    from ..outputs import check_output_file, make_parent

    check_output_file(args.output, "--output", (".onnx",))
    if args.score_frames:
        from ..tools.calibration import video_frames

        video_frames(args.score_frames)  # a bad folder fails before the export, not after

    try:
        from coarse_loftr_train.checkpoint import load_model, stored_match_score_scale
        from coarse_loftr_train.correlation import CorrelationConfig
        from coarse_loftr_train.export import ExtractionConfig, export_onnx, set_metadata
    except ImportError as error:
        raise BackendUnavailableError.from_import("export", error, "`pip install torch==2.13.0 onnx`") from None
    model = load_model(args.checkpoint, args.config)
    try:
        model.config = model.config.with_input_size(args.width, args.height)
    except ValueError as error:
        raise ModelError(f"{error}; pick --width/--height divisible by it") from None
    extraction = ExtractionConfig(top_k=args.top_k, threshold=args.threshold, border=args.border)
    try:
        fine_stage = CorrelationConfig(scales=args.fine_stage_scales, rows=args.fine_stage_rows) if args.fine_stage else None
        path = export_onnx(model, make_parent(args.output), extraction, args.refinement, dynamic=not args.static, fine_stage=fine_stage)
    except ValueError as error:  # e.g. --refinement learned for a model without one
        raise ModelError(str(error)) from None
    kind = "fixed" if args.static else "dynamic height and width, default"
    print(f"wrote {path} ({model.config.name}, {kind} {model.config.input_width}x{model.config.input_height} input)")
    if args.score_frames:
        from ..tools.calibration import score_scale

        scale, pairs = score_scale(path, args.score_frames)
        set_metadata(path, {"match_score_scale": f"{scale:.4f}"})
        print(f"match scores: {scale:.3f}x the shipped model's (median over {pairs} consecutive pairs), written to the graphs")
    elif (stored := stored_match_score_scale(args.checkpoint)) is not None:
        set_metadata(path, {"match_score_scale": repr(stored)})
        print(f"match scores: {stored:.3f}x the shipped model's (stored in the checkpoint), written to the graphs")
    else:
        print("match scores not calibrated (--score-frames): the matcher's steps assume this model scores pairs as the shipped one does")
    return 0

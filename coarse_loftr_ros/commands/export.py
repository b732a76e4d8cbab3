"""``coarse-loftr export``: checkpoint -> ONNX with in-graph match extraction."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX with match extraction in the graph (needs torch)",
        description="Export a coarse LoFTR checkpoint to ONNX (opset 17, static shapes, top-K matches out).",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt/.ckpt)")
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--config", choices=["student", "teacher"], default=None, help="model config (default: stored in the checkpoint, else student)")
    parser.add_argument("--width", type=int, default=None, help="model input width in pixels (default: the config's, 640)")
    parser.add_argument("--height", type=int, default=None, help="model input height in pixels (default: the config's, 480)")
    parser.add_argument("--top-k", type=int, default=1024, help="number of match rows the graph outputs (default 1024)")
    parser.add_argument("--threshold", type=float, default=0.0, help="minimum confidence inside the graph (default 0)")
    parser.add_argument("--border", type=int, default=0, help="coarse cells removed at each border (default 0, chosen by measurement: see README)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import BackendUnavailableError, ModelError

    try:
        from coarse_loftr_train.checkpoint import load_model
        from coarse_loftr_train.export import ExtractionConfig, export_onnx
    except ImportError as error:
        raise BackendUnavailableError(f"export needs {error.name}; install it with `pip install torch==2.13.0 onnx`") from None
    model = load_model(args.checkpoint, args.config)
    if args.width or args.height:
        width = args.width or model.config.input_width
        height = args.height or model.config.input_height
        try:
            model.config = model.config.with_input_size(width, height)
        except ValueError as error:
            raise ModelError(f"{error}; pick --width/--height divisible by it") from None
    extraction = ExtractionConfig(top_k=args.top_k, threshold=args.threshold, border=args.border)
    path = export_onnx(model, args.output, extraction)
    print(f"wrote {path} ({model.config.name}, {model.config.input_width}x{model.config.input_height} input)")
    return 0

"""``coarse-loftr build-engine``: ONNX model -> TensorRT engine for this GPU."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    """argparse ``type=`` for WxH sizes in pixels."""
    from ..matching.options import input_size_arg

    value = input_size_arg(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("must be WIDTHxHEIGHT in pixels (e.g. 1216x384), not auto")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-engine",
        help="build a TensorRT engine from an exported ONNX model (needs TensorRT and an NVIDIA GPU)",
        description=(
            "Build a TensorRT engine (TensorRT 8.5 to 10) from an ONNX model on the GPU that will run it. "
            "Writes MODEL.engine and MODEL.engine.json (what it was built from and for)."
        ),
    )
    parser.add_argument("--onnx", type=Path, required=True, metavar="MODEL.onnx", help="model from `coarse-loftr export`")
    parser.add_argument("--output", type=Path, required=True, metavar="MODEL.engine", help="engine file to write")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels (faster; default FP32)")
    parser.add_argument("--int8", action="store_true", help="allow INT8 kernels, calibrated on --calibration-images (FP16 fallback)")
    parser.add_argument("--calibration-images", type=Path, default=None, metavar="DIR", help="folder of images for INT8 calibration")
    parser.add_argument(
        "--calibration-cache", type=Path, default=None, metavar="FILE",
        help="INT8 calibration cache, reused when it exists (default: OUTPUT.calib)",
    )
    parser.add_argument("--max-calibration-images", type=_positive_int, default=500, metavar="N", help="calibrate on at most N images (default 500)")
    parser.add_argument("--workspace-mb", type=_positive_int, default=1024, metavar="N", help="builder memory limit in MiB (default 1024)")
    parser.add_argument("--width", type=_positive_int, default=None, help="input width for a model with dynamic input size")
    parser.add_argument("--height", type=_positive_int, default=None, help="input height for a model with dynamic input size")
    parser.add_argument("--min-size", type=_size, default=None, metavar="WxH",
                        help="with --max-size: an optimisation profile from WxH to --max-size (a dynamic-size model), "
                             "tuned for --width x --height; without: the engine takes --width x --height only")
    parser.add_argument("--max-size", type=_size, default=None, metavar="WxH", help="the profile's largest input (see --min-size)")
    parser.add_argument(
        "--pair-only", action="store_true",
        help="do not build the sequence-mode graphs (MODEL.features.onnx, MODEL.matching.onnx) even when they lie beside the model",
    )
    parser.add_argument("--verbose", action="store_true", help="print TensorRT's builder log")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from ..backends.tensorrt_engine import BuildOptions
    from ..backends.tensorrt_plan import list_images, load_onnx_graph
    from ..errors import BackendUnavailableError, CoarseLoftrError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    if args.calibration_images is not None and not args.int8:
        raise CoarseLoftrError("--calibration-images is only used with --int8")
    calibration_cache = args.calibration_cache or Path(str(args.output) + ".calib")
    if args.int8:
        if args.calibration_images is not None:
            list_images(args.calibration_images)  # the folder exists and holds images
        elif not calibration_cache.is_file():
            raise CoarseLoftrError("--int8 needs --calibration-images DIR (images like the ones the camera sees)")
    if (args.width is None) != (args.height is None):
        raise CoarseLoftrError("give both --width and --height, or neither")
    if (args.min_size is None) != (args.max_size is None):
        raise CoarseLoftrError("give both --min-size and --max-size, or neither")
    if args.min_size is not None and args.width is None:
        raise CoarseLoftrError("a --min-size/--max-size profile needs --width and --height: the size it is tuned for")
    from ..outputs import check_output_file, make_parent

    check_output_file(args.output, "--output", (".engine", ".plan"))  # the suffixes Matcher(model=...) loads
    if args.output.resolve() == args.onnx.resolve():
        raise CoarseLoftrError("--output would overwrite the ONNX model; pass another file name")
    load_onnx_graph(args.onnx)  # a missing or unreadable model is reported before TensorRT is needed
    options = BuildOptions(
        precision=precision,
        workspace_mb=args.workspace_mb,
        input_size=(args.width, args.height) if args.width else None,
        size_range=(args.min_size, args.max_size) if args.min_size else None,
        calibration_images=str(args.calibration_images) if args.calibration_images else None,
        calibration_cache=str(calibration_cache),
        max_calibration_images=args.max_calibration_images,
    )

    from ..backends.tensorrt_backend import tensorrt_available

    available, reason = tensorrt_available()
    if not available:
        raise BackendUnavailableError(f"cannot build a TensorRT engine: {reason}")

    from ..backends.tensorrt_engine import build_engine_file
    from ..backends.tensorrt_plan import sequence_graph_files

    description = build_engine_file(args.onnx, make_parent(args.output), options, verbose=args.verbose)
    size = "x".join(str(v) for v in description["input_size"] or ()) or "no image"
    if description.get("input_size_range"):
        (min_w, min_h), (max_w, max_h) = description["input_size_range"]
        size += f" (profile {min_w}x{min_h} .. {max_w}x{max_h})"
    print(
        f"wrote {args.output} ({precision}, {size} input, TensorRT {description['tensorrt_version']}, "
        f"{description['gpu_name']})"
    )
    sources = sequence_graph_files(args.onnx)
    if not args.pair_only and all(path.is_file() for path in sources):
        # INT8 calibration covers the pair graph; the sequence graphs are built in fp16.
        sequence_precision = "fp16" if precision == "int8" else precision
        sequence_options = dataclasses.replace(
            options, precision=sequence_precision, input_size=tuple(description["input_size"]), calibration_images=None
        )
        for source, target in zip(sources, sequence_graph_files(args.output)):
            build_engine_file(source, target, sequence_options, verbose=args.verbose)
            print(f"wrote {target} ({sequence_precision}, sequence-mode graph from {source.name})")
    return 0

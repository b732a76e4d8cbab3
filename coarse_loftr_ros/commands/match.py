"""``coarse-loftr match IMAGE0 IMAGE1``: match two image files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..matching.options import add_matching_arguments, max_matches_arg
from .common import make_matcher
from ..outputs import IMAGE_OUTPUT_SUFFIXES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "match",
        help="match two image files; print a summary, write JSON and an overlay picture",
        description="Match two image files with the shipped model (ONNX Runtime, CPU) or another one.",
    )
    parser.add_argument("image0", type=Path, help="first image file")
    parser.add_argument("image1", type=Path, help="second image file")
    parser.add_argument("--model", type=Path, default=None, help="model file (.onnx, .pt/.ckpt, .engine); default: the shipped model")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt", "torch"], help="runtime (default: auto: TensorRT for .onnx when TensorRT and a GPU are present, else by file type)")
    add_matching_arguments(parser)
    parser.add_argument("--max-image-pixels", type=max_matches_arg, default=50_000_000, metavar="N",  # imageio.DEFAULT_MAX_PIXELS
                        help="refuse images larger than N pixels (width x height) from the header, before decoding (default: %(default)s; 0: no limit)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the matches as JSON")
    parser.add_argument("--overlay", type=Path, default=None, metavar="OUT.png",
                        help="write a side-by-side picture: the most confident matches, green if geometrically consistent, red if not")
    parser.add_argument("--overlay-lines", type=max_matches_arg, default=None, metavar="N",
                        help="draw the N most confident matches in the overlay (default 200; 0: all)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import OutputPathError
    from ..imageio import read_image
    from ..outputs import check_output_file, write_atomically, write_image_atomically
    from ..matching.overlay import DEFAULT_MAX_LINES, draw_matches

    # Output paths are checked before any work, and written whole or not at all.
    check_output_file(args.json, "--json")
    check_output_file(args.overlay, "--overlay", IMAGE_OUTPUT_SUFFIXES)
    if args.json is not None and args.overlay is not None and args.json.resolve() == args.overlay.resolve():
        raise OutputPathError("--json and --overlay name the same file; pass two file names")
    image0, image1 = read_image(args.image0, args.max_image_pixels), read_image(args.image1, args.max_image_pixels)
    matcher = make_matcher(args, args.model)
    result = matcher.match(image0, image1)
    if args.overlay:
        lines = DEFAULT_MAX_LINES if args.overlay_lines is None else args.overlay_lines  # 0: all
        write_image_atomically(args.overlay, draw_matches(image0, image1, result, max_lines=lines))
    if args.json:
        write_atomically(args.json, (json.dumps(result.to_dict()) + "\n").encode("utf-8"))
    print(
        f"{len(result)} matches between {args.image0.name} ({result.image0_size[0]}x{result.image0_size[1]}) and "
        f"{args.image1.name} ({result.image1_size[0]}x{result.image1_size[1]}) | {result.backend} | "
        f"{result.timing_ms['total']:.1f} ms"
    )
    return 0

"""``coarse-loftr match IMAGE0 IMAGE1``: match two image files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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
    parser.add_argument("--threshold", type=float, default=None, help="minimum match confidence (default: the model's)")
    parser.add_argument("--max-matches", type=int, default=None, help="keep at most N matches")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the matches as JSON")
    parser.add_argument("--overlay", type=Path, default=None, metavar="OUT.png", help="write a side-by-side picture of the matches")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..errors import ImageError
    from ..imageio import read_image
    from ..matcher import Matcher
    from ..overlay import draw_matches

    image0, image1 = read_image(args.image0), read_image(args.image1)
    matcher = Matcher(model=args.model, backend=args.backend, threshold=args.threshold, max_matches=args.max_matches)
    result = matcher.match(image0, image1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict()) + "\n")
    if args.overlay:
        args.overlay.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.overlay), draw_matches(image0, image1, result)):
            raise ImageError(f"cannot write overlay {args.overlay}; use a .png or .jpg name in a writable folder")
    print(
        f"{len(result)} matches between {args.image0.name} ({result.image0_size[0]}x{result.image0_size[1]}) and "
        f"{args.image1.name} ({result.image1_size[0]}x{result.image1_size[1]}) | {result.backend} | "
        f"{result.timing_ms['total']:.1f} ms"
    )
    return 0

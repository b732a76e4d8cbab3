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

  # a rosbag2 (.db3 or .mcap, or its folder): its image topics at the recorded pace,
  # with their recorded headers; IN=OUT renames a topic
  python scripts/publish_images.py my_bag/ --bag-topic /cam0/image_raw=/image0 --bag-topic /cam1/image_raw=/image1

Videos and folders get header stamps from the clock at publish time (frame_id from
``--frame-id``), as a driver would; ``--compressed`` publishes sensor_msgs/CompressedImage
(JPEG) on ``<topic>/compressed`` instead. QoS: best effort, depth 1 (sensor data), or
``--reliable``. Prints one summary line at the end; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

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

    def __init__(self, reliable: bool) -> None:
        import rclpy
        import rclpy.duration
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        rclpy.init()
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
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self._publishers.values()):
                time.sleep(1.0)  # the subscriber may not have matched this publisher yet
                return
            time.sleep(0.05)
        missing = [t for t, p in self._publishers.items() if p.get_subscription_count() == 0]
        print(f"publish_images: no subscriber yet on {', '.join(missing)}; publishing anyway", file=sys.stderr)

    def close(self) -> None:
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


def publish_frames(args: argparse.Namespace, ros: Publisher) -> tuple[int, float]:
    from sensor_msgs.msg import CompressedImage, Image

    message_type = CompressedImage if args.compressed else Image
    suffix = "/compressed" if args.compressed else ""
    outputs = [(args.source, ros.publisher(message_type, args.topic + suffix), args.frame_id)]
    if args.right is not None:
        outputs.append((args.right, ros.publisher(message_type, args.right_topic + suffix), args.right_frame_id))
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
        if args.count and count >= args.count:
            break
        stamp = ros.node.get_clock().now().to_msg()  # one stamp for both cameras of a pair
        for image, (_, publisher, frame_id) in zip(frames, outputs):
            publisher.publish(image_message(image, stamp, frame_id, args.compressed))
        count += 1
        delay = start + count / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
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
                if delay > 0:
                    time.sleep(delay)
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
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"{args.source} does not exist")
    if args.right is not None and not args.right.exists():
        parser.error(f"{args.right} does not exist")
    if args.rate < 0 or args.count < 0:
        parser.error("--rate and --count must be >= 0")
    if is_bag(args.source) and (args.right or args.compressed or args.mono):
        parser.error("--right, --compressed and --mono apply to videos and folders; a bag is played as recorded")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        import rclpy  # noqa: F401
        from sensor_msgs.msg import Image  # noqa: F401
    except ImportError as error:
        fail(f"needs ROS 2 (cannot import {error.name}): source .ros2/setup.bash (scripts/setup_ros2_venv.sh) "
             "or /opt/ros/<distro>/setup.bash")
    ros = Publisher(args.reliable)
    count, elapsed = 0, 0.0
    try:
        count, elapsed = publish_bag(args, ros) if is_bag(args.source) else publish_frames(args, ros)
    except KeyboardInterrupt:
        pass
    finally:
        ros.close()
    what = "messages" if is_bag(args.source) else ("pairs" if args.right else "frames")
    print(f"published {count} {what} in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

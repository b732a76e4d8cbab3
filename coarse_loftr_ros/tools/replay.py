"""Replay recordings through the matcher without ROS: rosbag2, video or images in, rosbag2 out.

Public API:

- ``ReplayConfig``: what to read, how to pair images, what to write. Pairing defaults
  are the matcher node's parameters (``node_params.PARAMETERS``).
- ``replay(config, matcher=None, on_pair=None, progress=None) -> ReplaySummary``: read
  the source in recording order, match pairs with the node's policies
  (``MessageMatcher`` + ``StereoPairer``), write ``coarse_loftr_ros/msg/MatchArray`` (and
  optionally overlay pictures) to a new rosbag2, and optionally a report
  (``report.py``).
- ``open_source(config)``: the source alone (``BagSource``, ``VideoSource`` or
  ``FolderSource``), an iterator of ``SourceMessage``.
- ``OutputBag``: the rosbag2 writer (MCAP or SQLite3) that always leaves a valid bag.
- ``BagError``: a recording that cannot be read (missing topic, wrong type, truncated
  or corrupt file), a one-line message.

Sources: a rosbag2 directory, a single ``.mcap`` / ``.db3`` file (through the
``rosbags`` library: MCAP and SQLite3, zstd file / message / chunk compression), a video
file or a folder of images (sequence mode; ``folder_stamps`` says how file names become
stamps). Bags are streamed message by message: memory does not depend on the bag's length
(rosbags decompresses a file-compressed bag into a temporary file first), and no image above
``ReplayConfig.max_image_pixels`` is decoded. A frame that cannot be used is skipped and
counted by reason (``ReplaySummary.skipped``); the sequence goes on from the last good frame.

Output stamps follow the node: ``header`` is image 1's header, ``header0``/``header1`` the
source headers as recorded. The bag's log time of each output message is the log time of
the input message that completed its pair, so the matches line up with their images when
both bags are opened together (the node would publish one latency later).
"""

from __future__ import annotations

import numbers
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from ..errors import CoarseLoftrError, ImageError
from ..imageio import DEFAULT_MAX_PIXELS, ImageTooLargeError, check_pixels
from ..matching.options import check_max_matches, check_threshold
from ..matching.overlay import draw_matches
from ..preprocess import ImageSizeError, to_8bit
from ..ros.image_conversion import SUPPORTED_ENCODINGS, numpy_to_image_fields
from ..ros.match_array import MATCH_ARRAY_TYPENAME, match_array_typestore, rosbags_match_array
from ..ros.message_matching import MatchedPair, MessageMatcher
from ..ros.node_params import PARAMETERS
from ..ros.pairing import Frame, StereoPairer, stamp_to_ns

NODE_DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
BAG_SUFFIXES = (".mcap", ".db3")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm")
STORAGES = ("mcap", "sqlite3")
# rosbag2 metadata version of the output: 8 (Iron/Jazzy layout); rosbags writes 8 or 9.
OUTPUT_BAG_VERSION = 8


class BagError(CoarseLoftrError, RuntimeError):
    """A recording that cannot be read, or an output bag that cannot be written."""


def _rosbags() -> Any:
    try:
        import rosbags.highlevel  # noqa: F401
        import rosbags.rosbag2  # noqa: F401
        import rosbags.typesys  # noqa: F401
    except ImportError as error:
        raise CoarseLoftrError("replay needs the rosbags library: pip install rosbags (or coarse_loftr_ros[replay])") from error
    import rosbags

    return rosbags


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].rstrip(".")


# --------------------------------------------------------------------------- config


@dataclass
class ReplayConfig:
    """Options of ``replay``; times in seconds, sizes in pixels.

    Give ``image_topic`` (sequence mode) or ``image0_topic`` and ``image1_topic``
    (stereo mode) for a bag; a video or a folder of images is always sequence mode.
    ``camera_info*_topic`` None means the image topic's sibling ``camera_info`` when the
    bag has one (image_transport's convention); ``use_camera_info=False`` ignores them.
    """

    source: Path
    output: Path
    image_topic: str | None = None
    image0_topic: str | None = None
    image1_topic: str | None = None
    storage: str = "mcap"
    matches_topic: str = "/matches"
    overlay: bool = False
    overlay_topic: str = "/matches/overlay/compressed"
    overlay_max_lines: int = NODE_DEFAULTS["overlay_max_lines"]
    # Pairing: the node's parameters and defaults.
    sync: str = NODE_DEFAULTS["sync"]
    slop_s: float = NODE_DEFAULTS["slop_s"]
    sync_queue_size: int = NODE_DEFAULTS["sync_queue_size"]
    keyframe_every: int = NODE_DEFAULTS["keyframe_every"]
    keyframe_min_matches: int = NODE_DEFAULTS["keyframe_min_matches"]
    keyframe_min_score: float = NODE_DEFAULTS["keyframe_min_score"]
    # Matcher.
    model: str | Path | None = None
    backend: str = "auto"
    threshold: float | None = None
    max_matches: int | None = None
    lk_refinement: bool | str = "auto"  # Matcher(lk_refinement=...): True, False or "auto"
    min_fine_score: float | None = NODE_DEFAULTS["min_fine_score"]
    rotation_search: bool = NODE_DEFAULTS["rotation_search"]
    rewarp: bool = NODE_DEFAULTS["rewarp"]
    zoom: bool = NODE_DEFAULTS["zoom"]
    max_model_runs: int = NODE_DEFAULTS["max_model_runs"]
    time_budget_ms: float | None = None  # Matcher(time_budget_ms=...): None or 0 = no limit
    input_size: tuple[int, int] | str | None = "auto"  # Matcher(input_size=...): "auto", None (the model's own) or (width, height)
    # Camera calibration for the report's essential-matrix inliers.
    use_camera_info: bool = True
    camera_info_topic: str | None = None
    camera_info0_topic: str | None = None
    camera_info1_topic: str | None = None
    # Video / image-folder sources.
    fps: float = 30.0
    frame_id: str = "camera"
    # Images above this many pixels (width x height) are skipped before decoding; 0/None: no limit.
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS
    # Report.
    report_dir: Path | None = None
    ransac_px: float = 3.0
    thumbnails: int = 6

    def __post_init__(self) -> None:
        self.source, self.output = Path(self.source), Path(self.output)
        if self.report_dir is not None:
            self.report_dir = Path(self.report_dir)

    @property
    def stereo(self) -> bool:
        return self.image0_topic is not None or self.image1_topic is not None

    def image_topics(self) -> list[str]:
        """The image topics in camera order: [image] or [image0, image1]."""
        if self.stereo:
            return [t for t in (self.image0_topic, self.image1_topic) if t is not None]
        return [self.image_topic] if self.image_topic else []

    def check(self) -> None:
        """One-line errors for option combinations that cannot work."""
        if self.stereo and self.image_topic:
            raise CoarseLoftrError("give either --image-topic (sequence mode) or --image0-topic and --image1-topic (stereo mode), not both")
        if self.stereo and (self.image0_topic is None or self.image1_topic is None):
            raise CoarseLoftrError("stereo mode needs both --image0-topic and --image1-topic")
        if self.stereo and self.image0_topic == self.image1_topic:
            raise CoarseLoftrError(f"--image0-topic and --image1-topic are both {self.image0_topic}; stereo mode needs two cameras")
        if self.storage not in STORAGES:
            raise CoarseLoftrError(f"unknown output storage {self.storage!r}; choose mcap or sqlite3")
        if self.sync not in ("approximate", "exact"):
            raise CoarseLoftrError(f"sync must be approximate or exact, got {self.sync!r}")
        if not 0.0 <= self.slop_s <= 1.0:
            raise CoarseLoftrError(f"--slop must be in [0, 1] seconds (the node's range), got {self.slop_s}")
        if self.sync_queue_size < 1:
            raise CoarseLoftrError(f"--sync-queue-size must be at least 1, got {self.sync_queue_size}")
        if self.keyframe_every < 0 or self.keyframe_min_matches < 0 or not 0 <= self.keyframe_min_score <= 1:
            raise CoarseLoftrError("--keyframe-every and --keyframe-min-matches must be >= 0, --keyframe-min-score in [0, 1]")
        if self.keyframe_every == 0 and self.keyframe_min_matches == 0 and self.keyframe_min_score == 0:
            raise CoarseLoftrError("--keyframe-every 0 needs --keyframe-min-matches or --keyframe-min-score > 0, or the keyframe is never replaced")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise CoarseLoftrError(f"--fps must be a positive number of frames per second, got {self.fps}")
        limit = self.max_image_pixels
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0):
            raise CoarseLoftrError(f"--max-image-pixels must be a whole number >= 0 (0 = no limit), got {limit!r}")
        check_threshold(self.threshold, "--threshold")  # the Matcher's meaning, checked before the source is opened
        check_max_matches(self.max_matches, "--max-matches")
        if self.matches_topic == self.overlay_topic and self.overlay:
            raise CoarseLoftrError("--matches-topic and --overlay-topic must differ")
        for topic in (self.matches_topic, self.overlay_topic):
            if not topic.startswith("/"):
                raise CoarseLoftrError(f"output topic {topic!r} must be absolute (start with '/')")


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceMessage:
    """One message of a source, in recording order.

    ``kind`` is ``"image"`` or ``"camera_info"``; ``camera`` is 0 (sequence mode, or
    the image0 camera) or 1. ``message`` is None when it could not be deserialised or
    read; ``error`` then says why and ``reason`` is the summary's skip category.
    """

    kind: str
    camera: int
    log_time_ns: int
    message: Any
    error: str | None = None
    reason: str = "unreadable message"


def camera_info_sibling(image_topic: str) -> str:
    """image_transport's camera_info topic for an image topic: ``/ns/image_raw[/compressed]`` -> ``/ns/camera_info``."""
    base = image_topic.rstrip("/")
    for transport in ("/compressed", "/theora", "/zstd"):
        if base.endswith(transport):
            base = base[: -len(transport)]
            break
    parent = base.rsplit("/", 1)[0]
    return f"{parent}/camera_info"


def _bag_path(path: Path) -> Path:
    """The path rosbags opens: a rosbag2 directory, or a single .mcap / .db3 file."""
    if path.is_dir() and not (path / "metadata.yaml").exists():
        files = sorted(p for p in path.iterdir() if p.suffix in BAG_SUFFIXES)
        if len(files) == 1:
            return files[0]  # a recording without metadata.yaml (e.g. the recorder was killed)
        raise BagError(f"{path} has no metadata.yaml and {len(files)} .mcap/.db3 files; pass one storage file, or run `ros2 bag reindex {path}`")
    return path


def _repair_hint(bag_path: Path) -> str:
    suffixes = {p.suffix for p in bag_path.iterdir()} if bag_path.is_dir() else {bag_path.suffix}
    if ".mcap" in suffixes:
        return "an MCAP file cut short (a recorder that was killed) can be repaired with `mcap recover FILE -o FIXED.mcap`"
    if ".db3" in suffixes:
        return "a damaged SQLite3 file may be salvaged with `sqlite3 FILE .recover | sqlite3 FIXED.db3`"
    return "check that it is a complete rosbag2 directory (metadata.yaml and its storage files); `ros2 bag reindex` rebuilds metadata.yaml"


class BagSource:
    """Image (and camera_info) messages of a rosbag2 recording, streamed in log-time order."""

    def __init__(self, path: Path, image_topics: list[str], camera_info_topics: list[str | None] | None) -> None:
        rosbags = _rosbags()
        self.path = path
        self.description = str(path)
        self.stamp_rule = "message header stamps"
        bag_path = _bag_path(path)
        humble = rosbags.typesys.get_typestore(rosbags.typesys.Stores.ROS2_HUMBLE)
        try:
            # Humble's SQLite3 bags hold no message definitions: Humble's types decode them.
            self.reader = rosbags.highlevel.AnyReader([bag_path], default_typestore=humble)
            self.reader.open()
        except Exception as error:  # rosbags raises several types for unreadable files
            raise BagError(f"cannot open {path} as a rosbag2 recording: {_first_line(error)}; {_repair_hint(bag_path)}") from None
        try:
            self.topics = self._check_topics(image_topics)
            self.roles: dict[str, tuple[str, int]] = {t: ("image", i) for i, t in enumerate(image_topics)}
            self.camera_info_topics = self._camera_info_topics(image_topics, camera_info_topics)
            for camera, topic in enumerate(self.camera_info_topics):
                if topic is not None:
                    self.roles[topic] = ("camera_info", camera)
            counts = {name: info.msgcount for name, info in self.topics.items()}
            self.expected_images: int | None = sum(counts[t] for t in image_topics)
            self.expected_messages: int | None = sum(counts[t] for t in self.roles)
            self.images_per_camera = [counts[t] for t in image_topics]
        except BaseException:
            self.close()
            raise

    def _topic_listing(self, topics: dict) -> str:
        def describe(names: list[str]) -> str:
            shown = [f"{n} ({topics[n].msgtype}, {topics[n].msgcount} msgs)" for n in names[:40]]
            return ", ".join(shown) + (f", ... {len(names) - 40} more" if len(names) > 40 else "")

        images = sorted(n for n in topics if topics[n].msgtype in IMAGE_TYPES)
        others = sorted(n for n in topics if n not in images)
        return f"image topics: {describe(images) or 'none'}; other topics: {describe(others) or 'none'}"

    def _check_topics(self, image_topics: list[str]) -> dict:
        topics = self.reader.topics
        if not image_topics:
            raise BagError(f"pass --image-topic T (sequence) or --image0-topic T0 --image1-topic T1 (stereo); {self.path} has {self._topic_listing(topics)}")
        for topic in image_topics:
            if topic not in topics:
                raise BagError(f"topic {topic} is not in {self.path}; it has {self._topic_listing(topics)}")
            if topics[topic].msgtype not in IMAGE_TYPES:
                raise BagError(f"topic {topic} in {self.path} carries {topics[topic].msgtype}; replay reads sensor_msgs/msg/Image and CompressedImage topics ({self._topic_listing(topics)})")
        return topics

    def _camera_info_topics(self, image_topics: list[str], given: list[str | None] | None) -> list[str | None]:
        if given is None:  # calibration off
            return [None] * len(image_topics)
        chosen: list[str | None] = []
        for image_topic, topic in zip(image_topics, given):
            if topic is not None:  # asked for by name: it must be there
                if topic not in self.topics or self.topics[topic].msgtype != CAMERA_INFO_TYPE:
                    kind = self.topics[topic].msgtype if topic in self.topics else "absent"
                    raise BagError(f"camera_info topic {topic} is {kind} in {self.path}; it has {self._topic_listing(self.topics)}")
                chosen.append(topic)
                continue
            sibling = camera_info_sibling(image_topic)
            info = self.topics.get(sibling)
            chosen.append(sibling if info is not None and info.msgtype == CAMERA_INFO_TYPE and info.msgcount else None)
        return chosen

    def __iter__(self) -> Iterator[SourceMessage]:
        connections = [c for c in self.reader.connections if c.topic in self.roles]
        messages = self.reader.messages(connections=connections)
        count = 0
        while True:
            try:
                connection, log_time, raw = next(messages)
            except StopIteration:
                return
            except Exception as error:  # storage-level damage: nothing after it can be read
                raise BagError(
                    f"{self.path} is truncated or corrupt after {count} messages ({_first_line(error)}); "
                    "the output keeps everything matched before that point"
                ) from None
            count += 1
            kind, camera = self.roles[connection.topic]
            try:
                message = self.reader.deserialize(raw, connection.msgtype)
            except Exception as error:
                yield SourceMessage(kind, camera, log_time, None, f"undecodable {connection.msgtype} on {connection.topic}: {_first_line(error)}")
                continue
            yield SourceMessage(kind, camera, log_time, message)

    def close(self) -> None:
        if getattr(self, "reader", None) is not None and self.reader.stack is not None:
            self.reader.close()


def _image_message(typestore: Any, image: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """A rosbags ``sensor_msgs/msg/Image`` holding ``image`` (any uint8/uint16 image file layout)."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint16 and image.ndim == 3:
        image = to_8bit(image)  # colour is published as bgr8; mono16 stays 16-bit
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    types = typestore.types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)
    return types["sensor_msgs/msg/Image"](**numpy_to_image_fields(image, header, arrays="numpy"))


class VideoSource:
    """The frames of a video file as ``sensor_msgs/Image`` messages, stamped frame index / fps."""

    def __init__(self, path: Path, fps: float, frame_id: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        rosbags = _rosbags()
        self.typestore = rosbags.typesys.get_typestore(rosbags.typesys.Stores.ROS2_HUMBLE)
        self.path, self.frame_id = path, frame_id
        self.description = str(path)
        self.stamp_rule = "frame index / the video's frame rate"
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise ImageError(f"cannot open video {path}; pass a video OpenCV can read (mp4, avi, mkv, ...)")
        size = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_pixels(*size, max_pixels, f"video {path}")
        except ImageTooLargeError:
            self.capture.release()
            raise
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or fps
        if not np.isfinite(self.fps) or self.fps <= 0:
            self.fps = fps
        frames = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.expected_images = self.expected_messages = frames if frames > 0 else None
        self.images_per_camera = [self.expected_images]
        self.camera_info_topics: list[str | None] = [None]

    def __iter__(self) -> Iterator[SourceMessage]:
        index = 0
        while True:
            ok, frame = self.capture.read()
            if not ok:
                return
            stamp_ns = int(round(index * 1e9 / self.fps))
            yield SourceMessage("image", 0, stamp_ns, _image_message(self.typestore, frame, stamp_ns, self.frame_id))
            index += 1

    def close(self) -> None:
        self.capture.release()


_DECIMAL_NAME = re.compile(r"\d+(\.\d+)?")
# Integer file names that are Unix times (1973 to 2286): unit by magnitude, as
# (smallest value, nanoseconds per unit, name). Smaller integers are frame indices.
_INTEGER_STAMP_UNITS = (
    (10**17, 1, "nanoseconds"),
    (10**14, 1_000, "microseconds"),
    (10**11, 1_000_000, "milliseconds"),
    (10**8, 1_000_000_000, "seconds"),
)
_MAX_ROS_SECONDS = 2**31 - 1  # builtin_interfaces/Time.sec is an int32


def _natural_key(name: str) -> list:
    """``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def folder_stamps(stems: list[str], fps: float) -> tuple[list[int], str]:
    """Stamps in nanoseconds for image files named ``stems``, and the rule used (in words).

    - Every name a decimal number with a fraction (TUM ``1341847980.722988``): seconds.
    - Every name an integer: a Unix time when the largest is at least 10^8, in the unit its
      magnitude gives (EuRoC ``1403636579763555584``: nanoseconds; 13 digits: milliseconds;
      16: microseconds; 10: seconds); else frame indices (KITTI ``000000``), stamped
      index / ``fps``, so gaps in the numbering stay gaps.
    - Anything else: natural name order (``frame2`` before ``frame10``), index / ``fps``.
    """
    if stems and all(_DECIMAL_NAME.fullmatch(stem) for stem in stems):
        if any("." in stem for stem in stems):
            return [int(Decimal(stem).scaleb(9).to_integral_value()) for stem in stems], "file names as seconds"
        values = [int(stem) for stem in stems]
        for smallest, ns_per_unit, unit in _INTEGER_STAMP_UNITS:
            if max(values) >= smallest:
                return [value * ns_per_unit for value in values], f"file names as {unit}"
        return [int(round(value * 1e9 / fps)) for value in values], f"file names as frame indices at {fps:g} fps"
    order = sorted(range(len(stems)), key=lambda i: _natural_key(stems[i]))
    stamps = [0] * len(stems)
    for index, position in enumerate(order):
        stamps[position] = int(round(index * 1e9 / fps))
    return stamps, f"name order at {fps:g} fps"


class FolderSource:
    """The images of a folder as ``sensor_msgs/Image`` messages, in stamp order.

    Stamps come from the file names when they are numbers, else from the name order and
    ``fps`` (``folder_stamps`` has the rule; ``stamp_rule`` says which one applied).
    """

    def __init__(self, path: Path, fps: float, frame_id: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        rosbags = _rosbags()
        self.typestore = rosbags.typesys.get_typestore(rosbags.typesys.Stores.ROS2_HUMBLE)
        self.path, self.frame_id, self.max_pixels = path, frame_id, max_pixels
        self.description = str(path)
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ImageError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and is not a rosbag2 directory (no metadata.yaml)")
        stamps, self.stamp_rule = folder_stamps([p.stem for p in files], fps)
        stamped = sorted(zip(stamps, files), key=lambda item: (item[0], _natural_key(item[1].name)))
        if stamped[-1][0] // 1_000_000_000 > _MAX_ROS_SECONDS:
            raise BagError(
                f"{path}: {stamped[-1][1].name} read as {self.stamp_rule} is {stamped[-1][0] // 1_000_000_000} s, beyond "
                "ROS time (int32 seconds, year 2038); rename the files to frame indices or seconds"
            )
        self.files = stamped
        self.expected_images = self.expected_messages = len(stamped)
        self.images_per_camera = [len(stamped)]
        self.camera_info_topics: list[str | None] = [None]

    def __iter__(self) -> Iterator[SourceMessage]:
        from ..imageio import read_image

        for stamp_ns, file in self.files:
            try:
                image = read_image(file, self.max_pixels)
                if image.dtype not in (np.uint8, np.uint16):
                    raise ImageError(f"{file} holds {image.dtype} pixels; replay reads 8- and 16-bit images (save it as a 16-bit PNG)")
                message = _image_message(self.typestore, image, stamp_ns, self.frame_id)
            except ImageError as error:  # unreadable, too large, or floating-point pixels
                yield SourceMessage("image", 0, stamp_ns, None, str(error), _skip_reason((), error))
                continue
            yield SourceMessage("image", 0, stamp_ns, message)

    def close(self) -> None:
        pass


Source = BagSource | VideoSource | FolderSource


def is_rosbag2(path: Path) -> bool:
    """A rosbag2: a .mcap/.db3 file, or a folder with metadata.yaml or storage files."""
    if path.is_file():
        return path.suffix in BAG_SUFFIXES
    return (path / "metadata.yaml").exists() or any(p.suffix in BAG_SUFFIXES for p in path.iterdir())


def open_source(config: ReplayConfig) -> Source:
    """The source ``config.source`` names: a rosbag2, a video file or a folder of images."""
    path = config.source
    if not path.exists():
        raise BagError(f"{path} does not exist; pass a rosbag2 directory, a .mcap/.db3 file, a video or a folder of images")
    if is_rosbag2(path):
        if config.use_camera_info:
            given = [config.camera_info0_topic, config.camera_info1_topic] if config.stereo else [config.camera_info_topic]
        else:
            given = None
        return BagSource(path, config.image_topics(), given)
    if config.image_topics():
        raise CoarseLoftrError(f"{path} is not a rosbag2 recording; image topics only apply to bags (a video or image folder is read in sequence mode)")
    if path.is_dir():
        return FolderSource(path, config.fps, config.frame_id, config.max_image_pixels)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path, config.fps, config.frame_id, config.max_image_pixels)
    raise BagError(f"{path} is neither a rosbag2 (.mcap, .db3, or a directory with metadata.yaml), a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder of images")


# --------------------------------------------------------------------------- output


class _StopOnCtrlC:
    """The first Ctrl-C asks the replay loop to stop after the current message (so no
    write is cut in half); a second one raises ``KeyboardInterrupt`` as usual.

    Whatever handler was in force comes back afterwards, and an ignored SIGINT (a job started
    in the background with ``&``) stays ignored: no handler is installed then."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Any = None

    def __enter__(self) -> "_StopOnCtrlC":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while a bag is being finalised, so a second Ctrl-C cannot corrupt it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class OutputBag:
    """A new rosbag2 (MCAP or SQLite3) with MatchArray messages and optional overlay pictures.

    Messages are serialised to CDR with the definitions from ``msg/MatchArray.msg`` and
    the bag stores those definitions, so ROS 2 tools and Foxglove decode it. ``close()``
    always finalises the bag (index, metadata.yaml), also after an error or Ctrl-C.
    """

    def __init__(self, path: Path, storage: str = "mcap", matches_topic: str = "/matches", overlay_topic: str | None = None) -> None:
        rosbags = _rosbags()
        if path.suffix in BAG_SUFFIXES:
            raise BagError(f"--output {path} names a storage file; rosbag2 output is a directory: pass {path.with_suffix('')}")
        if path.exists():
            raise BagError(f"output {path} exists; rosbag2 never overwrites a bag: choose a new --output or delete it")
        self.path = path
        self.typestore = match_array_typestore("humble")
        self.match_array_type = MATCH_ARRAY_TYPENAME
        plugin = {"mcap": rosbags.rosbag2.StoragePlugin.MCAP, "sqlite3": rosbags.rosbag2.StoragePlugin.SQLITE3}[storage]
        self.writer = rosbags.rosbag2.Writer(path, version=OUTPUT_BAG_VERSION, storage_plugin=plugin)
        try:
            self.writer.open()
            self.matches = self.writer.add_connection(matches_topic, MATCH_ARRAY_TYPENAME, typestore=self.typestore)
            self.overlay = None
            if overlay_topic is not None:
                self.overlay = self.writer.add_connection(overlay_topic, "sensor_msgs/msg/CompressedImage", typestore=self.typestore)
        except Exception as error:
            raise BagError(f"cannot create output bag {path}: {_first_line(error)}") from None
        self.match_count = 0
        self.overlay_count = 0

    def write_matches(self, log_time_ns: int, matched: MatchedPair, latency_ms: float) -> None:
        """One ``MatchArray`` (header = image 1's header) at ``log_time_ns``."""
        message = rosbags_match_array(self.typestore, matched.result, matched.header0, matched.header1, latency_ms)
        self.writer.write(self.matches, log_time_ns, self.typestore.serialize_cdr(message, self.match_array_type))
        self.match_count += 1

    def write_overlay(self, log_time_ns: int, header: Any, picture: np.ndarray, jpeg_quality: int = 85) -> None:
        """A ``CompressedImage`` (JPEG, image_transport format string) of a BGR picture."""
        if self.overlay is None:
            raise ValueError("this OutputBag was opened without an overlay topic")
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ImageError(f"cannot JPEG-encode an overlay of shape {picture.shape}")
        CompressedImage = self.typestore.types["sensor_msgs/msg/CompressedImage"]
        message = CompressedImage(header=header, format="bgr8; jpeg compressed bgr8", data=encoded.reshape(-1))
        self.writer.write(self.overlay, log_time_ns, self.typestore.serialize_cdr(message, CompressedImage.__msgtype__))
        self.overlay_count += 1

    def close(self) -> None:
        """Finalise the bag (idempotent); Ctrl-C is held until it is complete."""
        if self.writer.storage is None:
            return
        with _sigint_deferred():
            self.writer.close()


# --------------------------------------------------------------------------- replay


@dataclass
class ReplaySummary:
    """What a replay did. ``ended`` is ``completed``, ``interrupted`` (Ctrl-C) or ``error``."""

    source: str
    output: str
    mode: str
    image_topics: list[str]
    camera_info_topics: list[str | None]
    storage: str
    stamps: str = ""
    model: str = ""
    backend: str = ""
    messages_read: int = 0
    images: int = 0
    pairs: int = 0
    matches_written: int = 0
    overlays_written: int = 0
    sequence_restarts: int = 0
    unpaired_images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skip_examples: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    ended: str = "completed"
    error: str | None = None

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.wall_s if self.wall_s > 0 else 0.0

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skip_examples.setdefault(reason, example)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items()}
        data["pairs_per_s"] = round(self.pairs_per_s, 3)
        data["wall_s"] = round(self.wall_s, 3)
        return data


def _skip_reason(messages: tuple[Any, ...], error: ImageError) -> str:
    """The summary's category of a skipped image."""
    for message in messages:
        encoding = getattr(message, "encoding", None)
        if encoding is not None and str(encoding) not in SUPPORTED_ENCODINGS:
            return f"unsupported encoding {str(encoding)!r}"
    if isinstance(error, ImageTooLargeError):
        return "image too large"
    if isinstance(error, ImageSizeError):
        return "image too small for the model"
    return "unreadable image"


def _create_matcher(config: ReplayConfig) -> Any:
    from ..matching.matcher import Matcher

    return Matcher(
        model=config.model,
        backend=config.backend,
        threshold=config.threshold,
        max_matches=config.max_matches or None,
        lk_refinement=config.lk_refinement,
        min_fine_score=config.min_fine_score,
        rotation_search=config.rotation_search,
        rewarp=config.rewarp,
        zoom=config.zoom,
        max_model_runs=config.max_model_runs,
        time_budget_ms=config.time_budget_ms,
        input_size=config.input_size,
    )


def _create_report(config: ReplayConfig, source: Source) -> Any:
    if config.report_dir is None:
        return None
    from .report import ReportBuilder

    per_camera = [n for n in source.images_per_camera if n is not None]
    expected_pairs = None
    if len(per_camera) == len(source.images_per_camera):
        expected_pairs = min(per_camera) if config.stereo else max(per_camera[0] - 1, 0)
    return ReportBuilder(config.report_dir, expected_pairs=expected_pairs, ransac_px=config.ransac_px,
                         thumbnails=config.thumbnails, overlay_max_lines=config.overlay_max_lines)


def replay(
    config: ReplayConfig,
    matcher: Any = None,
    on_pair: Callable[[int, MatchedPair], None] | None = None,
    progress: bool | None = None,
) -> ReplaySummary:
    """Match the image pairs of ``config.source`` and write them to ``config.output``.

    ``matcher``: a ``Matcher`` (default: one built from ``config.model`` / ``backend``
    after the source has been checked, so a wrong topic fails before the model loads).
    ``on_pair(index, matched)`` is called after each pair is written. ``progress``:
    show a tqdm bar (None: only on a terminal).

    Returns the summary when the source is exhausted or on Ctrl-C (``ended ==
    "interrupted"``); a truncated or corrupt bag raises ``BagError`` after the output
    bag and report are finalised with everything matched up to that point.
    """
    config.check()
    source = open_source(config)
    pending_error: BagError | None = None
    try:
        if matcher is None:
            matcher = _create_matcher(config)
        summary = ReplaySummary(
            source=source.description,
            output=str(config.output),
            mode="stereo" if config.stereo else "sequence",
            image_topics=config.image_topics(),
            camera_info_topics=list(source.camera_info_topics),
            storage=config.storage,
            stamps=source.stamp_rule,
            model=str(getattr(matcher, "model_name", "")),
            backend=str(getattr(getattr(matcher, "backend", None), "name", "")),
        )
        output = OutputBag(config.output, config.storage, config.matches_topic, config.overlay_topic if config.overlay else None)
        try:
            report = _create_report(config, source)
        except BaseException:
            output.close()
            raise
        started = time.perf_counter()
        try:
            with _StopOnCtrlC() as stop:
                _replay_loop(config, source, matcher, output, summary, report, on_pair, progress, stop)
        except KeyboardInterrupt:
            summary.ended = "interrupted"
        except BagError as error:
            summary.ended, summary.error = "error", str(error)
            pending_error = error
        finally:
            summary.wall_s = time.perf_counter() - started
            summary.matches_written, summary.overlays_written = output.match_count, output.overlay_count
            output.close()
        if report is not None:
            report.finish(summary.to_dict())
    finally:
        source.close()
    if pending_error is not None:
        raise pending_error
    return summary


def _replay_loop(
    config: ReplayConfig,
    source: Source,
    matcher: Any,
    output: OutputBag,
    summary: ReplaySummary,
    report: Any,
    on_pair: Callable[[int, MatchedPair], None] | None,
    progress: bool | None,
    stop: _StopOnCtrlC,
) -> None:
    from tqdm import tqdm

    from .report import CameraInfoError, CameraModel

    streams = MessageMatcher(matcher, keyframe_every=config.keyframe_every, keyframe_min_matches=config.keyframe_min_matches,
                             max_pixels=config.max_image_pixels, keyframe_min_score=config.keyframe_min_score)
    pairer = StereoPairer(config.slop_s, exact=config.sync == "exact", queue_size=config.sync_queue_size) if config.stereo else None
    cameras: list[Any] = [None, None]
    bar = tqdm(total=source.expected_messages, unit="msg", desc="replay", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    try:
        for item in source:
            if stop.requested:
                summary.ended = "interrupted"
                break
            bar.update(1)
            summary.messages_read += 1
            summary.images += item.kind == "image"  # skipped ones too: "N pairs from M images, skipped K"
            if item.message is None:
                summary.skip(item.reason, item.error or "")
                continue
            if item.kind == "camera_info":
                try:
                    cameras[item.camera] = CameraModel.from_camera_info(item.message)
                except CameraInfoError as error:  # keep the last good calibration
                    summary.skip("invalid camera_info", str(error))
                continue
            received = time.perf_counter()
            try:
                if pairer is not None:
                    pair = pairer.push(item.camera, Frame(stamp_to_ns(item.message.header.stamp), item.message))
                    if pair is None:
                        continue
                    messages = (pair.frame0.data, pair.frame1.data)
                    matched = streams.match_stereo(*messages)
                else:
                    messages = (item.message,)
                    matched = streams.match_sequence(item.message)
                    if matched is None:
                        continue
            except ImageError as error:
                summary.skip(_skip_reason(messages, error), str(error))
                continue
            latency_ms = (time.perf_counter() - received) * 1e3
            index = summary.pairs
            output.write_matches(item.log_time_ns, matched, latency_ms)
            picture = None
            if config.overlay:
                picture = draw_matches(matched.image0, matched.image1, matched.result, max_lines=config.overlay_max_lines)
                output.write_overlay(item.log_time_ns, matched.header1, picture)
            summary.pairs += 1
            if report is not None:
                report.add(index, matched, latency_ms, cameras[0], cameras[1] if pairer is not None else cameras[0], picture)
            bar.set_postfix_str(f"{summary.pairs} pairs", refresh=False)
            if on_pair is not None:
                on_pair(index, matched)
    finally:
        bar.close()
        summary.sequence_restarts = streams.pairer.resets if pairer is None else pairer.resets
        if pairer is not None:
            summary.unpaired_images = pairer.dropped + sum(pairer.waiting)

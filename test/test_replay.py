"""`coarse-loftr replay`: real rosbag2 files (MCAP and SQLite3) written here with rosbags, replayed,
and read back with rosbags' AnyReader; errors, Ctrl-C, video / image-folder sources, the report."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
from decimal import Decimal
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pytest

from coarse_loftr_ros import cli
from coarse_loftr_ros.ros.match_array import MATCH_ARRAY_TYPENAME, result_from_match_array
from coarse_loftr_ros.ros.message_matching import MatchedPair
from coarse_loftr_ros.tools.replay import (
    BagError,
    BagSource,
    OutputBag,
    ReplayConfig,
    camera_info_sibling,
    folder_stamps,
    replay,
)
from coarse_loftr_ros.tools.report import CameraInfoError, CameraModel, ReportBuilder, geometric_inliers, opencv_distortion
from coarse_loftr_ros.matching.result import MatchResult
from hostile_images import png_declaring
from matching import assert_same_matches

rosbags_highlevel = pytest.importorskip("rosbags.highlevel")
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

FREIBURG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "freiburg_sequence"
STORE = get_typestore(Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
CameraInfo = STORE.types["sensor_msgs/msg/CameraInfo"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]
RegionOfInterest = STORE.types["sensor_msgs/msg/RegionOfInterest"]
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
T0 = 1_700_000_000_000_000_000  # ns
LOG_DELAY_NS = 2_000_000  # the recorder logs a message 2 ms after its capture stamp


# ----------------------------------------------------------------------------- bag building


def header(stamp_ns: int, frame_id: str = "camera") -> object:
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(image: np.ndarray, stamp_ns: int, frame_id: str = "camera", encoding: str | None = None) -> object:
    pixels = np.ascontiguousarray(image)
    encoding = encoding or ("mono8" if pixels.ndim == 2 else "bgr8")
    return Image(header=header(stamp_ns, frame_id), height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 is_bigendian=0, step=pixels.strides[0], data=pixels.reshape(-1).view(np.uint8))


def compressed_msg(image: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> object:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return CompressedImage(header=header(stamp_ns, frame_id), format="bgr8; jpeg compressed bgr8", data=data.reshape(-1))


def camera_info_msg(K: np.ndarray, size: tuple[int, int], stamp_ns: int, frame_id: str = "camera") -> object:
    return CameraInfo(header=header(stamp_ns, frame_id), height=size[1], width=size[0], distortion_model="plumb_bob",
                      d=np.zeros(5), k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=np.zeros(12),
                      binning_x=0, binning_y=0,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def write_bag(path: Path, storage: str, messages: Iterable[tuple[str, object, int]], compression: CompressionMode | None = None) -> Path:
    """A real rosbag2 with ``(topic, message, log_time_ns)`` entries, written in the given order."""
    writer = Writer(path, version=8, storage_plugin=STORAGES[storage])
    if compression is not None:
        writer.set_compression(compression, CompressionFormat.ZSTD)
    connections: dict[str, object] = {}
    with writer:
        for topic, message, log_time in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, message.__msgtype__, typestore=STORE)
            writer.write(connections[topic], log_time, STORE.serialize_cdr(message, message.__msgtype__))
    return path


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """Every message of a bag by topic: (log time, deserialised message), with AnyReader."""
    topics: dict[str, list[tuple[int, object]]] = {}
    with rosbags_highlevel.AnyReader([path]) as reader:
        for connection, log_time, raw in reader.messages():
            topics.setdefault(connection.topic, []).append((log_time, reader.deserialize(raw, connection.msgtype)))
    return topics


def stamp_ns(msg_header: object) -> int:
    return msg_header.stamp.sec * 1_000_000_000 + msg_header.stamp.nanosec


def freiburg_stamps() -> list[int]:
    files = sorted(FREIBURG.glob("*.png"))
    return [int(Decimal(f.stem).scaleb(9)) for f in files]


@pytest.fixture(scope="module")
def small_frames() -> list[np.ndarray]:
    """Real images for model-free bag tests: crops of scikit-image's camera photograph."""
    import skimage.data

    camera = skimage.data.camera()
    return [np.ascontiguousarray(camera[20 * i: 20 * i + 96, 30 * i: 30 * i + 128]) for i in range(6)]


@pytest.fixture(scope="module")
def freiburg(freiburg_frames) -> tuple[list[np.ndarray], list[int]]:
    return freiburg_frames, freiburg_stamps()


def sequence_bag(tmp_path: Path, storage: str, frames: list[np.ndarray], stamps: list[int], name: str = "in",
                 topic: str = "/camera/image_raw", compression: CompressionMode | None = None) -> Path:
    messages = [(topic, image_msg(f, s, "camera"), s + LOG_DELAY_NS) for f, s in zip(frames, stamps)]
    return write_bag(tmp_path / name, storage, messages, compression)


# ----------------------------------------------------------------------------- model-free: reading


def test_camera_info_sibling_follows_image_transport_naming():
    assert camera_info_sibling("/cam/left/image_raw") == "/cam/left/camera_info"
    assert camera_info_sibling("/cam/left/image_rect/compressed") == "/cam/left/camera_info"
    assert camera_info_sibling("/image") == "/camera_info"


@pytest.mark.parametrize(
    "storage, compression",
    [("mcap", None), ("sqlite3", None), ("mcap", CompressionMode.STORAGE), ("mcap", CompressionMode.FILE),
     ("sqlite3", CompressionMode.MESSAGE), ("sqlite3", CompressionMode.FILE)],
)
def test_bag_source_streams_images_from_plain_and_compressed_bags(tmp_path, small_frames, storage, compression):
    stamps = [T0 + i * 50_000_000 for i in range(len(small_frames))]
    bag = sequence_bag(tmp_path, storage, small_frames, stamps, compression=compression)
    source = BagSource(bag, ["/camera/image_raw"], [None])
    try:
        assert source.expected_images == len(small_frames)
        items = list(source)
    finally:
        source.close()
    assert [i.log_time_ns for i in items] == [s + LOG_DELAY_NS for s in stamps]
    assert [stamp_ns(i.message.header) for i in items] == stamps
    for item, frame in zip(items, small_frames):
        assert item.kind == "image" and item.camera == 0
        np.testing.assert_array_equal(np.asarray(item.message.data).reshape(frame.shape), frame)


def test_single_storage_file_opens_like_the_directory(tmp_path, small_frames):
    stamps = [T0 + i * 50_000_000 for i in range(len(small_frames))]
    for storage, suffix in (("mcap", ".mcap"), ("sqlite3", ".db3")):
        bag = sequence_bag(tmp_path, storage, small_frames, stamps, name=f"in_{storage}")
        (single,) = bag.glob(f"*{suffix}")
        source = BagSource(single, ["/camera/image_raw"], [None])
        try:
            assert len(list(source)) == len(small_frames)
        finally:
            source.close()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_missing_topic_lists_the_topics_that_exist(tmp_path, small_frames, storage, capsys):
    stamps = [T0 + i * 50_000_000 for i in range(3)]
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    messages = [("/camera/image_raw", image_msg(f, s), s) for f, s in zip(small_frames, stamps)]
    messages.append(("/camera/camera_info", camera_info_msg(K, (128, 96), stamps[-1]), stamps[-1] + 1))
    bag = write_bag(tmp_path / "in", storage, messages)
    # No model is given and none ships in a source checkout: the topic check must come first.
    config = ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image")
    with pytest.raises(BagError) as error:
        replay(config)
    text = str(error.value)
    assert "\n" not in text
    assert "topic /camera/image is not in" in text
    assert "/camera/image_raw (sensor_msgs/msg/Image, 3 msgs)" in text
    assert "/camera/camera_info (sensor_msgs/msg/CameraInfo, 1 msgs)" in text
    assert not (tmp_path / "out").exists()

    # The command: one line on stderr, exit status 2.
    status = cli.main(["replay", str(bag), "--output", str(tmp_path / "out"), "--image-topic", "/nope", "--no-progress"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("coarse-loftr replay: error: topic /nope is not in")

    # A topic of another type, and no topic at all.
    with pytest.raises(BagError, match="carries sensor_msgs/msg/CameraInfo"):
        replay(ReplayConfig(bag, tmp_path / "out", image_topic="/camera/camera_info"))
    with pytest.raises(BagError, match=r"pass --image-topic .* image topics: /camera/image_raw"):
        replay(ReplayConfig(bag, tmp_path / "out"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_a_one_line_error(tmp_path, small_frames, storage):
    stamps = [T0 + i * 50_000_000 for i in range(len(small_frames))]
    bag = sequence_bag(tmp_path, storage, small_frames, stamps)
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    with storage_file.open("r+b") as handle:
        handle.truncate(storage_file.stat().st_size * 2 // 3)
    with pytest.raises(BagError) as error:
        replay(ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw"))
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"cannot open {bag} as a rosbag2 recording")
    assert ("mcap recover" if storage == "mcap" else ".recover") in text


def test_option_errors_are_one_line(tmp_path, small_frames):
    bag = sequence_bag(tmp_path, "mcap", small_frames[:2], [T0, T0 + 1])
    with pytest.raises(BagError, match="names a storage file"):
        OutputBag(tmp_path / "out.mcap")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="exists; rosbag2 never overwrites"):
        OutputBag(tmp_path / "exists")
    for kwargs, message in (
        ({"image0_topic": "/a"}, "needs both"),
        ({"image0_topic": "/a", "image1_topic": "/a"}, "stereo mode needs two cameras"),
        ({"image_topic": "/a", "image0_topic": "/a", "image1_topic": "/b"}, "not both"),
        ({"image_topic": "/a", "keyframe_every": 0}, "never replaced"),
        ({"image_topic": "/a", "keyframe_min_score": 1.5}, r"--keyframe-min-score in \[0, 1\]"),
        ({"image_topic": "/a", "keyframe_min_score": float("nan")}, r"--keyframe-min-score in \[0, 1\]"),
        ({"image_topic": "/a", "storage": "rosbag1"}, "mcap or sqlite3"),
        ({"image_topic": "/a", "threshold": 1.5}, r"--threshold must be a number in \[0, 1\]"),
        ({"image_topic": "/a", "threshold": float("nan")}, r"--threshold must be a number in \[0, 1\]"),
        ({"image_topic": "/a", "max_matches": -5}, "--max-matches must be a whole number >= 0"),
        ({"image_topic": "/a", "max_image_pixels": -1}, "--max-image-pixels must be a whole number >= 0"),
        ({"image_topic": "/a", "fps": float("nan")}, "--fps must be a positive number"),
    ):
        with pytest.raises(Exception, match=message):
            replay(ReplayConfig(bag, tmp_path / "o", **kwargs))


# ----------------------------------------------------------------------------- model-free: writing and report


def synthetic_two_view(n_inliers: int, n_outliers: int, seed: int = 0):
    """Correspondences of a real two-view geometry (3D points seen by two posed cameras) plus outliers."""
    rng = np.random.default_rng(seed)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    points = np.column_stack([rng.uniform(-2, 2, n_inliers), rng.uniform(-1.5, 1.5, n_inliers), rng.uniform(4, 9, n_inliers)])
    angle = np.deg2rad(5.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([0.4, 0.05, 0.1])

    def project(X):
        x = (K @ X.T).T
        return (x[:, :2] / x[:, 2:]).astype(np.float32)

    kp0, kp1 = project(points), project(points @ R.T + t)
    out0 = rng.uniform([0, 0], [640, 480], (n_outliers, 2)).astype(np.float32)
    out1 = rng.uniform([0, 0], [640, 480], (n_outliers, 2)).astype(np.float32)
    return K, np.vstack([kp0, out0]), np.vstack([kp1, out1])


def test_geometric_inliers_find_the_true_geometry():
    K, kp0, kp1 = synthetic_two_view(300, 100)
    inliers, method = geometric_inliers(kp0, kp1, threshold_px=2.0)
    assert method == "fundamental"
    assert 295 <= inliers <= 310  # the 300 true ones (a random outlier may fit by chance)
    camera = CameraModel(K=K, D=np.zeros(5), distortion_model="plumb_bob")
    inliers, method = geometric_inliers(kp0, kp1, camera, camera, threshold_px=2.0)
    assert method == "essential"
    assert 295 <= inliers <= 310
    assert geometric_inliers(kp0[:7], kp1[:7]) == (0, None)
    # matches too degenerate for OpenCV's five-point solver (no motion): no inliers, not an exception
    assert geometric_inliers(kp0[:30], kp0[:30], camera, camera) == (0, "essential")


def synthetic_result(kp0: np.ndarray, kp1: np.ndarray, size=(640, 480)) -> MatchResult:
    n = len(kp0)
    return MatchResult(keypoints0=kp0, keypoints1=kp1, confidence=np.linspace(1, 0.1, n, dtype=np.float32),
                       cells0=np.arange(n, dtype=np.int32), cells1=np.arange(n, dtype=np.int32)[::-1].copy(),
                       image0_size=size, image1_size=size, grid_size=(40, 30), backend="synthetic", model="geometry",
                       timing_ms={"total": 12.5})


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_output_bag_holds_cdr_match_arrays_with_their_definition(tmp_path, storage):
    _, kp0, kp1 = synthetic_two_view(50, 0)
    result = synthetic_result(kp0, kp1)
    image = np.zeros((480, 640), np.uint8)
    bag = OutputBag(tmp_path / "out", storage, "/matches", "/matches/overlay/compressed")
    matched = MatchedPair(result, header(T0, "left"), header(T0 + 5, "right"), image, image)
    bag.write_matches(T0 + 7, matched, latency_ms=3.5)
    bag.write_overlay(T0 + 7, matched.header1, np.full((48, 64, 3), 200, np.uint8))
    bag.close()
    bag.close()  # idempotent

    with rosbags_highlevel.AnyReader([tmp_path / "out"]) as reader:
        topics = reader.topics
        assert topics["/matches"].msgtype == MATCH_ARRAY_TYPENAME
        assert "float32[] keypoints0" in topics["/matches"].msgdef.data  # the definition travels with the bag
        assert topics["/matches/overlay/compressed"].msgtype == "sensor_msgs/msg/CompressedImage"
    messages = read_bag(tmp_path / "out")
    (log_time, msg), = messages["/matches"]
    assert log_time == T0 + 7
    assert stamp_ns(msg.header) == T0 + 5 and msg.header.frame_id == "right"
    assert stamp_ns(msg.header0) == T0 and msg.header0.frame_id == "left"
    assert msg.latency_ms == pytest.approx(3.5)
    back = result_from_match_array(msg)
    np.testing.assert_array_equal(back.keypoints0, result.keypoints0)
    np.testing.assert_array_equal(back.cells1, result.cells1)
    (_, overlay), = messages["/matches/overlay/compressed"]
    assert overlay.format == "bgr8; jpeg compressed bgr8"
    assert cv2.imdecode(np.asarray(overlay.data), cv2.IMREAD_COLOR).shape == (48, 64, 3)


def test_report_builder_writes_a_self_contained_page(tmp_path, motorcycle):
    left, right, _ = motorcycle
    K, kp0, kp1 = synthetic_two_view(200, 50)
    builder = ReportBuilder(tmp_path / "report", expected_pairs=20, thumbnails=3)
    counts = []
    for index in range(20):
        n = 250 - 5 * index if index != 13 else 30  # pair 13 is the weakest
        result = synthetic_result(kp0[:n], kp1[:n], size=(left.shape[1], left.shape[0]))
        counts.append(n)
        builder.add(index, MatchedPair(result, header(T0 + index * 10**8), header(T0 + (index + 1) * 10**8), left, right),
                    latency_ms=10.0 + index, camera0=None, camera1=None)
    paths = builder.finish({"source": "synthetic", "pairs": 20, "mode": "sequence"})
    summary = json.loads(paths["summary"].read_text())
    assert summary["pairs"] == 20
    assert summary["statistics"]["matches_per_pair"]["median"] == pytest.approx(float(np.median(counts)))
    assert summary["statistics"]["latency_ms"]["max"] == pytest.approx(29.0)
    assert summary["statistics"]["geometry"] == {"fundamental": 20}
    # The first 200 matches are true correspondences: ratio 1 while n <= 200, then 200 / n.
    assert summary["statistics"]["inlier_ratio"]["min"] == pytest.approx(200 / 250, abs=0.03)
    assert summary["thumbnails"] == [0, 10, 13, 19]  # evenly spread, plus the pair with the fewest matches
    page = paths["html"].read_text()
    assert page.count("<svg") == 3 and page.count("data:image/jpeg;base64,") == 4
    assert "fewest matches" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing external to load
    rows = paths["pairs"].read_text().strip().splitlines()
    assert len(rows) == 21 and rows[0].startswith("pair,stamp_s")


# ----------------------------------------------------------------------------- with a model


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sequence_replay_of_freiburg(tmp_path, exported_model, freiburg, storage):
    frames, stamps = freiburg
    bag = sequence_bag(tmp_path, storage, frames, stamps)
    config = ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw", storage=storage, model=exported_model,
                          overlay=True, report_dir=tmp_path / "report")
    summary = replay(config, progress=False)
    assert summary.ended == "completed"
    assert (summary.images, summary.pairs, summary.matches_written, summary.overlays_written) == (17, 16, 16, 16)

    from coarse_loftr_ros.matching.matcher import Matcher

    direct = Matcher(exported_model)
    direct.match_next(frames[0])
    out = read_bag(tmp_path / "out")
    assert len(out["/matches"]) == 16 and len(out["/matches/overlay/compressed"]) == 16
    for i, (log_time, msg) in enumerate(out["/matches"]):
        assert log_time == stamps[i + 1] + LOG_DELAY_NS  # the log time of the image that completed the pair
        assert stamp_ns(msg.header) == stamps[i + 1] and stamp_ns(msg.header1) == stamps[i + 1]
        assert stamp_ns(msg.header0) == stamps[i]
        assert msg.header.frame_id == "camera"
        assert (msg.image0_width, msg.image0_height, msg.image1_width, msg.image1_height) == (640, 480, 640, 480)
        assert msg.backend == "onnxruntime" and msg.latency_ms > 0
        expected = direct.match_next(frames[i + 1])
        got = result_from_match_array(msg)
        assert_same_matches(got, expected)
        assert len(got) > 100
    overlay = out["/matches/overlay/compressed"][0][1]
    assert cv2.imdecode(np.asarray(overlay.data), cv2.IMREAD_COLOR).shape == (480, 1280, 3)

    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert report["pairs"] == 16 and report["statistics"]["geometry"] == {"fundamental": 16}
    assert report["statistics"]["inlier_ratio"]["median"] > 0.3  # a hand-held camera in a static room
    assert len((tmp_path / "report" / "pairs.csv").read_text().strip().splitlines()) == 17


def stereo_bag(tmp_path: Path, storage: str, left: np.ndarray, right: np.ndarray, with_info: bool) -> tuple[Path, list]:
    """8 stereo pairs at 10 Hz: camera 1 stamped 3 ms after camera 0 (within the 20 ms slop), as JPEG;
    one extra camera-0 frame with no partner; an unsupported encoding on one camera-1 frame."""
    messages, expected = [], []
    K = np.array([[700.0, 0, left.shape[1] / 2], [0, 700.0, left.shape[0] / 2], [0, 0, 1]])
    size = (left.shape[1], left.shape[0])
    for i in range(8):
        s0 = T0 + i * 100_000_000
        s1 = s0 + 3_000_000
        messages.append(("/stereo/left/image_raw/compressed", compressed_msg(left, s0, "left"), s0 + 1_000_000))
        if i == 5:
            bad = image_msg(np.zeros((right.shape[0], right.shape[1] * 4), np.uint8), s1, "right", encoding="32FC1")
            messages.append(("/stereo/right/image_raw", bad, s1 + 1_000_000))
        else:
            messages.append(("/stereo/right/image_raw", image_msg(right, s1, "right"), s1 + 1_000_000))
            expected.append((s0, s1, s1 + 1_000_000))
        if with_info and i == 0:
            messages.append(("/stereo/left/camera_info", camera_info_msg(K, size, s0, "left"), s0 + 1))
            messages.append(("/stereo/right/camera_info", camera_info_msg(K, size, s1, "right"), s1 + 2))
    lonely = T0 + 8 * 100_000_000 + 50_000_000
    messages.append(("/stereo/left/image_raw/compressed", compressed_msg(left, lonely, "left"), lonely))
    messages.sort(key=lambda m: m[2])
    return write_bag(tmp_path / "stereo", storage, messages), expected


@pytest.mark.parametrize("storage, with_info", [("sqlite3", True), ("mcap", False)])
def test_stereo_replay_of_the_motorcycle_pair(tmp_path, exported_model, motorcycle, storage, with_info):
    left, right, _ = motorcycle
    bag, expected = stereo_bag(tmp_path, storage, left, right, with_info)
    config = ReplayConfig(bag, tmp_path / "out", image0_topic="/stereo/left/image_raw/compressed",
                          image1_topic="/stereo/right/image_raw", model=exported_model, storage=storage,
                          report_dir=tmp_path / "report")
    summary = replay(config, progress=False)
    assert summary.pairs == 7 and summary.skipped == {"unsupported encoding '32FC1'": 1}
    assert summary.unpaired_images == 1  # the last camera-0 frame
    assert summary.camera_info_topics == (["/stereo/left/camera_info", "/stereo/right/camera_info"] if with_info else [None, None])
    out = read_bag(tmp_path / "out")["/matches"]
    assert [(stamp_ns(m.header0), stamp_ns(m.header1), t) for t, m in out] == expected
    assert all(m.header0.frame_id == "left" and m.header.frame_id == "right" for _, m in out)
    assert all((m.image0_width, m.image0_height) == (left.shape[1], left.shape[0]) for _, m in out)
    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert report["statistics"]["geometry"] == ({"essential": 7} if with_info else {"fundamental": 7})
    assert report["statistics"]["inlier_ratio"]["median"] > 0.5  # a rectified stereo pair of a real scene


@pytest.fixture
def ctrl_c_reaches_us():
    """SIGINT handled as in a terminal's foreground job (a background job starts with it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_ctrl_c_leaves_a_valid_output_bag(tmp_path, exported_model, freiburg, storage, ctrl_c_reaches_us):
    frames, stamps = freiburg
    bag = sequence_bag(tmp_path, "mcap", frames[:10], stamps[:10])

    def press_ctrl_c(index, matched):
        if index == 3:
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, handled as a terminal's Ctrl-C is

    config = ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw", model=exported_model, storage=storage,
                          overlay=True, report_dir=tmp_path / "report")
    summary = replay(config, on_pair=press_ctrl_c, progress=False)
    assert summary.ended == "interrupted" and summary.pairs == 4
    out = read_bag(tmp_path / "out")
    assert len(out["/matches"]) == 4 and len(out["/matches/overlay/compressed"]) == 4
    assert [stamp_ns(m.header) for _, m in out["/matches"]] == stamps[1:5]
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["ended"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


def test_an_ignored_sigint_stays_ignored(tmp_path, small_frames):
    """A replay started as a background job (SIGINT ignored) neither takes SIGINT nor leaves a handler."""
    bag = sequence_bag(tmp_path, "mcap", small_frames[:3], [i * 100_000_000 for i in range(1, 4)])
    seen = []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        config = ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw")
        replay(config, on_pair=lambda index, matched: seen.append(signal.getsignal(signal.SIGINT)), progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen and all(handler is signal.SIG_IGN for handler in seen)


def test_corrupt_bag_ends_with_an_error_and_keeps_what_was_written(tmp_path, exported_model, freiburg):
    frames, stamps = freiburg
    # zstd-compressed MCAP chunks: damage in the middle is detected where it is read.
    bag = sequence_bag(tmp_path, "mcap", frames, stamps, compression=CompressionMode.STORAGE)
    (storage_file,) = bag.glob("*.mcap")
    size = storage_file.stat().st_size
    with storage_file.open("r+b") as handle:
        handle.seek(size // 2)
        handle.write(bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8)))
    config = ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw", model=exported_model,
                          report_dir=tmp_path / "report")
    with pytest.raises(BagError) as error:
        replay(config, progress=False)
    assert "\n" not in str(error.value) and "truncated or corrupt after" in str(error.value)
    out = read_bag(tmp_path / "out")["/matches"]
    assert 3 <= len(out) < 16
    assert [stamp_ns(m.header) for _, m in out] == stamps[1: len(out) + 1]
    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert report["ended"] == "error" and report["pairs"] == len(out)


def test_image_folder_and_video_sources(tmp_path, exported_model, freiburg):
    frames, stamps = freiburg
    # The folder: the file names are the capture times.
    config = ReplayConfig(FREIBURG, tmp_path / "from_folder", model=exported_model, frame_id="kinect")
    summary = replay(config, progress=False)
    assert summary.pairs == 16
    out = read_bag(tmp_path / "from_folder")["/matches"]
    assert [stamp_ns(m.header) for _, m in out] == stamps[1:]
    assert out[0][1].header.frame_id == "kinect"

    # A video: stamped frame index / fps.
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    for frame in frames[:6]:
        writer.write(frame)
    writer.release()
    summary = replay(ReplayConfig(video, tmp_path / "from_video", model=exported_model), progress=False)
    assert summary.pairs == 5
    out = read_bag(tmp_path / "from_video")["/matches"]
    assert [stamp_ns(m.header) for _, m in out] == [round(i * 1e9 / 15.0) for i in range(1, 6)]
    assert all(len(result_from_match_array(m)) > 100 for _, m in out)

    with pytest.raises(Exception, match="image topics only apply to bags"):
        replay(ReplayConfig(video, tmp_path / "x", image_topic="/camera/image_raw", model=exported_model))


def test_cli_replay_prints_a_summary(tmp_path, exported_model, freiburg, capsys):
    frames, stamps = freiburg
    bag = sequence_bag(tmp_path, "sqlite3", frames[:4], stamps[:4])
    status = cli.main(["replay", str(bag), "-o", str(tmp_path / "out"), "--image-topic", "/camera/image_raw",
                       "--model", str(exported_model), "--storage", "sqlite3", "--matches-topic", "/vo/matches",
                       "--report", str(tmp_path / "report"), "--no-progress"])
    assert status == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("replayed 3 pairs from 4 images") and "3 MatchArray on /vo/matches" in line
    assert len(read_bag(tmp_path / "out")["/vo/matches"]) == 3
    assert (tmp_path / "report" / "report.html").is_file()


# ----------------------------------------------------------------------------- odd and hostile inputs


def test_folder_stamp_rule():
    # EuRoC nanoseconds, milliseconds, microseconds, whole seconds: the unit by magnitude.
    assert folder_stamps(["1403636579763555584", "1403636579813555456"], 30) == (
        [1403636579763555584, 1403636579813555456], "file names as nanoseconds")
    assert folder_stamps(["1403636579763", "1403636579813"], 30) == (
        [1403636579763000000, 1403636579813000000], "file names as milliseconds")
    assert folder_stamps(["1403636579763555"], 30) == ([1403636579763555000], "file names as microseconds")
    assert folder_stamps(["1403636579", "1403636580"], 30) == ([1403636579 * 10**9, 1403636580 * 10**9], "file names as seconds")
    # TUM: decimal seconds, exact.
    assert folder_stamps(["1341847980.722988", "1341847980.754743"], 30)[0] == [1341847980722988000, 1341847980754743000]
    # KITTI: frame indices at --fps; a gap in the numbering stays a gap.
    assert folder_stamps(["000000", "000001", "000003"], 10) == ([0, 100_000_000, 300_000_000], "file names as frame indices at 10 fps")
    # Anything else: natural name order at --fps.
    stamps, rule = folder_stamps(["frame10", "frame2", "frame1"], 4)
    assert stamps == [500_000_000, 250_000_000, 0] and rule == "name order at 4 fps"


def _folder(tmp_path: Path, name: str, files: dict[str, np.ndarray | bytes]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file_name, content in files.items():
        if isinstance(content, bytes):
            (folder / file_name).write_bytes(content)
        else:
            assert cv2.imwrite(str(folder / file_name), content)
    return folder


@pytest.mark.parametrize(
    "names, stamps, rule",
    [
        (["1403636579763555584", "1403636579813555456", "1403636579863555584"], [1403636579763555584, 1403636579813555456, 1403636579863555584], "file names as nanoseconds"),
        (["1403636579763", "1403636579813", "1403636579863"], [1403636579763000000, 1403636579813000000, 1403636579863000000], "file names as milliseconds"),
        (["000000", "000001", "000002"], [0, 100_000_000, 200_000_000], "file names as frame indices at 10 fps"),
    ],
    ids=["euroc_ns", "milliseconds", "kitti_indices"],
)
def test_folders_named_by_stamps_or_indices_replay(tmp_path, exported_model, freiburg, names, stamps, rule):
    frames, _ = freiburg
    folder = _folder(tmp_path, "frames", {f"{n}.png": f for n, f in zip(names, frames)})
    summary = replay(ReplayConfig(folder, tmp_path / "out", model=exported_model, fps=10.0), progress=False)
    assert summary.pairs == 2 and summary.skipped == {}
    assert summary.stamps == rule
    out = read_bag(tmp_path / "out")["/matches"]
    assert [(stamp_ns(m.header0), stamp_ns(m.header)) for _, m in out] == [(stamps[0], stamps[1]), (stamps[1], stamps[2])]


def test_folder_stamps_beyond_ros_time_are_one_line(tmp_path, freiburg):
    frames, _ = freiburg
    folder = _folder(tmp_path, "frames", {"3000000000.png": frames[0], "3000000001.png": frames[1]})  # seconds, year 2065
    with pytest.raises(BagError, match="beyond ROS time") as error:
        replay(ReplayConfig(folder, tmp_path / "out"), progress=False)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (np.full((8, 8), 100, np.uint8), "image too small for the model"),
        (np.full((20, 10000), 100, np.uint8), "image too small for the model"),
        (png_declaring(30000, 30000), "image too large"),
        (np.full((480, 640), 0.5, np.float32), "unreadable image"),  # a float TIFF: no Image encoding holds it
        (b"not an image", "unreadable image"),
    ],
    ids=["8x8", "10000x20", "30000x30000_png", "float_tiff", "text"],
)
def test_a_refused_frame_in_a_folder_keeps_the_previous_frame(tmp_path, exported_model, freiburg, bad, reason):
    """[f0, bad, f1, f2] writes f0-f1 and f1-f2, and counts the bad frame."""
    frames, _ = freiburg
    bad_name = "000001.tif" if isinstance(bad, np.ndarray) and bad.dtype == np.float32 else "000001.png"
    folder = _folder(tmp_path, "frames", {"000000.png": frames[0], bad_name: bad, "000002.png": frames[1], "000003.png": frames[2]})
    summary = replay(ReplayConfig(folder, tmp_path / "out", model=exported_model, fps=10.0), progress=False)
    assert summary.pairs == 2 and summary.images == 4 and summary.skipped == {reason: 1} and summary.sequence_restarts == 0
    assert "\n" not in summary.skip_examples[reason]
    out = read_bag(tmp_path / "out")["/matches"]
    assert [(stamp_ns(m.header0), stamp_ns(m.header)) for _, m in out] == [(0, 200_000_000), (200_000_000, 300_000_000)]
    from coarse_loftr_ros.matching.matcher import Matcher

    sequence = Matcher(exported_model)  # replay matches a sequence as match_next does
    sequence.match_next(frames[0])
    assert_same_matches(result_from_match_array(out[0][1]), sequence.match_next(frames[1]))


def test_a_refused_frame_in_a_bag_keeps_the_previous_frame(tmp_path, exported_model, freiburg):
    frames, stamps = freiburg
    tiny = np.zeros((8, 8), np.uint8)
    bomb = CompressedImage(header=header(stamps[2]), format="png", data=np.frombuffer(png_declaring(30000, 30000), np.uint8))
    messages = [("/camera/image_raw", image_msg(frames[0], stamps[0]), stamps[0]),
                ("/camera/image_raw", image_msg(tiny, stamps[1]), stamps[1]),
                ("/camera/image_raw", image_msg(frames[1], stamps[3]), stamps[3]),
                ("/camera/image_raw", image_msg(frames[2], stamps[4]), stamps[4])]
    bag = write_bag(tmp_path / "in", "mcap", messages[:2] + [("/camera/compressed", bomb, stamps[2])] + messages[2:])
    summary = replay(ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw", model=exported_model), progress=False)
    assert summary.pairs == 2 and summary.skipped == {"image too small for the model": 1} and summary.sequence_restarts == 0
    out = read_bag(tmp_path / "out")["/matches"]
    assert [(stamp_ns(m.header0), stamp_ns(m.header)) for _, m in out] == [(stamps[0], stamps[3]), (stamps[3], stamps[4])]
    # The compressed bomb on its own topic: refused before decoding, the sequence goes on.
    summary = replay(ReplayConfig(bag, tmp_path / "out2", image_topic="/camera/compressed", model=exported_model), progress=False)
    assert summary.pairs == 0 and summary.skipped == {"image too large": 1}


def test_max_image_pixels_reaches_folders_bags_and_videos(tmp_path, exported_model, freiburg):
    frames, stamps = freiburg
    folder = _folder(tmp_path, "frames", {f"{i:06d}.png": f for i, f in enumerate(frames[:3])})
    summary = replay(ReplayConfig(folder, tmp_path / "a", model=exported_model, max_image_pixels=640 * 480 - 1), progress=False)
    assert summary.pairs == 0 and summary.skipped == {"image too large": 3}
    assert "640x480" in summary.skip_examples["image too large"]
    bag = sequence_bag(tmp_path, "mcap", frames[:3], stamps[:3])
    summary = replay(ReplayConfig(bag, tmp_path / "b", image_topic="/camera/image_raw", model=exported_model, max_image_pixels=100_000), progress=False)
    assert summary.pairs == 0 and summary.skipped == {"image too large": 3}
    assert replay(ReplayConfig(bag, tmp_path / "c", image_topic="/camera/image_raw", model=exported_model, max_image_pixels=0), progress=False).pairs == 2
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    for frame in frames[:2]:
        writer.write(frame)
    writer.release()
    with pytest.raises(Exception, match="video .* is 640x480 = 0.307 megapixels, above the limit"):
        replay(ReplayConfig(video, tmp_path / "d", model=exported_model, max_image_pixels=100_000), progress=False)
    with pytest.raises(Exception, match="--max-image-pixels must be a whole number >= 0"):
        replay(ReplayConfig(video, tmp_path / "e", max_image_pixels=-1))


def test_cli_replay_has_max_image_pixels(tmp_path, exported_model, freiburg, capsys):
    frames, _ = freiburg
    folder = _folder(tmp_path, "frames", {f"{i:06d}.png": f for i, f in enumerate(frames[:3])})
    status = cli.main(["replay", str(folder), "-o", str(tmp_path / "out"), "--model", str(exported_model),
                       "--max-image-pixels", "300000", "--no-progress"])
    assert status == 0
    assert "skipped 3 (image too large: 3)" in capsys.readouterr().out
    # The default is imageio's; a negative value is a one-line usage error (exit 2).
    from coarse_loftr_ros.imageio import DEFAULT_MAX_PIXELS

    for command in (["replay", str(folder), "-o", str(tmp_path / "x")], ["match", "a.png", "b.png"]):
        assert cli.build_parser().parse_args(command).max_image_pixels == DEFAULT_MAX_PIXELS
        with pytest.raises(SystemExit) as exit_info:
            cli.main(command + ["--max-image-pixels", "-5"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "--max-image-pixels" in error
    status = cli.main(["match", str(folder / "000000.png"), str(folder / "000001.png"), "--model", str(exported_model),
                       "--max-image-pixels", "300000"])
    assert status == 2 and "640x480 = 0.307 megapixels, above the limit of 0.3 megapixels" in capsys.readouterr().err


def _camera_info(d: list[float], model: str = "plumb_bob", fx: float = 500.0) -> object:
    info = camera_info_msg(np.array([[fx, 0, 320], [0, 500.0, 240], [0, 0, 1]]), (640, 480), T0)
    info.d, info.distortion_model = np.asarray(d, np.float64), model
    return info


def test_camera_info_distortion_of_any_length_opencv_takes():
    K, kp0, kp1 = synthetic_two_view(300, 100)
    d5 = [-0.2, 0.05, 0.001, -0.002, 0.0]
    reference = CameraModel.from_camera_info(_camera_info(d5))
    for d in (d5[:3], d5[:4], d5 + [0.0], d5 + [0.0, 0.0, 0.0], d5 + [0.0] * 9, d5 + [0.0] * 20):
        camera = CameraModel.from_camera_info(_camera_info(d))
        np.testing.assert_allclose(camera.normalise(kp0), reference.normalise(kp0) if len(d) >= 4 else
                                   CameraModel.from_camera_info(_camera_info(d5[:3] + [0.0, 0.0])).normalise(kp0), atol=1e-9)
        assert camera.D.size in (4, 5, 8, 12, 14)
    # 3 coefficients are k1, k2, p1; 6 are k1, k2, p1, p2, k3, k4 (rational_polynomial's order).
    np.testing.assert_array_equal(opencv_distortion("plumb_bob", np.array([0.1, 0.2, 0.3])), [0.1, 0.2, 0.3, 0.0])
    np.testing.assert_array_equal(opencv_distortion("rational_polynomial", np.arange(1.0, 7.0)), [1, 2, 3, 4, 5, 6, 0, 0])
    assert opencv_distortion("equidistant", np.array([0.1, 0.01, 0.0])).tolist() == [0.1, 0.01, 0.0, 0.0]
    assert opencv_distortion("", np.zeros(5)).size == 0  # no distortion, whatever the model name
    camera = CameraModel.from_camera_info(_camera_info([0.01, 0.002, 0.0, 0.0, 0.0, 0.001], "rational_polynomial"))
    inliers, method = geometric_inliers(kp0, kp1, camera, camera, threshold_px=2.0)
    assert method == "essential" and inliers > 250


@pytest.mark.parametrize(
    "d, model, fx, message",
    [
        ([0.1] * 15, "rational_polynomial", 500.0, "15 coefficients, 15 in use; OpenCV takes at most 14"),
        ([0.1] * 5, "equidistant", 500.0, "at most 4"),
        ([0.1, 0.0], "kannala_brandt", 500.0, "distortion model 'kannala_brandt' is not one of"),
        ([float("nan"), 0.0], "plumb_bob", 500.0, "is not finite"),
        ([0.0] * 5, "plumb_bob", float("inf"), "fx=inf"),
        ([0.0] * 5, "plumb_bob", -500.0, "fx=-500"),
        ([0.0] * 5, "plumb_bob", 0.0, "fx=0"),
    ],
)
def test_unusable_camera_info_is_one_line(d, model, fx, message):
    with pytest.raises(CameraInfoError, match=re.escape(message)) as error:
        CameraModel.from_camera_info(_camera_info(d, model, fx))
    assert "\n" not in str(error.value) and "--no-camera-info" in str(error.value)


def test_uncalibrated_camera_info_is_none():
    info = _camera_info([0.0] * 5)
    info.k = np.zeros(9)
    assert CameraModel.from_camera_info(info) is None


def test_report_with_odd_and_bad_camera_info(tmp_path, exported_model, motorcycle):
    """A 3-coefficient CameraInfo gives essential-matrix inliers; fx = inf is skipped with one
    line and counted, and the pairs fall back to the fundamental matrix (never all 'inliers')."""
    left, right, _ = motorcycle
    size = (left.shape[1], left.shape[0])
    K = np.array([[700.0, 0, size[0] / 2], [0, 700.0, size[1] / 2], [0, 0, 1]])
    results = {}
    for name, d, fx in (("d3", [0.001, 0.0, 0.0], 700.0), ("inf", [0.0] * 5, float("inf"))):
        info = camera_info_msg(K, size, T0)
        info.k = np.array([[fx, 0, size[0] / 2], [0, 700.0, size[1] / 2], [0, 0, 1]]).reshape(-1)
        info.d = np.asarray(d, np.float64)
        messages = [("/cam/camera_info", info, T0 - 1)]
        for i in range(3):
            stamp = T0 + i * 100_000_000
            messages.append(("/cam/image_raw", image_msg(left if i % 2 == 0 else right, stamp), stamp))
        bag = write_bag(tmp_path / f"in_{name}", "mcap", messages)
        summary = replay(ReplayConfig(bag, tmp_path / f"out_{name}", image_topic="/cam/image_raw", model=exported_model,
                                      report_dir=tmp_path / f"report_{name}"), progress=False)
        results[name] = (summary, json.loads((tmp_path / f"report_{name}" / "summary.json").read_text()))
    summary, report = results["d3"]
    assert summary.pairs == 2 and summary.skipped == {} and report["statistics"]["geometry"] == {"essential": 2}
    summary, report = results["inf"]
    assert summary.pairs == 2 and summary.skipped == {"invalid camera_info": 1}
    assert "fx=inf" in summary.skip_examples["invalid camera_info"]
    assert report["statistics"]["geometry"] == {"fundamental": 2}
    assert report["statistics"]["inlier_ratio"]["max"] < 1.0


def test_16_bit_folder_images_replay_like_8_bit(tmp_path, exported_model, freiburg):
    """8-bit data stored in 16-bit PNGs (colour and mono) matches as the 8-bit files do."""
    frames, _ = freiburg
    eight = _folder(tmp_path, "eight", {f"{i:06d}.png": f for i, f in enumerate(frames[:2])})
    sixteen = _folder(tmp_path, "sixteen", {"000000.png": frames[0].astype(np.uint16),
                                              "000001.png": cv2.cvtColor(frames[1], cv2.COLOR_BGR2GRAY).astype(np.uint16)})
    replay(ReplayConfig(eight, tmp_path / "out8", model=exported_model), progress=False)
    replay(ReplayConfig(sixteen, tmp_path / "out16", model=exported_model), progress=False)
    (_, m8), = read_bag(tmp_path / "out8")["/matches"]
    (_, m16), = read_bag(tmp_path / "out16")["/matches"]
    assert len(result_from_match_array(m8)) > 100
    assert_same_matches(result_from_match_array(m16), result_from_match_array(m8), confidence_atol=0.02, keypoint_atol=1.0)


# ----------------------------------------------------------------------------- soak


try:
    _GLIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: plain RSS
    _GLIBC = None


def _rss_bytes() -> int:
    """Resident memory after handing glibc's free heap pages back (``malloc_trim``), so that
    the samples follow live memory rather than how much freed memory the allocator keeps."""
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, released_checkpoint) -> Path:
    """The released weights exported at a 160x128 input: fast enough for thousands of pairs."""
    pytest.importorskip("torch")
    from coarse_loftr_train.checkpoint import load_model
    from coarse_loftr_train.export import export_onnx

    model = load_model(released_checkpoint)
    model.config = model.config.with_input_size(160, 128)
    return export_onnx(model, tmp_path_factory.mktemp("small") / "student_160x128.onnx")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
def test_soak_memory_stays_flat_over_thousands_of_frames(tmp_path, small_model, freiburg):
    frames, _ = freiburg
    n = 3000
    # Small real frames: 160x120 grey crops wandering over the Freiburg sequence.
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]

    def bag_messages():  # generated one at a time: the test holds no copy of the bag either
        for i in range(n):
            y, x = 40 + (i * 7) % 300, 40 + (i * 11) % 440
            crop = np.ascontiguousarray(grey[(i // 40) % len(grey)][y: y + 120, x: x + 160])
            stamp = T0 + i * 33_333_333
            yield "/camera/image_raw", image_msg(crop, stamp), stamp

    bag = write_bag(tmp_path / "long", "mcap", bag_messages())
    bag_size = sum(p.stat().st_size for p in bag.iterdir())

    from coarse_loftr_ros.matching.matcher import Matcher

    matcher = Matcher(small_model)
    matcher.match(grey[0][:120, :160], grey[1][:120, :160])  # warm up ONNX Runtime's memory before the baseline
    samples: list[int] = []
    baseline = _rss_bytes()

    def sample(index, matched):
        if index % 50 == 0:
            samples.append(_rss_bytes())

    summary = replay(ReplayConfig(bag, tmp_path / "out", image_topic="/camera/image_raw", report_dir=tmp_path / "report"),
                     matcher=matcher, on_pair=sample, progress=False)
    assert summary.pairs == n - 1
    samples_mb = np.array(samples) / 2**20
    early = samples_mb[2:8].mean()  # after warm-up (pairs 100-350)
    late = samples_mb[-6:].mean()  # the last 300 pairs
    print(f"resident memory {early:.1f} -> {late:.1f} MiB over {n} frames")
    assert late - early < 8.0, f"resident memory grew {late - early:.1f} MiB over {n} frames"
    # About 16 MiB over the baseline here (reader, 1 MiB write chunks, RANSAC); the bag is about 55 MiB.
    assert (max(samples) - baseline) < bag_size / 2, "replay holds a large part of the bag in memory"
    assert len(read_bag(tmp_path / "out")["/matches"]) == n - 1


def test_replay_modules_import_light_and_the_replay_path_never_loads_torch(tmp_path, exported_model, freiburg):
    import subprocess
    import sys

    frames, stamps = freiburg
    bag = sequence_bag(tmp_path, "mcap", frames[:3], stamps[:3])
    probe = (
        "import sys\n"
        "import coarse_loftr_ros.tools.replay, coarse_loftr_ros.tools.report, coarse_loftr_ros.commands.replay\n"
        "light = sorted({m.split('.')[0] for m in sys.modules} & {'rosbags', 'tqdm', 'torch', 'onnxruntime'})\n"
        "from coarse_loftr_ros import cli\n"
        f"status = cli.main(['replay', {str(bag)!r}, '-o', {str(tmp_path / 'out')!r}, '--image-topic', '/camera/image_raw',"
        f" '--model', {str(exported_model)!r}, '--no-progress'])\n"
        "print(status, ','.join(light), ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
    status, light, loaded = process.stdout.strip().splitlines()[-1].split(" ", 2)
    assert status == "0" and light == ""  # rosbags, tqdm and onnxruntime load only when a replay runs
    assert {"rosbags", "onnxruntime"} <= set(loaded.split())
    assert not set(loaded.split()) & {"torch", "tensorrt", "pycuda", "rclpy", "coarse_loftr_train", "matplotlib"}

"""MatchArray fields from a MatchResult, and a real CDR round trip through rosbags."""

from __future__ import annotations

import array
import struct
from pathlib import Path

import numpy as np
import pytest

from coarse_loftr_ros.errors import CoarseLoftrError
from coarse_loftr_ros.ros.match_array import (
    MATCH_ARRAY_TYPENAME,
    _definition_candidates,
    match_array_definition,
    match_array_fields,
    match_array_typestore,
    result_from_match_array,
    rosbags_camera_info,
    rosbags_header,
    rosbags_match_array,
)
from coarse_loftr_ros.ros.camera_info import PinholeCamera
from coarse_loftr_ros.matching.result import MatchResult

pytest.importorskip("rosbags")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def result() -> MatchResult:
    rng = np.random.default_rng(7)
    n = 37
    return MatchResult(
        keypoints0=(rng.random((n, 2)) * [752, 480]).astype(np.float32),
        keypoints1=(rng.random((n, 2)) * [640, 360]).astype(np.float32),
        confidence=np.sort(rng.random(n).astype(np.float32))[::-1].copy(),
        cells0=rng.integers(0, 1200, n).astype(np.int32),
        cells1=rng.integers(0, 1200, n).astype(np.int32),
        image0_size=(752, 480),
        image1_size=(640, 360),
        grid_size=(40, 30),
        backend="onnxruntime",
        model="coarse_loftr_student.onnx",
        timing_ms={"total": 12.5},
    )


def test_fields_for_rclpy_use_array_module_arrays(result):
    h0, h1 = object(), object()
    fields = match_array_fields(result, h0, h1, latency_ms=21.5)
    assert fields["header"] is h1 and fields["header0"] is h0 and fields["header1"] is h1
    for name in ("keypoints0", "keypoints1", "confidence"):
        assert isinstance(fields[name], array.array) and fields[name].typecode == "f"
    for name in ("cells0", "cells1"):
        assert isinstance(fields[name], array.array) and fields[name].itemsize == 4
    # Flattened as [x0, y0, x1, y1, ...].
    assert fields["keypoints0"][0] == result.keypoints0[0, 0] and fields["keypoints0"][1] == result.keypoints0[0, 1]
    assert fields["keypoints1"][2 * 36 + 1] == result.keypoints1[36, 1]
    assert list(fields["cells1"]) == result.cells1.tolist()
    assert (fields["image0_width"], fields["image0_height"], fields["image1_width"], fields["image1_height"]) == (
        752,
        480,
        640,
        360,
    )
    assert (fields["grid_width"], fields["grid_height"]) == (40, 30)
    assert fields["model"] == "coarse_loftr_student.onnx" and fields["backend"] == "onnxruntime"
    assert fields["latency_ms"] == 21.5
    assert fields["camera_info0"] is None and fields["camera_info1"] is None  # passed through as given
    info0, info1 = object(), object()
    fields = match_array_fields(result, h0, h1, camera_info0=info0, camera_info1=info1)
    assert fields["camera_info0"] is info0 and fields["camera_info1"] is info1


def test_fields_cover_exactly_the_message_definition(result):
    definition = match_array_definition()
    declared = [
        line.split()[1]
        for line in definition.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" not in line
    ]
    assert list(match_array_fields(result, None, None)) == declared


def test_definition_is_the_repository_file():
    assert match_array_definition() == (REPO / "msg" / "MatchArray.msg").read_text()


def test_definition_is_searched_in_ament_prefixes(monkeypatch, tmp_path):
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    candidates = _definition_candidates()
    assert tmp_path / "b" / "share" / "coarse_loftr_ros" / "msg" / "MatchArray.msg" in candidates


def test_empty_result(result):
    empty = MatchResult(
        keypoints0=np.zeros((0, 2), np.float32),
        keypoints1=np.zeros((0, 2), np.float32),
        confidence=np.zeros(0, np.float32),
        cells0=np.zeros(0, np.int32),
        cells1=np.zeros(0, np.int32),
        image0_size=(640, 480),
        image1_size=(640, 480),
        grid_size=(40, 30),
    )
    fields = match_array_fields(empty, None, None)
    assert len(fields["keypoints0"]) == 0 and len(fields["confidence"]) == 0
    assert len(result_from_match_array(fields)) == 0


def test_inconsistent_result_is_rejected(result):
    result.cells0 = result.cells0[:-1]
    with pytest.raises(ValueError, match="cells0"):
        match_array_fields(result, None, None)
    with pytest.raises(ValueError, match="arrays"):
        match_array_fields(result, None, None, arrays="list")


def test_unknown_distribution_is_one_line_error():
    with pytest.raises(CoarseLoftrError, match="unknown ROS 2 distribution 'rolling-ish'"):
        match_array_typestore("rolling-ish")


class CdrReader:
    """A minimal little-endian CDR reader, independent of rosbags, to check the wire layout."""

    def __init__(self, raw: bytes) -> None:
        assert raw[:4] == b"\x00\x01\x00\x00"  # CDR_LE encapsulation header
        self.data, self.pos = raw[4:], 0

    def _take(self, fmt: str):
        size = struct.calcsize(fmt)
        self.pos += -self.pos % min(size, 8)
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value

    def uint32(self) -> int:
        return self._take("I")

    def int32(self) -> int:
        return self._take("i")

    def float32(self) -> float:
        return self._take("f")

    def string(self) -> str:
        length = self.uint32()
        text = self.data[self.pos : self.pos + length - 1].decode()
        self.pos += length
        return text

    def sequence(self, fmt: str) -> np.ndarray:
        count = self.uint32()
        self.pos += -self.pos % 4
        values = np.frombuffer(self.data, dtype="<" + fmt, count=count, offset=self.pos)
        self.pos += 4 * count
        return values

    def header(self) -> tuple[int, int, str]:
        return self.int32(), self.uint32(), self.string()

    def float64s(self, count: int | None = None) -> np.ndarray:
        """A fixed-size float64 array (``count``), or a sequence (its length first)."""
        if count is None:
            count = self.uint32()
        self.pos += -self.pos % 8
        values = np.frombuffer(self.data, dtype="<f8", count=count, offset=self.pos)
        self.pos += 8 * count
        return values

    def camera_info(self) -> dict:
        """sensor_msgs/CameraInfo in .msg order."""
        info = {"header": self.header(), "height": self.uint32(), "width": self.uint32(),
                "distortion_model": self.string(), "d": self.float64s(), "k": self.float64s(9),
                "r": self.float64s(9), "p": self.float64s(12), "binning": (self.uint32(), self.uint32())}
        info["roi"] = (self.uint32(), self.uint32(), self.uint32(), self.uint32(), self.data[self.pos])
        self.pos += 1
        return info


KITTI = PinholeCamera(1226, 370, 707.0912, 707.0912, 601.8873, 183.1104)


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_cdr_round_trip_through_rosbags(result, distro):
    store = match_array_typestore(distro)
    header0 = rosbags_header(store, 1_700_000_000_123_456_789, "cam0_optical")
    header1 = rosbags_header(store, 1_700_000_000_133_456_789, "cam1_optical")
    camera_info1 = rosbags_camera_info(store, header1, KITTI)
    msg = rosbags_match_array(store, result, header0, header1, latency_ms=8.25, camera_info1=camera_info1)
    raw = bytes(store.serialize_cdr(msg, MATCH_ARRAY_TYPENAME))

    # Independent reading of the wire format, field by field in .msg order.
    reader = CdrReader(raw)
    assert reader.header() == (1_700_000_000, 133_456_789, "cam1_optical")  # header = image 1
    assert reader.header() == (1_700_000_000, 123_456_789, "cam0_optical")
    assert reader.header() == (1_700_000_000, 133_456_789, "cam1_optical")
    assert [reader.uint32() for _ in range(6)] == [752, 480, 640, 360, 40, 30]
    np.testing.assert_array_equal(reader.sequence("f4"), result.keypoints0.reshape(-1))
    np.testing.assert_array_equal(reader.sequence("f4"), result.keypoints1.reshape(-1))
    np.testing.assert_array_equal(reader.sequence("f4"), result.confidence)
    np.testing.assert_array_equal(reader.sequence("i4"), result.cells0)
    np.testing.assert_array_equal(reader.sequence("i4"), result.cells1)
    assert reader.string() == "coarse_loftr_student.onnx"
    assert reader.string() == "onnxruntime"
    assert reader.float32() == 8.25
    zero = reader.camera_info()  # camera_info0: none given, the default CameraInfo
    assert zero["header"] == (0, 0, "") and (zero["width"], zero["height"]) == (0, 0)
    assert not zero["k"].any() and len(zero["d"]) == 0 and zero["distortion_model"] == ""
    info = reader.camera_info()
    assert info["header"] == (1_700_000_000, 133_456_789, "cam1_optical")
    assert (info["width"], info["height"], info["distortion_model"]) == (1226, 370, "plumb_bob")
    np.testing.assert_array_equal(info["k"], [707.0912, 0, 601.8873, 0, 707.0912, 183.1104, 0, 0, 1])
    np.testing.assert_array_equal(info["p"], [707.0912, 0, 601.8873, 0, 0, 707.0912, 183.1104, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(info["r"], np.eye(3).reshape(-1))
    np.testing.assert_array_equal(info["d"], np.zeros(5))
    assert reader.pos == len(raw) - 4

    decoded = store.deserialize_cdr(raw, MATCH_ARRAY_TYPENAME)
    back = result_from_match_array(decoded)
    for name in ("keypoints0", "keypoints1", "confidence", "cells0", "cells1"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert back.image0_size == result.image0_size and back.image1_size == result.image1_size
    assert back.grid_size == result.grid_size and back.model == result.model and back.backend == result.backend
    assert decoded.header1.frame_id == "cam1_optical" and decoded.latency_ms == 8.25
    np.testing.assert_array_equal(decoded.camera_info1.k.reshape(3, 3), KITTI.matrix)
    assert not decoded.camera_info0.k.any()


def test_rosbag2_file_round_trip(result, tmp_path):
    from rosbags.rosbag2 import Reader, Writer

    store = match_array_typestore("humble")
    bag = tmp_path / "matches_bag"
    stamps = [1_000_000_000 + i * 33_000_000 for i in range(3)]
    with Writer(bag, version=8) as writer:
        connection = writer.add_connection("/matcher/matches", MATCH_ARRAY_TYPENAME, typestore=store)
        for stamp in stamps:
            header = rosbags_header(store, stamp, "camera")
            msg = rosbags_match_array(store, result, header, header)
            writer.write(connection, stamp, store.serialize_cdr(msg, MATCH_ARRAY_TYPENAME))
    with Reader(bag) as reader:
        (connection,) = reader.connections
        assert connection.msgtype == MATCH_ARRAY_TYPENAME
        read = [(t, store.deserialize_cdr(raw, connection.msgtype)) for connection, t, raw in reader.messages()]
    assert [t for t, _ in read] == stamps
    for t, msg in read:
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == t
        np.testing.assert_array_equal(result_from_match_array(msg).keypoints1, result.keypoints1)

"""Image messages through conversion, the sequence policy and the real Matcher (what the node runs)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from coarse_loftr_ros.errors import ImageError
from coarse_loftr_ros.imageio import ImageTooLargeError
from coarse_loftr_ros.matching.matcher import Matcher
from coarse_loftr_ros.ros.message_matching import MessageMatcher
from coarse_loftr_ros.preprocess import ImageSizeError
from hostile_images import png_declaring
from matching import MODEL_ONLY, assert_same_matches

typesys = pytest.importorskip("rosbags.typesys")
STORE = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]

PERIOD_NS = 33_333_333


def header(index: int, frame_id: str = "camera") -> object:
    sec, nanosec = divmod(1_700_000_000_000_000_000 + index * PERIOD_NS, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(bgr: np.ndarray, index: int, encoding: str = "bgr8") -> object:
    """A real sensor_msgs/Image, through a CDR round trip as a subscriber would get it."""
    pixels = {"bgr8": bgr, "rgb8": bgr[:, :, ::-1], "mono8": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)}[encoding]
    pixels = np.ascontiguousarray(pixels)
    row = pixels.shape[1] * (1 if pixels.ndim == 2 else 3)
    msg = Image(
        header=header(index),
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=row,
        data=pixels.reshape(-1).view(np.uint8),
    )
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)


@pytest.fixture(scope="module")
def matcher(exported_model) -> Matcher:
    return Matcher(exported_model, **MODEL_ONLY)


@pytest.fixture(scope="module")
def frames(freiburg_frames) -> list[np.ndarray]:
    return freiburg_frames[:8]


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8"])
def test_stereo_messages_give_the_matcher_result(matcher, motorcycle, encoding):
    left, right = cv2.resize(motorcycle[0], (640, 480)), cv2.resize(motorcycle[1], (640, 480))
    streams = MessageMatcher(matcher)
    matched = streams.match_stereo(image_message(left, 0, encoding), image_message(right, 0, encoding))
    assert_same_matches(matched.result, matcher.match(left, right))
    assert len(matched.result) > 100
    assert matched.header0.stamp == matched.header1.stamp
    np.testing.assert_array_equal(matched.image0, left)


def test_compressed_stereo_pair(matcher, motorcycle):
    left, right = cv2.resize(motorcycle[0], (640, 480)), cv2.resize(motorcycle[1], (640, 480))
    messages = [
        CompressedImage(header=header(0), format="bgr8; png compressed bgr8", data=cv2.imencode(".png", image)[1].reshape(-1))
        for image in (left, right)
    ]
    matched = MessageMatcher(matcher).match_stereo(*messages)
    assert_same_matches(matched.result, matcher.match(left, right))


def test_sequence_against_the_previous_frame(matcher, frames):
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY))
    assert streams.uses_match_next
    assert streams.match_sequence(image_message(frames[0], 0)) is None
    for i in range(1, 5):
        matched = streams.match_sequence(image_message(frames[i], i, "mono8" if i % 2 else "bgr8"))
        assert streams.last_restart is None
        assert matched.header0.stamp == header(i - 1).stamp and matched.header1.stamp == header(i).stamp
        assert_same_matches(matched.result, matcher.match(frames[i - 1], frames[i]))


def test_sequence_with_keyframes_every_three_frames(matcher, frames):
    streams = MessageMatcher(matcher, keyframe_every=3)
    references = []
    for i in range(8):
        matched = streams.match_sequence(image_message(frames[i], i))
        if matched is not None:
            references.append(next(j for j in range(8) if header(j).stamp == matched.header0.stamp))
            if i == 5:
                assert_same_matches(matched.result, matcher.match(frames[3], frames[5]))
    assert references == [0, 0, 0, 3, 3, 3, 6]


def test_bad_message_is_skipped_without_breaking_the_sequence(matcher, frames):
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY))
    streams.match_sequence(image_message(frames[0], 0))
    broken = image_message(frames[1], 1)
    broken.data = broken.data[: len(broken.data) // 2]  # truncated
    with pytest.raises(ImageError, match="truncated"):
        streams.match_sequence(broken)
    matched = streams.match_sequence(image_message(frames[2], 2))
    assert matched.header0.stamp == header(0).stamp  # still paired with the last good frame
    assert_same_matches(matched.result, matcher.match(frames[0], frames[2]))


REFUSED_FRAMES = {
    "8x8": (lambda: image_message(np.zeros((8, 8, 3), np.uint8), 1), ImageSizeError, "smaller than one coarse cell"),
    "10000x20": (lambda: image_message(np.full((20, 10000, 3), 90, np.uint8), 1), ImageSizeError, "less than one coarse cell"),
    "bomb": (
        lambda: CompressedImage(header=header(1), format="png", data=np.frombuffer(png_declaring(30000, 30000), np.uint8)),
        ImageTooLargeError,
        "30000x30000",
    ),
}


@pytest.mark.parametrize("name", REFUSED_FRAMES)
@pytest.mark.parametrize("keyframe_every", [1, 3])
def test_a_frame_the_matcher_refuses_keeps_the_previous_frame(matcher, frames, name, keyframe_every):
    """[f0, refused, f2, f3]: f0-f2 and f2-f3 (keyframes every 3: f0-f2, f0-f3), as Matcher.match_next does."""
    make, error_type, message = REFUSED_FRAMES[name]
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY), keyframe_every=keyframe_every)
    assert streams.match_sequence(image_message(frames[0], 0)) is None
    with pytest.raises(error_type, match=message):
        streams.match_sequence(make())
    matched = streams.match_sequence(image_message(frames[2], 2))
    assert matched.header0.stamp == header(0).stamp  # still paired with the last good frame
    assert_same_matches(matched.result, matcher.match(frames[0], frames[2]))
    matched = streams.match_sequence(image_message(frames[3], 3))
    reference = 2 if keyframe_every == 1 else 0
    assert matched.header0.stamp == header(reference).stamp
    assert_same_matches(matched.result, matcher.match(frames[reference], frames[3]))
    assert streams.pairer.resets == 0


def test_a_refused_first_frame_leaves_no_sequence(matcher, frames):
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY))
    with pytest.raises(ImageSizeError):
        streams.match_sequence(image_message(np.zeros((8, 8, 3), np.uint8), 0))
    assert streams.match_sequence(image_message(frames[1], 1)) is None
    assert streams.match_sequence(image_message(frames[2], 2)).header0.stamp == header(1).stamp


def test_max_pixels_reaches_the_conversion(matcher, frames):
    streams = MessageMatcher(matcher, max_pixels=640 * 480 - 1)
    with pytest.raises(ImageTooLargeError, match="640x480"):
        streams.match_stereo(image_message(frames[0], 0), image_message(frames[1], 0))
    assert len(MessageMatcher(matcher, max_pixels=0).match_stereo(image_message(frames[0], 0), image_message(frames[1], 0)).result) > 100


def test_time_going_backwards_restarts_the_sequence(matcher, frames):
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY))
    for i in (5, 6):
        streams.match_sequence(image_message(frames[i], i))
    assert streams.match_sequence(image_message(frames[0], 0)) is None  # bag looped
    assert streams.last_restart == "stamp_backwards"
    matched = streams.match_sequence(image_message(frames[1], 1))
    assert_same_matches(matched.result, matcher.match(frames[0], frames[1]))


def _restamped(msg, seconds_later: float, frame_id: str | None = None):
    """``msg`` with its stamp moved ``seconds_later`` (and another frame_id)."""
    stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec + int(round(seconds_later * 1e9))
    msg.header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                        frame_id=msg.header.frame_id if frame_id is None else frame_id)
    return msg


def _larger(msg, factor: int):
    """The same frame ``factor`` times larger (640x480 -> 1280x960), same header."""
    pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    large = np.ascontiguousarray(cv2.resize(pixels, (msg.width * factor, msg.height * factor)))
    return Image(header=msg.header, height=large.shape[0], width=large.shape[1], encoding="bgr8", is_bigendian=0,
                 step=large.shape[1] * 3, data=large.reshape(-1))


def _mono(msg):
    """The same frame as mono8 (same stamp and frame_id)."""
    pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    mono = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    return Image(header=msg.header, height=msg.height, width=msg.width, encoding="mono8", is_bigendian=0,
                 step=msg.width, data=mono.reshape(-1))


# The case: frames 9 s apart, then 640x480 followed by 1280x960; and the other reasons.
RESTARTS = {
    "gap": lambda msg: _restamped(msg, 9.0),
    "size": lambda msg: _larger(msg, 2),
    "encoding": _mono,
    "frame_id": lambda msg: _restamped(msg, 0.0, frame_id="other_camera"),
}


@pytest.mark.parametrize("reason", RESTARTS)
@pytest.mark.parametrize("keyframe_every", [1, 3])
def test_a_gap_or_another_stream_restarts_the_sequence(matcher, frames, reason, keyframe_every):
    """[f0, f1, f2'] where f2' comes 9 s late, at 1280x960, as mono8 or from another frame_id:
    f2' pairs with nothing and starts a new sequence, and f3' (like f2') pairs with f2'."""
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY), keyframe_every=keyframe_every, max_gap_s=1.0,
                             restart_on_change=True)
    assert streams.match_sequence(image_message(frames[0], 0)) is None
    assert streams.match_sequence(image_message(frames[1], 1)) is not None
    changed = RESTARTS[reason]
    first = changed(image_message(frames[2], 2))
    assert streams.match_sequence(first) is None
    assert streams.last_restart == reason
    assert streams.pairer.restarts[reason] == 1 and sum(streams.pairer.restarts.values()) == 1
    following = changed(image_message(frames[3], 3))  # like f2' (for a gap: 9 s late too, 33 ms after f2')
    matched = streams.match_sequence(following)
    assert matched is not None and streams.last_restart is None
    assert matched.header0.stamp == first.header.stamp and matched.header0.frame_id == first.header.frame_id
    assert matched.result.image0_size == matched.result.image1_size == (first.width, first.height)
    assert len(matched.result) > 20


def test_without_restart_on_change_a_folder_may_mix_encodings(matcher, frames):
    """coarse-loftr replay's setting: only the stamps restart the sequence."""
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY), max_gap_s=1.0)
    streams.match_sequence(image_message(frames[0], 0, "bgr8"))
    matched = streams.match_sequence(image_message(frames[1], 1, "mono8"))
    assert matched is not None and streams.last_restart is None


def test_max_gap_zero_pairs_across_any_gap(matcher, frames):
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY), max_gap_s=0.0)
    streams.match_sequence(image_message(frames[0], 0))
    matched = streams.match_sequence(_restamped(image_message(frames[1], 1), 60.0))
    assert matched is not None and streams.last_restart is None


def test_a_refused_frame_of_another_size_keeps_the_sequence(matcher, frames):
    """An 8x8 frame would restart the sequence (size), but the matcher refuses it: the next good
    frame still pairs with the last good one."""
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY), max_gap_s=1.0, restart_on_change=True)
    streams.match_sequence(image_message(frames[0], 0))
    with pytest.raises(ImageSizeError):
        streams.match_sequence(image_message(np.zeros((8, 8, 3), np.uint8), 1))
    assert streams.last_restart is None and streams.pairer.restarts["size"] == 0
    matched = streams.match_sequence(image_message(frames[2], 2))
    assert matched.header0.stamp == header(0).stamp
    assert_same_matches(matched.result, matcher.match(frames[0], frames[2]))


def test_a_refused_frame_that_goes_back_in_time_leaves_the_sequence_as_it_was(matcher, frames):
    """Rare: the refused frame would also have restarted the sequence. The frame is checked before
    the restart (Matcher.prepare), so neither pairing nor matcher change: the next good frame pairs
    with the last good one, as after any refused frame."""
    streams = MessageMatcher(Matcher(matcher.backend.model_path, **MODEL_ONLY))
    for i in (5, 6):
        streams.match_sequence(image_message(frames[i], i))
    with pytest.raises(ImageSizeError):
        streams.match_sequence(image_message(np.zeros((8, 8, 3), np.uint8), 0))
    assert streams.pairer.resets == 0
    matched = streams.match_sequence(image_message(frames[7], 7))
    assert matched.header0.stamp == header(6).stamp
    assert_same_matches(matched.result, matcher.match(frames[6], frames[7]))
    matched = streams.match_sequence(image_message(frames[3], 8))
    assert matched.header0.stamp == header(7).stamp
    assert_same_matches(matched.result, matcher.match(frames[7], frames[3]))

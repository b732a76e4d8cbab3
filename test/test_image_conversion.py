"""sensor_msgs/Image and CompressedImage to numpy: every encoding, padding, byte order, errors."""

from __future__ import annotations

import array
import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coarse_loftr_ros.errors import ImageError
from coarse_loftr_ros.ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    compressed_to_numpy,
    image_to_numpy,
    message_to_numpy,
    numpy_to_image_fields,
)

skimage_data = pytest.importorskip("skimage.data")


@dataclass
class ImageFields:
    """The fields of sensor_msgs/Image that the converter reads (the input, not a mock)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: Any


@dataclass
class CompressedFields:
    format: str
    data: Any


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    """A real colour photograph, 61 x 80 (odd height on purpose), BGR uint8."""
    rgb = skimage_data.astronaut()[100:344:4, 100:420:4]
    return np.ascontiguousarray(rgb[:, :, ::-1])


def make_image(pixels: np.ndarray, encoding: str, padding: int = 0, bigendian: bool = False) -> ImageFields:
    """Pack ``pixels`` (H, W[, C]) as a message: rows padded with ``padding`` bytes of 0xAB."""
    height, width = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(height, -1).view(np.uint8)
    pad = np.full((height, padding), 0xAB, dtype=np.uint8)
    packed = np.concatenate([rows, pad], axis=1)
    return ImageFields(encoding, height, width, packed.shape[1], int(bigendian), packed.tobytes())


def test_bgr8_is_returned_unchanged_and_copied(bgr):
    msg = make_image(bgr, "bgr8")
    out = image_to_numpy(msg)
    assert out.dtype == np.uint8 and out.shape == bgr.shape
    np.testing.assert_array_equal(out, bgr)
    assert out.flags.c_contiguous and out.flags.writeable


@pytest.mark.parametrize(
    "encoding, to_message",
    [
        ("bgr8", lambda im: im),
        ("8UC3", lambda im: im),
        ("rgb8", lambda im: im[:, :, ::-1]),
        ("bgra8", lambda im: np.dstack([im, np.arange(im.size // 3, dtype=np.uint8).reshape(im.shape[:2])])),
        ("8UC4", lambda im: np.dstack([im, np.full(im.shape[:2], 7, np.uint8)])),
        ("rgba8", lambda im: np.dstack([im[:, :, ::-1], np.full(im.shape[:2], 200, np.uint8)])),
    ],
)
@pytest.mark.parametrize("padding", [0, 3, 64])
def test_colour_encodings_give_bgr(bgr, encoding, to_message, padding):
    msg = make_image(np.ascontiguousarray(to_message(bgr)), encoding, padding=padding)
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
@pytest.mark.parametrize("padding", [0, 1, 17])
def test_mono8_with_row_padding(bgr, encoding, padding):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    out = image_to_numpy(make_image(gray, encoding, padding=padding))
    assert out.shape == gray.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, gray)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 2, 6])
def test_mono16_byte_order_and_padding(bgr, encoding, bigendian, padding):
    # 12-bit-like values that differ in both bytes, so a wrong byte order cannot pass.
    gray16 = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 16 + 3
    msg = make_image(gray16, encoding, padding=padding, bigendian=bigendian)
    out = image_to_numpy(msg)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, gray16)


def test_big_endian_flag_is_what_decides_byte_order(bgr):
    gray16 = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 200
    msg = make_image(gray16, "mono16", bigendian=True)
    msg.is_bigendian = 0  # the same bytes declared little endian read as byte-swapped values
    np.testing.assert_array_equal(image_to_numpy(msg), gray16.byteswap())


@pytest.mark.parametrize("encoding, order", [("bgr16", [0, 1, 2]), ("rgb16", [2, 1, 0]), ("16UC3", [0, 1, 2])])
@pytest.mark.parametrize("bigendian", [False, True])
def test_colour16_encodings(bgr, encoding, order, bigendian):
    bgr16 = bgr.astype(np.uint16) * 257
    msg = make_image(np.ascontiguousarray(bgr16[:, :, order]), encoding, padding=4, bigendian=bigendian)
    out = image_to_numpy(msg)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, bgr16)


def mosaic(bgr_image: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image into a Bayer mosaic; ``pattern`` names the top-left 2x2 block."""
    channel = {"r": 2, "g": 1, "b": 0}
    out = np.zeros(bgr_image.shape[:2], dtype=bgr_image.dtype)
    for index, colour in enumerate(pattern):
        row, col = divmod(index, 2)
        out[row::2, col::2] = bgr_image[row::2, col::2, channel[colour]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("colour", [(0, 0, 220), (0, 220, 0), (220, 0, 0), (40, 90, 200)])
def test_bayer8_flat_colour_demosaics_to_that_colour(pattern, colour):
    flat = np.empty((16, 20, 3), np.uint8)
    flat[:] = colour
    out = image_to_numpy(make_image(mosaic(flat, pattern), f"bayer_{pattern}8", padding=5))
    assert out.shape == (16, 20, 3) and out.dtype == np.uint8
    # Away from the border, bilinear demosaicing of a flat colour is exact.
    np.testing.assert_array_equal(out[2:-2, 2:-2], flat[2:-2, 2:-2])


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_photo_is_close_to_original_and_wrong_pattern_is_not(bgr, pattern):
    raw = mosaic(bgr, pattern)
    out = image_to_numpy(make_image(raw, f"bayer_{pattern}8"))
    error = np.abs(out.astype(int) - bgr.astype(int))[2:-2, 2:-2].mean()
    wrong = {"rggb": "bggr", "bggr": "rggb", "gbrg": "grbg", "grbg": "gbrg"}[pattern]
    swapped = image_to_numpy(make_image(raw, f"bayer_{wrong}8"))
    wrong_error = np.abs(swapped.astype(int) - bgr.astype(int))[2:-2, 2:-2].mean()
    assert error < 12 and wrong_error > error + 5


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_bayer16(pattern, bigendian):
    flat = np.empty((12, 14, 3), np.uint16)
    flat[:] = (1000, 30000, 60000)
    out = image_to_numpy(make_image(mosaic(flat, pattern), f"bayer_{pattern}16", padding=2, bigendian=bigendian))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[2:-2, 2:-2], flat[2:-2, 2:-2])


@pytest.mark.parametrize("encoding, order", [("yuv422", "uyvy"), ("yuv422_yuy2", "yuyv")])
def test_yuv422_grey_ramp(encoding, order):
    luma = np.tile(np.arange(16, 236, 10, dtype=np.uint8), (4, 1))  # 4 x 22
    chroma = np.full_like(luma, 128)
    packed = np.empty((4, luma.shape[1] * 2), np.uint8)
    if order == "uyvy":
        packed[:, 0::2], packed[:, 1::2] = chroma, luma
    else:
        packed[:, 1::2], packed[:, 0::2] = chroma, luma
    msg = ImageFields(encoding, 4, luma.shape[1], packed.shape[1], 0, packed.tobytes())
    out = image_to_numpy(msg)
    assert out.shape == (4, luma.shape[1], 3)
    # Neutral chroma: grey pixels whose brightness follows the luma ramp.
    assert np.all(np.ptp(out.astype(int), axis=2) <= 1)
    assert np.all(np.diff(out[:, :, 1].astype(int), axis=1) > 0)


@pytest.mark.parametrize(
    "as_data",
    [bytes, bytearray, lambda b: array.array("B", b), lambda b: list(b), lambda b: np.frombuffer(b, np.uint8)],
    ids=["bytes", "bytearray", "array", "list", "numpy"],
)
def test_data_container_types(bgr, as_data):
    msg = make_image(bgr, "bgr8", padding=2)
    msg.data = as_data(msg.data)
    np.testing.assert_array_equal(image_to_numpy(msg), bgr)


def test_result_does_not_alias_message_buffer(bgr):
    buffer = np.frombuffer(bytearray(bgr.tobytes()), np.uint8)
    msg = ImageFields("bgr8", bgr.shape[0], bgr.shape[1], bgr.shape[1] * 3, 0, buffer)
    out = image_to_numpy(msg)
    buffer[:] = 0
    np.testing.assert_array_equal(out, bgr)


def test_extra_trailing_bytes_are_ignored_and_last_row_needs_no_padding(bgr):
    msg = make_image(bgr, "bgr8", padding=8)
    trimmed = ImageFields("bgr8", msg.height, msg.width, msg.step, 0, msg.data[:-8])
    np.testing.assert_array_equal(image_to_numpy(trimmed), bgr)
    longer = ImageFields("bgr8", msg.height, msg.width, msg.step, 0, msg.data + b"\x00" * 100)
    np.testing.assert_array_equal(image_to_numpy(longer), bgr)


def test_rosbags_message_after_cdr_round_trip(bgr):
    typestore_module = pytest.importorskip("rosbags.typesys")
    store = typestore_module.get_typestore(typestore_module.Stores.ROS2_HUMBLE)
    Image = store.types["sensor_msgs/msg/Image"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    packed = make_image(np.ascontiguousarray(bgr[:, :, ::-1]), "rgb8", padding=4)
    msg = Image(
        header=Header(stamp=Time(sec=5, nanosec=0), frame_id="camera"),
        height=packed.height,
        width=packed.width,
        encoding="rgb8",
        is_bigendian=0,
        step=packed.step,
        data=np.frombuffer(packed.data, np.uint8),
    )
    decoded = store.deserialize_cdr(store.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)
    np.testing.assert_array_equal(image_to_numpy(decoded), bgr)
    np.testing.assert_array_equal(message_to_numpy(decoded), bgr)


@pytest.mark.parametrize("arrays", ["array", "numpy"])
def test_numpy_to_image_fields_round_trip(bgr, arrays):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    for image, encoding in ((bgr, "bgr8"), (gray, "mono8"), (gray.astype(np.uint16) * 300, "mono16")):
        fields = numpy_to_image_fields(image, header="h", arrays=arrays)
        assert fields["encoding"] == encoding and fields["header"] == "h"
        assert isinstance(fields["data"], array.array if arrays == "array" else np.ndarray)
        np.testing.assert_array_equal(image_to_numpy(ImageFields(**{k: v for k, v in fields.items() if k != "header"})), image)
    with pytest.raises(ImageError, match="cannot publish"):
        numpy_to_image_fields(np.zeros((4, 4, 4), np.uint8), None)
    with pytest.raises(ImageError, match="cannot publish"):
        numpy_to_image_fields(np.zeros((4, 4), np.float32), None)


# ----- errors -----


@pytest.mark.parametrize("encoding", ["32FC1", "16SC1", "64FC1", "jpeg", "", "MONO8"])
def test_unknown_encoding_is_one_line_image_error(encoding):
    msg = ImageFields(encoding, 2, 2, 8, 0, bytes(16))
    with pytest.raises(ImageError, match="unsupported image encoding") as info:
        image_to_numpy(msg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "height, width, step, size, message",
    [
        (0, 4, 4, 0, "empty image"),
        (4, 0, 0, 0, "empty image"),
        (4, 4, 3, 16, "shorter than one row"),
        (4, 4, 4, 15, "truncated image data"),
        (4, 4, 8, 27, "truncated image data"),
        (4, 4, 4, 0, "truncated image data"),
    ],
)
def test_bad_geometry_is_one_line_image_error(height, width, step, size, message):
    with pytest.raises(ImageError, match=message) as info:
        image_to_numpy(ImageFields("mono8", height, width, step, 0, bytes(size)))
    assert "\n" not in str(info.value)


def test_mono16_step_counts_bytes_not_pixels():
    with pytest.raises(ImageError, match="shorter than one row"):
        image_to_numpy(ImageFields("mono16", 2, 4, 4, 0, bytes(16)))


def test_odd_width_yuv_is_rejected():
    with pytest.raises(ImageError, match="width must be even"):
        image_to_numpy(ImageFields("yuv422", 2, 3, 6, 0, bytes(12)))


def test_non_byte_data_is_rejected():
    with pytest.raises(ImageError, match="expected uint8"):
        image_to_numpy(ImageFields("mono8", 2, 2, 2, 0, np.zeros(4, np.float32)))
    with pytest.raises(ImageError):
        image_to_numpy(ImageFields("mono8", 2, 2, 2, 0, [0, 1, 2, 300]))


# ----- compressed -----


def encode(image: np.ndarray, extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize("image_format", ["png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8"])
def test_png_colour_is_lossless_bgr(bgr, image_format):
    out = compressed_to_numpy(CompressedFields(image_format, encode(bgr, ".png")))
    np.testing.assert_array_equal(out, bgr)


def test_stored_rgb_is_reordered_to_bgr(bgr):
    # A publisher that stored RGB bytes and said so in the format string.
    data = encode(np.ascontiguousarray(bgr[:, :, ::-1]), ".png")
    out = compressed_to_numpy(CompressedFields("rgb8; png compressed rgb8", data))
    np.testing.assert_array_equal(out, bgr)


def test_jpeg_colour_is_close(bgr):
    for image_format in ("jpeg", "bgr8; jpeg compressed bgr8"):
        out = compressed_to_numpy(CompressedFields(image_format, encode(bgr, ".jpg")))
        assert out.shape == bgr.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - bgr.astype(int)).mean() < 6


def test_mono_png_and_jpeg(bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    out = compressed_to_numpy(CompressedFields("mono8; png compressed mono8", encode(gray, ".png")))
    np.testing.assert_array_equal(out, gray)
    out = compressed_to_numpy(CompressedFields("mono8; jpeg compressed mono8", encode(gray, ".jpg")))
    assert out.shape == gray.shape and np.abs(out.astype(int) - gray.astype(int)).mean() < 6


def test_mono16_png_keeps_16_bits(bgr):
    gray16 = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 250
    out = compressed_to_numpy(CompressedFields("mono16; png compressed mono16", encode(gray16, ".png")))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, gray16)


def test_bgra_png_drops_alpha(bgr):
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 99
    out = compressed_to_numpy(CompressedFields("bgra8; png compressed bgra8", encode(bgra, ".png")))
    np.testing.assert_array_equal(out, bgr)


def test_compressed_message_dispatch(bgr):
    msg = CompressedFields("png", np.frombuffer(encode(bgr, ".png"), np.uint8))
    np.testing.assert_array_equal(message_to_numpy(msg), bgr)


@pytest.mark.parametrize(
    "image_format, data, message",
    [
        ("jpeg", b"", "empty compressed image"),
        ("jpeg", b"not an image at all", "cannot decode"),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(40), "cannot decode"),
        ("16UC1; compressedDepth png", b"\x00" * 12 + b"\x89PNG", "depth image"),
        ("h264", bytes(range(256)), "cannot decode"),
    ],
)
def test_bad_compressed_data_is_one_line_image_error(image_format, data, message):
    with pytest.raises(ImageError, match=message) as info:
        compressed_to_numpy(CompressedFields(image_format, data))
    assert "\n" not in str(info.value)


def test_truncated_png_is_an_error(bgr):
    data = encode(bgr, ".png")
    with pytest.raises(ImageError, match="truncated PNG") as info:
        compressed_to_numpy(CompressedFields("png", data[: len(data) // 2]))
    assert "\n" not in str(info.value)


# ----- fuzzing: any input gives a well-formed image or a one-line ImageError -----


def nominal_pixel_bytes(encoding: str) -> int:
    """Bytes per pixel as the ROS encoding name says (1 for unknown names)."""
    if encoding.startswith(("yuv422", "uyvy", "yuyv")):
        return 2
    itemsize = 2 if re.search(r"16", encoding) else 1
    if encoding.startswith(("bgra", "rgba")) or encoding.endswith("C4"):
        return 4 * itemsize
    if encoding.startswith(("bgr", "rgb")) or encoding.endswith("C3"):
        return 3 * itemsize
    return itemsize


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(SUPPORTED_ENCODINGS + ("32FC1", "bogus")),
    height=st.integers(-1, 9),
    width=st.integers(-1, 9),
    extra_step=st.integers(-3, 9),
    bigendian=st.booleans(),
    size_change=st.integers(-20, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_raw_image(encoding, height, width, extra_step, bigendian, size_change, seed):
    step = max(width, 0) * nominal_pixel_bytes(encoding) + extra_step
    size = max(0, step * max(height, 0) + size_change)
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    msg = ImageFields(encoding, height, width, step, int(bigendian), data)
    try:
        out = image_to_numpy(msg)
    except ImageError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert encoding in SUPPORTED_ENCODINGS
    assert out.dtype in (np.uint8, np.uint16)
    assert out.shape[:2] == (height, width)
    assert out.ndim == 2 or out.shape[2] == 3


@settings(max_examples=150, deadline=None)
@given(
    image_format=st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "mono8; png compressed mono8", ""]),
    cut=st.floats(0.0, 1.0),
    flip=st.integers(0, 10_000),
)
def test_fuzz_compressed_image(image_format, cut, flip):
    rng = np.random.default_rng(flip)
    image = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    data = bytearray(encode(image, ".png" if "png" in image_format else ".jpg"))
    data = data[: int(len(data) * cut)]
    if data and flip % 2:
        data[flip % len(data)] ^= 0xFF
    try:
        out = compressed_to_numpy(CompressedFields(image_format, bytes(data)))
    except ImageError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert out.dtype in (np.uint8, np.uint16)
    assert out.ndim == 2 or (out.ndim == 3 and out.shape[2] == 3)


# ----- pixel limit (decompression bombs) -----


def test_compressed_bomb_is_refused_before_decoding():
    from coarse_loftr_ros.imageio import ImageTooLargeError
    from hostile_images import png_declaring

    msg = CompressedFields("mono8; png compressed mono8", png_declaring(30000, 30000))
    for convert in (compressed_to_numpy, message_to_numpy):
        with pytest.raises(ImageTooLargeError, match=r"compressed image \(format 'mono8; png compressed mono8'\) is 30000x30000") as info:
            convert(msg)
        assert "\n" not in str(info.value)


def test_raw_image_above_the_limit_is_refused_and_a_claim_without_data_is_truncated():
    from coarse_loftr_ros.imageio import ImageTooLargeError

    # A real 7200x7000 mono8 message (50.4 megapixels, the data complete): over the default limit.
    with pytest.raises(ImageTooLargeError, match="mono8 image is 7200x7000 = 50.4 megapixels"):
        image_to_numpy(ImageFields("mono8", 7000, 7200, 7200, 0, bytes(7200 * 7000)))
    # Claiming 30000x30000 with 16 bytes of data: the message is inconsistent.
    with pytest.raises(ImageError, match="truncated image data"):
        image_to_numpy(ImageFields("mono8", 30000, 30000, 30000, 0, bytes(16)))


@pytest.mark.parametrize("kind", ["raw", "compressed"])
def test_max_pixels_keyword_sets_or_lifts_the_limit(bgr, kind):
    from coarse_loftr_ros.imageio import ImageTooLargeError

    msg = make_image(bgr, "bgr8") if kind == "raw" else CompressedFields("png", encode(bgr, ".png"))
    pixels = bgr.shape[0] * bgr.shape[1]
    with pytest.raises(ImageTooLargeError, match=f"{bgr.shape[1]}x{bgr.shape[0]}"):
        message_to_numpy(msg, max_pixels=pixels - 1)
    for limit in (pixels, 0, None):
        np.testing.assert_array_equal(message_to_numpy(msg, max_pixels=limit), bgr)

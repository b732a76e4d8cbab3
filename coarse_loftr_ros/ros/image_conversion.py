"""ROS image messages to numpy arrays, without ROS.

Public API:

- ``image_to_numpy(msg, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray`` for a ``sensor_msgs/Image``.
- ``compressed_to_numpy(msg, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray`` for a
  ``sensor_msgs/CompressedImage``.
- ``message_to_numpy(msg, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray`` for either
  (dispatches on a ``format`` field).
- ``numpy_to_image_fields(image, header, arrays="array") -> dict``: the reverse, the
  ``sensor_msgs/Image`` fields for a uint8 (mono8 / bgr8) or uint16 (mono16) array.
- ``SUPPORTED_ENCODINGS``: the ``Image.encoding`` values ``image_to_numpy`` accepts.

The functions are duck-typed: they read ``encoding``, ``height``, ``width``, ``step``,
``is_bigendian`` and ``data`` (or ``format`` and ``data``), so messages from rclpy, from
``rosbags`` and plain objects all work. ``data`` may be ``bytes``, ``bytearray``,
``array.array('B')``, a list of ints or a numpy uint8 array.

The result is a new C-contiguous array (it never aliases the message buffer): dtype
uint8 or uint16, shape (H, W) for mono images and (H, W, 3) in BGR order for colour
images. Alpha is dropped, RGB is reordered to BGR, Bayer mosaics are demosaiced to BGR,
and 16-bit data is converted to the host byte order. Anything that cannot be converted
raises ``ImageError`` with a one-line message.

``max_pixels`` (width x height; default 50 megapixels, 0 or None: no limit) refuses larger
images with ``ImageTooLargeError``: a compressed image from the size in its header, before
it is decoded (see ``imageio``), a raw image before its pixels are copied.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import cv2
import numpy as np

from ..errors import ImageError
from ..imageio import DEFAULT_MAX_PIXELS, check_pixels, decode_image

# encoding -> (numpy dtype, channels in the message, conversion to BGR or None)
# 8UC3 / 8UC4 / 16UC3 are read as BGR / BGRA like cv_bridge does.
_COLOR_CONVERSIONS: dict[str, int | None] = {
    "mono": None,
    "bgr": None,
    "rgb": cv2.COLOR_RGB2BGR,
    "bgra": cv2.COLOR_BGRA2BGR,
    "rgba": cv2.COLOR_RGBA2BGR,
    # OpenCV names a Bayer pattern after the 2x2 block starting at the second row and
    # column in its old constants; the *RGGB*-style aliases name the pattern as ROS does.
    "bayer_rggb": getattr(cv2, "COLOR_BayerRGGB2BGR", cv2.COLOR_BayerBG2BGR),
    "bayer_bggr": getattr(cv2, "COLOR_BayerBGGR2BGR", cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg": getattr(cv2, "COLOR_BayerGBRG2BGR", cv2.COLOR_BayerGR2BGR),
    "bayer_grbg": getattr(cv2, "COLOR_BayerGRBG2BGR", cv2.COLOR_BayerGB2BGR),
    "yuv422": cv2.COLOR_YUV2BGR_UYVY,  # ROS "yuv422" is UYVY byte order
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2,
}


def _encoding_table() -> dict[str, tuple[np.dtype, int, int | None]]:
    table: dict[str, tuple[np.dtype, int, int | None]] = {}
    u8, u16 = np.dtype(np.uint8), np.dtype(np.uint16)
    for bits, dtype in ((8, u8), (16, u16)):
        table[f"mono{bits}"] = (dtype, 1, None)
        table[f"bgr{bits}"] = (dtype, 3, None)
        table[f"rgb{bits}"] = (dtype, 3, _COLOR_CONVERSIONS["rgb"])
        table[f"bgra{bits}"] = (dtype, 4, _COLOR_CONVERSIONS["bgra"])
        table[f"rgba{bits}"] = (dtype, 4, _COLOR_CONVERSIONS["rgba"])
        for pattern in ("rggb", "bggr", "gbrg", "grbg"):
            table[f"bayer_{pattern}{bits}"] = (dtype, 1, _COLOR_CONVERSIONS[f"bayer_{pattern}"])
        table[f"{bits}UC1"] = (dtype, 1, None)
        table[f"{bits}UC3"] = (dtype, 3, None)
        table[f"{bits}UC4"] = (dtype, 4, _COLOR_CONVERSIONS["bgra"])
    # Packed YUV 4:2:2: two bytes per pixel, decoded to BGR.
    table["yuv422"] = (u8, 2, _COLOR_CONVERSIONS["yuv422"])
    table["uyvy"] = (u8, 2, _COLOR_CONVERSIONS["yuv422"])
    table["yuv422_yuy2"] = (u8, 2, _COLOR_CONVERSIONS["yuv422_yuy2"])
    table["yuyv"] = (u8, 2, _COLOR_CONVERSIONS["yuv422_yuy2"])
    return table


_ENCODINGS = _encoding_table()
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_ENCODINGS))

_HOST_IS_BIGENDIAN = sys.byteorder == "big"


def _as_bytes(data: Any) -> np.ndarray:
    """The message ``data`` field as a flat uint8 array (a view where possible)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageError(f"image data has dtype {data.dtype}; expected uint8 bytes")
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, array.array):
        if data.itemsize != 1:
            raise ImageError(f"image data is array('{data.typecode}'); expected bytes")
        return np.frombuffer(data, dtype=np.uint8)
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as error:
        raise ImageError(f"image data of type {type(data).__name__} is not a byte sequence") from error


def image_to_numpy(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to a uint8/uint16 array, (H, W) mono or (H, W, 3) BGR.

    Honours ``step`` (row stride in bytes, which may include padding) and
    ``is_bigendian`` (byte order of 16-bit data). Raises ``ImageError`` for an unknown
    encoding, an empty image, a ``step`` shorter than a row, truncated ``data`` or more
    than ``max_pixels`` pixels (0 or None: no limit).
    """
    encoding = str(msg.encoding)
    if encoding not in _ENCODINGS:
        raise ImageError(
            f"unsupported image encoding {encoding!r}; supported: mono8, mono16, bgr8, rgb8, "
            "bgra8, rgba8, 8UC1/3/4, 16UC1/3/4, bayer_* 8/16 bit, yuv422"
        )
    dtype, channels, conversion = _ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image: {width}x{height} pixels ({encoding})")
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise ImageError(f"{encoding} image width must be even, got {width}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageError(
            f"image step {step} is shorter than one row ({width} px x {channels} channel(s) x "
            f"{dtype.itemsize} byte(s) = {row_bytes} bytes) for {encoding}"
        )
    data = _as_bytes(msg.data)
    # The last row needs no padding; anything after it is ignored.
    needed = step * (height - 1) + row_bytes
    if data.size < needed:
        raise ImageError(
            f"truncated image data: {data.size} bytes for a {width}x{height} {encoding} image "
            f"with step {step} (need at least {needed})"
        )
    check_pixels(width, height, max_pixels, f"{encoding} image")

    # Strided view of the rows without the padding, then one copy.
    rows = np.lib.stride_tricks.as_strided(
        data, shape=(height, row_bytes), strides=(step, 1), writeable=False
    )
    pixels = rows.copy()  # always a copy: never alias (or keep alive) the message buffer
    if dtype.itemsize == 2:
        message_order = ">" if bool(msg.is_bigendian) else "<"
        pixels = pixels.view(np.dtype(np.uint16).newbyteorder(message_order)).astype(np.uint16)
    shape = (height, width) if channels == 1 else (height, width, channels)
    pixels = pixels.reshape(shape)

    if conversion is not None:
        pixels = cv2.cvtColor(pixels, conversion)
    return pixels


def compressed_to_numpy(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` to a uint8/uint16 array, mono or BGR.

    ``format`` follows image_transport: a plain container name (``"jpeg"``, ``"png"``) or
    ``"<original encoding>; <codec> compressed <stored encoding>"``, e.g.
    ``"rgb8; jpeg compressed bgr8"``. The stored encoding tells the channel order of the
    decoded pixels (image_transport stores colour as BGR); alpha is dropped.
    Raises ``ImageError`` for depth images (``compressedDepth``) and undecodable data, and
    before decoding for a header that declares more than ``max_pixels`` pixels (0 or None:
    no limit) or cannot be read (see ``imageio.decode_image``).
    """
    image_format = str(msg.format).strip()
    if "compresseddepth" in image_format.lower().replace(" ", ""):
        raise ImageError(
            f"compressed format {image_format!r} is a depth image; the matcher needs intensity images"
        )
    data = _as_bytes(msg.data)
    if data.size == 0:
        raise ImageError(f"empty compressed image data (format {image_format!r})")
    try:
        pixels = decode_image(np.ascontiguousarray(data), max_pixels, what=f"compressed image (format {image_format!r})")
    except cv2.error as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "OpenCV error"
        raise ImageError(f"cannot decode compressed image (format {image_format!r}): {first_line}") from error
    if pixels is None or pixels.size == 0:
        raise ImageError(
            f"cannot decode {data.size} bytes of compressed image data (format {image_format!r}); "
            "expected a complete JPEG, PNG or other OpenCV-readable image"
        )
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"decoded compressed image has dtype {pixels.dtype}; expected 8 or 16 bit")

    stored = image_format.rsplit("compressed", 1)[-1].strip().lower() if "compressed" in image_format else ""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        code = cv2.COLOR_RGBA2BGR if stored.startswith("rgba") else cv2.COLOR_BGRA2BGR
        pixels = cv2.cvtColor(pixels, code)
    elif pixels.ndim == 3 and pixels.shape[2] == 3 and stored.startswith("rgb"):
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif pixels.ndim != 2 and not (pixels.ndim == 3 and pixels.shape[2] == 3):
        raise ImageError(f"decoded compressed image has unexpected shape {pixels.shape}")
    return np.ascontiguousarray(pixels)


def message_to_numpy(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``compressed_to_numpy`` for messages with a ``format`` field, else ``image_to_numpy``."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_numpy(msg, max_pixels)
    return image_to_numpy(msg, max_pixels)


def numpy_to_image_fields(image: np.ndarray, header: Any, arrays: str = "array") -> dict[str, Any]:
    """``sensor_msgs/Image`` fields for ``image``: uint8 HxW (mono8), HxWx3 BGR (bgr8), uint16 HxW (mono16).

    ``data`` is an ``array.array('B')`` for rclpy (``arrays="array"``) or a numpy uint8
    array for rosbags (``arrays="numpy"``); rows are unpadded and in host byte order.
    """
    image = np.asarray(image)
    if image.ndim == 2 and image.dtype == np.uint8:
        encoding = "mono8"
    elif image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        encoding = "bgr8"
    elif image.ndim == 2 and image.dtype == np.uint16:
        encoding = "mono16"
    else:
        raise ImageError(f"cannot publish an image of shape {image.shape} and dtype {image.dtype}; "
                         "expected uint8 HxW, uint8 HxWx3 (BGR) or uint16 HxW")
    pixels = np.ascontiguousarray(image)
    data = pixels.reshape(-1).view(np.uint8)
    return {
        "header": header,
        "height": int(pixels.shape[0]),
        "width": int(pixels.shape[1]),
        "encoding": encoding,
        "is_bigendian": int(_HOST_IS_BIGENDIAN),
        "step": int(pixels.strides[0]),
        "data": array.array("B", data.tobytes()) if arrays == "array" else data.copy(),
    }

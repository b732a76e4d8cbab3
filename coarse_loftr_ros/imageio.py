"""Reading image files and encoded images with one-line errors and a pixel limit.

Public API:

- ``read_image(path, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray``: an image file as stored.
- ``decode_image(data, max_pixels=DEFAULT_MAX_PIXELS, what="image") -> np.ndarray | None``: encoded
  bytes (a file's content, a ``CompressedImage``'s data) as stored.
- ``image_dimensions(data) -> (width, height) | None``: the size an encoded image declares in
  its header, read without decoding.
- ``check_pixels(width, height, max_pixels, what)``: the limit itself.

Decompression bombs: a small file can declare a huge image (a 30000x30000 PNG of zeros is
under 1 MB and decodes to 0.9 GB). Before decoding, the width and height are read from the
header and an image above ``max_pixels`` (width x height; default 50 megapixels) is refused
with ``ImageTooLargeError``. ``max_pixels`` 0 or None means no limit. The headers of PNG,
JPEG, TIFF (and BigTIFF), BMP, WebP, GIF, PNM/PAM/PFM, Sun raster and QOI are read here; a format
whose header is not read here (JPEG 2000, OpenEXR, Radiance HDR, AVIF, JPEG XL) cannot be
checked before decoding, so with a limit set it is refused too, and data in no known format is
never handed to the decoder (the conservative rule): convert it to PNG, or pass
``max_pixels=0`` to decode it unchecked.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

DEFAULT_MAX_PIXELS = 50_000_000
"""Default largest image, width x height in pixels (50 megapixels: 8192 x 6104)."""


class ImageTooLargeError(ImageError):
    """An image whose declared size is above the pixel limit (refused before decoding)."""


def check_pixels(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Raise ``ImageTooLargeError`` when ``width`` x ``height`` exceeds ``max_pixels`` (0/None: no limit)."""
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height / 1e6:.3g} megapixels, above the limit of "
            f"{max_pixels / 1e6:.3g} megapixels; raise the limit (max_pixels, --max-image-pixels or the node's max_image_pixels; 0 = no limit) if it is genuine"
        )


# --------------------------------------------------------------------------- headers


def _png(data: memoryview) -> tuple[int, int] | None:
    # 8-byte signature, then the IHDR chunk: length, b"IHDR", width, height (big-endian).
    return struct.unpack_from(">II", data, 16) if data[12:16] == b"IHDR" else None


# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: memoryview) -> tuple[int, int] | None:
    position = 2  # after SOI (FF D8); then segments FF <marker> <length> until a frame header
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
        elif marker in (0xD9, 0xDA):  # end of image, or a scan before any frame header
            return None
        elif marker in _JPEG_SOF:  # length (2), precision (1), height (2), width (2)
            height, width = struct.unpack_from(">HH", data, position + 5)
            return width, height
        else:
            position += 2 + struct.unpack_from(">H", data, position + 2)[0]
    return None


def _tiff(data: memoryview) -> tuple[int, int] | None:
    # Header: byte order, version (42, or 43 for BigTIFF), offset of the first directory.
    # Directory entries: tag (2), type (2), count (4 | 8), value (4 | 8). ImageWidth is tag
    # 256, ImageLength 257, of type SHORT (3), LONG (4) or LONG8 (16).
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    offset_format, count_format, entry_size, value_at = ("Q", "Q", 20, 12) if big else ("I", "H", 12, 8)
    (offset,) = struct.unpack_from(order + offset_format, data, 8 if big else 4)
    (count,) = struct.unpack_from(order + count_format, data, offset)
    first_entry = offset + struct.calcsize(count_format)
    size: dict[int, int] = {}
    for index in range(min(count, 1024)):
        entry = first_entry + index * entry_size
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257) and kind in (3, 4, 16):
            (size[tag],) = struct.unpack_from(order + {3: "H", 4: "I", 16: "Q"}[kind], data, entry + value_at)
    return (size[256], size[257]) if len(size) == 2 else None


def _bmp(data: memoryview) -> tuple[int, int] | None:
    if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height means top-down rows


def _webp(data: memoryview) -> tuple[int, int] | None:
    chunk = bytes(data[12:16])  # the first chunk of the RIFF container; its payload starts at 20
    if chunk == b"VP8X":  # extended: canvas size minus one, 24 bits each
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14 bits each, minus one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: key frame start code, then sizes
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


def _pnm(data: memoryview) -> tuple[int, int] | None:
    head = bytes(data[:1024])
    if head[:2] == b"P7":  # PAM: "WIDTH w" and "HEIGHT h" lines before ENDHDR
        width = re.search(rb"^WIDTH\s+(\d+)", head, re.MULTILINE)
        height = re.search(rb"^HEIGHT\s+(\d+)", head, re.MULTILINE)
        return (int(width[1]), int(height[1])) if width and height else None
    # P1-P6 and PFM (PF, Pf): magic, width, height separated by whitespace and # comments.
    tokens = re.split(rb"(?:\s|#[^\n]*\n?)+", head, maxsplit=3)
    if len(tokens) >= 3 and tokens[1].isdigit() and tokens[2].isdigit():
        return int(tokens[1]), int(tokens[2])
    return None


# (signature, header reader); each reader gets the whole encoded image.
_HEADER_READERS = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8", _jpeg),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"II+\x00", _tiff),  # BigTIFF
    (b"MM\x00+", _tiff),
    (b"BM", _bmp),
    (b"GIF87a", lambda data: struct.unpack_from("<HH", data, 6)),  # logical screen size
    (b"GIF89a", lambda data: struct.unpack_from("<HH", data, 6)),
    (b"\x59\xa6\x6a\x95", lambda data: struct.unpack_from(">II", data, 4)),  # Sun raster
    (b"qoif", lambda data: struct.unpack_from(">II", data, 4)),  # QOI
    (b"RIFF", _webp),
    *((b"P" + magic, _pnm) for magic in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"F", b"f")),
)
HEADER_FORMATS = "PNG, JPEG, TIFF, BMP, WebP, GIF, PNM/PFM, Sun raster, QOI"


def image_dimensions(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` that an encoded image declares in its header, read without decoding.

    None when the format is not one of ``HEADER_FORMATS`` or the header is cut short.
    """
    view = memoryview(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1) if isinstance(data, np.ndarray) else data).cast("B")
    for signature, reader in _HEADER_READERS:
        if view[: len(signature)] == signature:
            try:
                size = reader(view)
            except (struct.error, IndexError):  # header cut short
                return None
            return (int(size[0]), int(size[1])) if size is not None else None
    return None


# --------------------------------------------------------------------------- decoding


def png_is_complete(data: np.ndarray) -> bool:
    """Whether a PNG's chunks run whole up to IEND (their lengths, not their checksums).

    libpng prints ``libpng error: ...`` on stderr itself for a cut-off file, above our one-line
    error; a file that fails this walk is not handed to it.
    """
    view = memoryview(data)
    position = 8  # after the signature
    while position + 8 <= len(view):
        length = int.from_bytes(view[position : position + 4], "big")
        kind = bytes(view[position + 4 : position + 8])
        position += 12 + length  # length, type, data, CRC
        if position > len(view):
            return False
        if kind == b"IEND":
            return True
    return False


def _decode_quietly(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own warnings on stderr (we raise a clearer error)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)


# Formats OpenCV may decode whose size is not read here (magic numbers): JPEG 2000 (JP2
# box, J2K codestream), OpenEXR, Radiance HDR, JPEG XL (codestream, container).
_UNCHECKED_SIGNATURES = (b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51", b"\x76\x2f\x31\x01", b"#?RADIANCE", b"#?RGBE",
                         b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")


def _unchecked_format(data: np.ndarray) -> bool:
    head = data[:16].tobytes()
    return head.startswith(_UNCHECKED_SIGNATURES) or head[4:8] == b"ftyp"  # ftyp: AVIF / HEIF


def decode_image(data: np.ndarray, max_pixels: int | None = DEFAULT_MAX_PIXELS, what: str = "image") -> np.ndarray | None:
    """Decode encoded bytes (flat uint8) as stored, after checking the declared size.

    Returns None when the data cannot be decoded. With a limit (``max_pixels`` > 0), data is
    decoded only when its header gives its size (``HEADER_FORMATS``) and that size is within
    the limit: above it ``ImageTooLargeError``; a format OpenCV reads but whose size is not
    read here (JPEG 2000, OpenEXR, HDR, AVIF, JPEG XL) ``ImageError``; anything else is not
    an image we can read (None, without decoding it). ``what`` names the data in messages.
    """
    if max_pixels:
        size = image_dimensions(data)
        if size is None:
            if _unchecked_format(data):
                raise ImageError(
                    f"cannot decode {what} safely: its format's header gives no image size to check against the "
                    f"{max_pixels / 1e6:g}-megapixel limit; convert it to PNG or JPEG, or pass max_pixels=0 "
                    "(--max-image-pixels 0) to decode it unchecked"
                )
            return None
        check_pixels(size[0], size[1], max_pixels, what)
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and not png_is_complete(data):
        raise ImageError(f"{what} is not a readable image: a truncated PNG (its data ends before the IEND chunk); pass the complete file")
    return _decode_quietly(data)


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as stored: uint8 or uint16, HxW, HxWx3 (BGR) or HxWx4 (BGRA).

    ``max_pixels``: refuse (``ImageTooLargeError``) an image whose header declares more than
    this many pixels, before decoding it; 0 or None: no limit.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file {path} does not exist; check the path")
    if not path.is_file():
        raise ImageError(f"{path} is not a file; pass an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageError(f"cannot read image file {path} ({error.strerror}); check its permissions") from None
    if data.size == 0:
        raise ImageError(f"image file {path} is empty (0 bytes); pass a complete image file")
    image = decode_image(data, max_pixels, what=f"image file {path}")
    if image is None or image.size == 0:
        raise ImageError(f"{path} is not a readable image (corrupt or unsupported format); pass a PNG, JPEG, TIFF, BMP or WebP file")
    return image

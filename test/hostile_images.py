"""Real encoded images that declare huge sizes, made without allocating their pixels.

- ``png_declaring(width, height)``: a valid small PNG whose IHDR (and its CRC) is rewritten
  to declare ``width`` x ``height``: the header is right, the pixel data is short.
- ``zeros_png(width, height)``: a complete, valid greyscale PNG of zeros of that size (the
  issue's 30000x30000 decompression bomb is 875 KB), built from one compressed block of
  rows repeated: a full flush makes every block's deflate output identical.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A 16x16 greyscale PNG (made by OpenCV) whose header declares ``width`` x ``height``."""
    ok, encoded = cv2.imencode(".png", np.zeros((16, 16), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])  # depth, colour, methods
    data[8:33] = _chunk(b"IHDR", ihdr)
    return bytes(data)


def zeros_png(width: int, height: int, rows_per_block: int = 1000) -> bytes:
    """A complete 8-bit greyscale PNG of zeros, ``width`` x ``height``; ``height`` must be a
    multiple of ``rows_per_block``. Memory: one block of rows."""
    assert height % rows_per_block == 0
    block = bytes(width + 1) * rows_per_block  # each row: filter byte 0, then the pixels
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # no history after a full flush
    checksum = 1
    for _ in range(height // rows_per_block):
        checksum = zlib.adler32(block, checksum)
    # b"\x03\x00": an empty final block (fixed Huffman, end of block), then Adler-32 of the data.
    stream = first + repeated * (height // rows_per_block - 1) + b"\x03\x00" + struct.pack(">I", checksum)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")

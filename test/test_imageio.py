"""Image files and encoded images: sizes read from headers, decompression bombs refused before decoding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from coarse_loftr_ros.errors import ImageError
from coarse_loftr_ros.imageio import DEFAULT_MAX_PIXELS, ImageTooLargeError, decode_image, image_dimensions, read_image
from hostile_images import png_declaring, zeros_png

WIDTH, HEIGHT = 53, 37  # not square, so a swapped width and height shows


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (3, 3), 0)


FORMATS = [
    (".png", []),
    (".jpg", []),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    (".tif", []),
    (".bmp", []),
    (".webp", []),  # lossy: VP8
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
    (".pgm", []),
    (".ppm", []),
    (".pbm", []),
    (".pam", []),
    (".pfm", []),
    (".ras", []),
    (".gif", []),
]


@pytest.mark.parametrize("extension, params", FORMATS, ids=[f"{e}{'+' if p else ''}" for e, p in FORMATS])
def test_header_size_is_the_decoded_size(photo, extension, params):
    image = photo
    if extension in (".pgm", ".pbm"):
        image = photo[:, :, 0]
    elif extension == ".pfm":
        image = photo.astype(np.float32) / 255
    try:
        ok, encoded = cv2.imencode(extension, image, params)
    except cv2.error:
        pytest.skip(f"this OpenCV build cannot write {extension}")
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    assert image_dimensions(encoded) == (decoded.shape[1], decoded.shape[0]) == (WIDTH, HEIGHT)
    assert image_dimensions(encoded.tobytes()) == (WIDTH, HEIGHT)


def test_16_bit_and_4_channel_files(photo):
    for image in (photo.astype(np.uint16) * 257, cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)):
        for extension in (".png", ".tif"):
            encoded = cv2.imencode(extension, image)[1]
            assert image_dimensions(encoded) == (WIDTH, HEIGHT)
            np.testing.assert_array_equal(decode_image(encoded), image)


def test_cut_short_or_unknown_headers_give_none():
    assert image_dimensions(b"") is None
    assert image_dimensions(b"\x89PNG\r\n\x1a\n\x00\x00") is None
    assert image_dimensions(b"\xff\xd8\xff\xe0\x00\x10JFIF") is None
    assert image_dimensions(b"II*\x00\xff\xff\xff\x00") is None  # directory offset past the end
    assert image_dimensions(bytes(range(256))) is None


@pytest.mark.parametrize("source", ["file", "bytes"])
def test_a_png_declaring_30000x30000_is_refused_from_its_header(tmp_path, source):
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 200
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    # The bomb holds no pixel data: only a refusal from the header gives this error (a decoder
    # would fail on the missing data instead). No time bound: it flakes on a loaded machine.
    with pytest.raises(ImageTooLargeError, match=r"30000x30000 = 900 megapixels, above the limit of 50 megapixels") as error:
        read_image(path) if source == "file" else decode_image(np.frombuffer(bomb, np.uint8))
    assert "\n" not in str(error.value) and "--max-image-pixels" in str(error.value)


def test_the_limit_is_a_keyword_and_0_or_none_turn_it_off(tmp_path):
    image = np.full((600, 800), 77, np.uint8)  # 0.48 megapixels
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), image)
    with pytest.raises(ImageTooLargeError, match="800x600"):
        read_image(path, max_pixels=479_999)
    for limit in (480_000, 0, None):
        np.testing.assert_array_equal(read_image(path, max_pixels=limit), image)
    assert DEFAULT_MAX_PIXELS == 50_000_000


def test_a_format_whose_size_cannot_be_read_first_is_refused_under_a_limit(photo):
    try:
        ok, encoded = cv2.imencode(".jp2", photo)
    except cv2.error:
        pytest.skip("this OpenCV build cannot write JPEG 2000")
    assert ok and image_dimensions(encoded) is None
    with pytest.raises(ImageError, match="header gives no image size") as error:
        decode_image(encoded)
    assert "max_pixels=0" in str(error.value)
    assert decode_image(encoded, max_pixels=0).shape == photo.shape  # trusted: decoded


_CHILD = """
import json, sys, time
import numpy as np
from coarse_loftr_ros.imageio import decode_image, read_image
from coarse_loftr_ros.ros.image_conversion import compressed_to_numpy
from types import SimpleNamespace
path = sys.argv[1]
data = np.fromfile(path, np.uint8)
errors, start = [], time.perf_counter()
for call in (lambda: read_image(path), lambda: compressed_to_numpy(SimpleNamespace(format="png", data=data))):
    try:
        call()
        errors.append(None)
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}")
# VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's over exec).
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"errors": errors, "seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak resident memory from /proc")
def test_a_real_30000x30000_zeros_png_is_refused_in_bounded_memory_and_time(tmp_path):
    """The issue's bomb: 875 KB on disk, 0.9 GB decoded. Refused without decoding, in a fresh
    process whose peak resident memory is read (0.9 GB or more if it were decoded)."""
    path = tmp_path / "bomb.png"
    path.write_bytes(zeros_png(30000, 30000))
    assert path.stat().st_size < 1_000_000
    child = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert all(e and e.startswith("ImageTooLargeError") and "30000x30000" in e for e in report["errors"]), report
    assert report["peak_mb"] < 400, report  # decoded, it would need 900 MB or more; no time bound (flaky under load)


def test_headers_this_opencv_does_not_write():
    """Big-endian TIFF, BigTIFF and QOI headers, built byte by byte from their specifications."""
    import struct

    # TIFF, big-endian: ImageWidth as SHORT, ImageLength as LONG, after another tag.
    entries = [(254, 4, 1, 0), (256, 3, 1, WIDTH << 16), (257, 4, 1, HEIGHT)]  # a SHORT sits in the first 2 bytes
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", len(entries))
    tiff += b"".join(struct.pack(">HHII", *entry) for entry in entries) + bytes(4)
    assert image_dimensions(tiff) == (WIDTH, HEIGHT)
    # BigTIFF, little-endian: 8-byte offsets and counts, LONG8 values.
    entries = [(256, 16, 1, 70000), (257, 16, 1, 80000)]
    big = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", len(entries))
    big += b"".join(struct.pack("<HHQQ", *entry) for entry in entries) + bytes(8)
    assert image_dimensions(big) == (70000, 80000)
    with pytest.raises(ImageTooLargeError, match="70000x80000"):
        decode_image(np.frombuffer(big, np.uint8))
    # QOI: magic, width, height (big-endian), channels, colour space.
    assert image_dimensions(b"qoif" + struct.pack(">IIBB", WIDTH, HEIGHT, 3, 0)) == (WIDTH, HEIGHT)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_truncated_png_is_one_clear_error_and_libpng_prints_nothing(tmp_path, photo, cut, capfd):
    ok, data = cv2.imencode(".png", photo)
    assert ok
    path = tmp_path / "cut.png"
    path.write_bytes(data.tobytes()[: int(len(data) * cut)])
    with pytest.raises(ImageError, match="truncated PNG"):
        read_image(path)
    assert "libpng" not in capfd.readouterr().err
    complete = tmp_path / "whole.png"
    complete.write_bytes(data.tobytes())
    assert read_image(complete).shape == photo.shape  # a whole file still decodes

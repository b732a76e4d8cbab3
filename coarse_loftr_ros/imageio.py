"""Reading image files with one-line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError


def _decode_quietly(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own warnings on stderr (we raise a clearer error)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as stored: uint8 or uint16, HxW, HxWx3 (BGR) or HxWx4 (BGRA)."""
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
    image = _decode_quietly(data)
    if image is None or image.size == 0:
        raise ImageError(f"{path} is not a readable image (corrupt or unsupported format); pass a PNG, JPEG, TIFF, BMP or WebP file")
    return image

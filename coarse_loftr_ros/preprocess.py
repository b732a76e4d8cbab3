"""Image -> model input, and model-input pixels -> original pixels.

Resize policy: **letterbox**. The image is scaled by one factor, keeping its aspect
ratio, so that it fits the model input, and placed at the top-left corner; the rest of
the input is zero (black). No content is cropped, nothing is stretched, and the mapping
back is exact and the same for x and y. Matches whose model-input point falls in the
padding are dropped by the Matcher.

Coordinates follow OpenCV: x right, y down, pixel centres at integers. ``cv2.resize``
aligns pixel centres, so a model-input point ``p`` maps back to ``(p + 0.5) / scale - 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageError


@dataclass(frozen=True)
class Letterbox:
    """Placement of an original image inside the model input.

    Attributes:
        scale: model-input pixels per original pixel.
        original_size: (width, height) of the original image.
        resized_size: (width, height) the image occupies in the model input.
        input_size: (width, height) of the model input.
    """

    scale: float
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    input_size: tuple[int, int]

    @classmethod
    def fit(cls, original_size: tuple[int, int], input_size: tuple[int, int]) -> "Letterbox":
        width, height = original_size
        scale = min(input_size[0] / width, input_size[1] / height)
        resized = (min(input_size[0], max(1, round(width * scale))), min(input_size[1], max(1, round(height * scale))))
        return cls(scale, (width, height), resized, tuple(input_size))

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Model-input pixel coordinates (N, 2) -> original image pixel coordinates (N, 2)."""
        scale = np.array(
            [self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1]], np.float32
        )
        return ((points + 0.5) / scale - 0.5).astype(np.float32)

    def to_original_clipped(self, points: np.ndarray) -> np.ndarray:
        """``to_original``, clipped to the image (sub-cell refinement may step past the edge)."""
        mapped = self.to_original(points)
        upper = np.array(self.original_size, np.float32) - 1.0
        return np.clip(mapped, 0.0, upper, out=mapped)

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """Original image pixel coordinates (N, 2) -> model-input pixel coordinates (N, 2)."""
        scale = np.array(
            [self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1]], np.float32
        )
        return ((points + 0.5) * scale - 0.5).astype(np.float32)

    def inside(self, points: np.ndarray) -> np.ndarray:
        """Bool (N,): model-input points that lie on the image, not on the padding."""
        return (points[:, 0] < self.resized_size[0]) & (points[:, 1] < self.resized_size[1])


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """uint8 or uint16 image, HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) -> uint8 HxW.

    16-bit images are scaled by 1/257 (full range to full range).
    """
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) * (1.0 / 257.0) + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"unsupported image dtype {image.dtype}; pass uint8 or uint16 pixels")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ImageError(f"unsupported image shape {image.shape}; pass HxW, HxWx3 (BGR) or HxWx4 (BGRA)")


def check_size(image: np.ndarray, stride: int) -> None:
    """Raise ImageError unless the image covers at least one coarse cell in each direction."""
    if image.ndim < 2 or image.shape[0] < stride or image.shape[1] < stride:
        shape = "x".join(str(s) for s in image.shape[:2][::-1]) or "empty"
        raise ImageError(f"image of {shape} pixels is smaller than one coarse cell ({stride}x{stride}); pass a larger image")


def to_model_input(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Any supported image -> float32 [1, 1, H, W] in [0, 1] and its ``Letterbox``.

    ``input_size`` is the model input (width, height) in pixels.
    """
    gray = to_grayscale(image)
    height, width = gray.shape
    if width == 0 or height == 0:
        raise ImageError("image is empty (0 pixels); pass a non-empty image")
    letterbox = Letterbox.fit((width, height), input_size)
    if letterbox.resized_size != (width, height):
        shrinking = letterbox.scale < 1.0
        gray = cv2.resize(gray, letterbox.resized_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    tensor = np.zeros((1, 1, input_size[1], input_size[0]), np.float32)
    np.multiply(gray, np.float32(1.0 / 255.0), out=tensor[0, 0, : gray.shape[0], : gray.shape[1]])
    return tensor, letterbox
